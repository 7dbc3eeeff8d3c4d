"""Specs for the airbench-style FastClassifier and its fast training recipe."""

import dataclasses
import os
import shlex

import pytest
import torch

from eaviz import fast_recipe
from eaviz.attention import MIXERS
from eaviz.card import read_card
from eaviz.data import load_dataset
from eaviz.data.dataset import draw_across_classes
from eaviz.fast_recipe import (
    FastRecipeConfig,
    Lookahead,
    RecipeClock,
    compact_state,
    comparison_table,
    lookahead_decay,
    make_optimizer,
    make_schedule,
    parse_args,
    predict_tta,
    ship,
    train_command,
    train_fast,
    triangle,
)
from eaviz.models import Classifier, ClassifierConfig, FastClassifier, FastClassifierConfig, build_model
from eaviz.models.fast_classifier import BatchNorm, MixerBlock2d, init_whitening, patch_whitening
from eaviz.train import load_checkpoint
from eaviz.viz.record import mixer_names, record_attention


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(**overrides) -> FastClassifierConfig:
    return FastClassifierConfig(**{"widths": (8, 16, 16), "heads": 2, "memory_units": 8, **overrides})


def images(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 32)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_fast_classifier_gives_one_logit_per_class_for_every_mixer(mixer):
    assert FastClassifier(small(mixer=mixer))(images()).shape == (2, 10)


@pytest.mark.parametrize("mixer", sorted(set(MIXERS) - {"none"}))
def test_recorder_finds_the_map_of_every_mixer_block_at_8x8_and_4x4(mixer):
    model = FastClassifier(small(mixer=mixer)).eval()
    with record_attention(model) as record:
        model(images())
    assert list(record) == mixer_names(model) == ["trunk.mix2.mixer", "trunk.mix3.mixer"]
    assert [record.grids[name] for name in record] == [(8, 8), (4, 4)]


def test_every_mixer_gets_the_same_block_projections():
    def outside_mixer(mixer: str) -> dict[str, tuple]:
        block = MixerBlock2d(16, mixer, **small(mixer=mixer).mixer_settings())
        return {k: tuple(v.shape) for k, v in block.state_dict().items() if not k.startswith("mixer.")}

    shapes = [outside_mixer(mixer) for mixer in sorted(MIXERS)]
    assert all(s == shapes[0] for s in shapes) and "conv_in.weight" in shapes[0] and "bn_out.weight" in shapes[0]


def test_the_mixers_and_their_output_norm_learn_without_weight_decay():
    model = FastClassifier(small(mixer="external"))
    groups = {group["name"]: group for group in make_optimizer(model, FastRecipeConfig()).param_groups}
    block = model.trunk.mix2
    undecayed = {id(p) for p in groups["mixers"]["params"]}
    assert {id(block.mixer.mk.weight), id(block.mixer.mv.weight), id(block.bn_out.weight)} <= undecayed
    assert groups["mixers"]["weight_decay"] == 0 and groups["other"]["weight_decay"] > 0
    assert id(block.conv_in.weight) in {id(p) for p in groups["other"]["params"]}
    assert torch.equal(block.bn_out.weight, torch.ones(16))  # EANet's start, not a zero (identity) start


def test_mixer_block_returns_the_map_when_asked():
    y, attn = MixerBlock2d(16, "external", memory_units=8)(torch.randn(2, 16, 4, 4), return_attn=True)
    assert y.shape == (2, 16, 4, 4) and attn.shape == (2, 16, 8)


def test_mixer_stages_choose_where_the_blocks_sit():
    model = FastClassifier(small(mixer="external", mixer_stages=(3,)))
    assert mixer_names(model) == ["trunk.mix3.mixer"]


def test_config_rejects_an_unknown_mixer_stage():
    with pytest.raises(ValueError, match=r"expected mixer_stages from \(2, 3\), got \(1,\)"):
        small(mixer_stages=(1,))


def test_config_survives_a_round_trip_through_build_model():
    config = small(mixer="self")
    assert build_model(config.to_dict()).config == config


def test_whitening_filters_give_patches_identity_second_moments():
    mixing = torch.randn(3, 3)
    data = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(200, 3, 8, 8))  # correlated channels
    filters = patch_whitening(data, kernel=2, eps=0.0)
    assert filters.shape == (24, 3, 2, 2) and torch.equal(filters[12:], -filters[:12])
    out = torch.nn.functional.conv2d(data, filters[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(out.T @ out / len(out), torch.eye(12), atol=1e-3, rtol=0)


def test_init_whitening_sets_the_frozen_first_conv_from_uint8_images():
    model = FastClassifier(small())
    data = (torch.rand(16, 3, 32, 32) * 255).to(torch.uint8)
    init_whitening(model, data)
    expected = patch_whitening(model.normalize.eval()(data.float() / 255), 2)
    torch.testing.assert_close(model.whiten.weight, expected)
    assert not model.whiten.weight.requires_grad


def test_trunk_batchnorms_learn_only_their_bias_in_a_group_of_their_own():
    model = FastClassifier(small())
    norms = [m for m in model.modules() if isinstance(m, BatchNorm)]
    groups = model.parameter_groups()
    assert len(groups["norm_biases"]) == len(norms) == 6
    assert not any(m.weight.requires_grad for m in norms)
    assert {id(p) for p in groups["norm_biases"]}.isdisjoint(id(p) for p in groups["other"])


def test_optimizer_gives_the_norm_biases_bias_scaler_times_the_learning_rate():
    optimizer = make_optimizer(FastClassifier(small()), FastRecipeConfig(bias_scaler=64.0))
    groups = {group["name"]: group for group in optimizer.param_groups}
    biases, other = groups["norm_biases"], groups["other"]
    assert biases["lr"] == pytest.approx(64 * other["lr"])
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(other["lr"] * other["weight_decay"])


def test_the_whitening_bias_learns_for_its_fraction_of_the_run_then_freezes():
    model = FastClassifier(small())
    config = FastRecipeConfig(whiten_bias_fraction=0.3)
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, RecipeClock(total_steps=10))
    rates = []
    for _ in range(10):
        groups = {group["name"]: group["lr"] for group in optimizer.param_groups}
        rates.append((groups["whiten_bias"], groups["other"]))
        optimizer.step()
        scheduler.step()
    assert all(whiten == other > 0 for whiten, other in rates[:3])
    assert all(whiten == 0 < other for whiten, other in rates[3:])


def test_triangle_rises_from_start_to_one_at_the_peak_then_falls_to_end():
    assert [triangle(p) for p in (0.0, 0.23, 1.0)] == pytest.approx([0.2, 1.0, 0.07])


def test_lookahead_pulls_the_weights_toward_the_slow_copy():
    model = torch.nn.Linear(2, 2, bias=False)
    lookahead = Lookahead(model)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    lookahead.update(model, decay=0.75)
    torch.testing.assert_close(model.weight.detach(), start + 0.25)
    assert lookahead_decay(0.0) == 0 and lookahead_decay(1.0) == pytest.approx(0.95**5)


def test_tta_of_a_mirror_invariant_model_equals_its_plain_prediction():
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(predict_tta(model, x), model(x), atol=5e-3, rtol=0)


def test_compact_state_halves_kernels_and_loads_back_into_fp32():
    model = FastClassifier(small()).eval()
    state = compact_state(model)
    assert state["trunk.group2.0.weight"].dtype == torch.float16
    assert state["trunk.group2.2.running_var"].dtype == torch.float32
    twin = FastClassifier(small()).eval()
    twin.load_state_dict(state)
    assert twin.head.weight.dtype == torch.float32
    x = images(4)
    torch.testing.assert_close(twin(x), model(x), atol=1e-2, rtol=1e-2)


def test_bf16_autocast_forward_and_backward_run_on_the_cpu():
    model = FastClassifier(small(mixer="external"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images(4))
    assert logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def _tiny_recipe(**overrides) -> FastRecipeConfig:
    settings = {"epochs": 2, "batch_size": 64, "whiten_images": 256, "device": "cpu", "channels_last": False}
    return FastRecipeConfig(**{**settings, **overrides})


def _learning_data():
    if os.environ.get("EAVIZ_DATA"):
        return load_dataset("cifar10", "train", limit=1024), load_dataset("cifar10", "val", limit=500)
    return load_dataset("shapes", "train", limit=1024), load_dataset("shapes", "val", limit=500)


@pytest.mark.usefixtures("single_thread")
def test_recipe_learns_well_above_chance_in_a_few_steps():
    train_set, val_set = _learning_data()
    torch.manual_seed(0)  # the initial weights, whatever ran before
    model = FastClassifier(small(widths=(32, 64, 64)))
    history = train_fast(model, train_set, val_set, _tiny_recipe(epochs=4), progress_bar=False)
    assert history.last["steps"] == 4 * 16
    # chance: 0.10; on CIFAR-10 (1,024 images drawn across the classes) this run reaches 0.21, other
    # initial weights and recipe seeds 0.22-0.23; on the synthetic shapes 0.64
    assert history.last["val_accuracy"] > 0.17


@pytest.mark.usefixtures("single_thread")
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    data = load_dataset("shapes", "train", limit=256)

    def fresh() -> FastClassifier:
        torch.manual_seed(0)
        return FastClassifier(small())

    whole = fresh()
    train_fast(whole, data, None, _tiny_recipe(), progress_bar=False)
    train_fast(fresh(), data, None, _tiny_recipe(), out=tmp_path, stop_after=1, progress_bar=False)
    resumed = fresh()
    history = train_fast(resumed, data, None, _tiny_recipe(), resume=tmp_path / "last.pt", progress_bar=False)
    assert [row["epoch"] for row in history.epochs] == [1, 2]
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


@pytest.mark.usefixtures("single_thread")
def test_time_budget_ends_the_run_early():
    data = load_dataset("shapes", "train", limit=256)
    history = train_fast(
        FastClassifier(small()), data, None, _tiny_recipe(epochs=50, time_budget_s=1e-6), progress_bar=False
    )
    assert len(history.epochs) == 1 and history.last["steps"] == 1


@pytest.mark.usefixtures("single_thread")
def test_train_limit_trains_on_a_seeded_draw_across_the_classes(monkeypatch):
    data = load_dataset("shapes", "train", limit=256)
    drawn = []

    def recorded_draw(labels, limit, seed):
        drawn.append(draw_across_classes(labels, limit, seed))
        return drawn[-1]

    monkeypatch.setattr(fast_recipe, "draw_across_classes", recorded_draw)
    recipe = _tiny_recipe(epochs=1, train_limit=128)
    history = train_fast(FastClassifier(small()), data, None, recipe, progress_bar=False)
    assert history.last["steps"] == 2  # 128 images in batches of 64
    counts = torch.bincount(data.targets[drawn[0]])
    assert len(drawn[0]) == 128 and counts.max() - counts.min() <= 1


def test_comparison_table_gives_mean_and_sample_sd_per_mixer():
    rows = [
        {"mixer": m, "seed": s, "val_accuracy": a, "parameters": 1, "flops_per_image": 2, "images_per_s": 3.0}
        | {"wall_seconds": 4.0, "images_seen": 512}
        for m, s, a in [("external", 0, 0.5), ("external", 1, 0.7), ("none", 0, 0.4), ("none", 1, 0.4)]
    ]
    table = comparison_table(rows)
    assert [row["mixer"] for row in table] == ["external", "none"]
    assert table[0]["val_accuracy_mean"] == pytest.approx(0.6)
    assert table[0]["val_accuracy_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert table[1]["val_accuracy_sd"] == 0.0


def test_normalize_reads_no_values_in_training_mode(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a training step read the image values (a host sync on a GPU)")

    monkeypatch.setattr(torch.Tensor, "tolist", fail)
    monkeypatch.setattr(torch.Tensor, "item", fail)
    model = FastClassifier(small()).train()
    assert model.normalize(images() * 255).shape == (2, 3, 32, 32)


def test_normalize_checks_the_value_range_in_eval_mode():
    with pytest.raises(ValueError, match=r"expected images with values in \[0, 1\]"):
        FastClassifier(small()).eval()(images() * 255)


def test_train_command_reproduces_the_run_it_ships():
    config = FastRecipeConfig(epochs=3, batch_size=256, time_budget_s=100, seed=1)
    assert train_command("self", config, "cifar10-self") == (
        "python -m eaviz fast train --mixer self --seed 1 --epochs 3 --batch-size 256 --time-budget 100 "
        "--ship cifar10-self"
    )


def test_train_command_parses_back_into_the_recipe_it_describes():
    config = FastRecipeConfig(epochs=4, batch_size=64, lr=5.0, lookahead=False, flip="random", time_budget_s=30, seed=2)
    args = parse_args(shlex.split(train_command("external", config, "x"))[4:])
    assert args.recipe == config and args.mixer == "external" and args.ship == "x"


def test_every_recipe_setting_has_a_flag_documented_by_its_field_comment(capsys):
    with pytest.raises(SystemExit):
        parse_args(["train", "--help"])
    shown = capsys.readouterr().out
    for field in dataclasses.fields(FastRecipeConfig):
        name = field.name.replace("_", "-")
        flag = f"--no-{name}" if field.default is True else f"--{name}"
        flag = {"time_budget_s": "--time-budget"}.get(field.name, flag)
        assert flag in shown, field.name
    assert "largest random shift of an image" in shown  # the comment beside FastRecipeConfig.translate


def test_ship_writes_a_loadable_fp16_checkpoint_and_its_card_into_the_folder(tmp_path):
    model = FastClassifier(small(mixer="self")).eval()
    card = {"name": "cifar10-self", "val_metrics": {"accuracy": 0.2}, "command": "python -m eaviz fast train"}
    path = ship(model, card, folder=tmp_path)
    assert path == tmp_path / "cifar10-self.pt" and read_card(tmp_path / "cifar10-self.json") == card
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded, FastClassifier) and loaded.config.mixer == "self"
    x = images()
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=2e-2)  # weights stored in fp16


def test_ship_defaults_to_the_user_folder_never_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("EAVIZ_HOME", str(tmp_path))
    card = {"name": "cifar10-none", "val_metrics": {}}
    assert ship(FastClassifier(small(mixer="none")), card) == tmp_path / "checkpoints" / "cifar10-none.pt"


@pytest.mark.parametrize("mixer", sorted(set(MIXERS) - {"none"}))
def test_vit_classifier_with_mixer_projections_still_shows_every_map(mixer):
    config = ClassifierConfig(dim=32, depth=1, heads=2, memory_units=8, mixer=mixer, mixer_projections=True)
    model = Classifier(config).eval()
    with record_attention(model) as record:
        model(images())
    assert list(record) == ["blocks.0.mixer.mixer"] and record.grids["blocks.0.mixer.mixer"] == (8, 8)


def test_mixer_projections_add_the_same_parameters_to_every_mixer():
    def added(mixer: str) -> int:
        plain, projected = (
            sum(p.numel() for p in Classifier(ClassifierConfig(dim=32, mixer=mixer, mixer_projections=on)).parameters())
            for on in (False, True)
        )
        return projected - plain

    assert {added(mixer) for mixer in MIXERS} == {4 * 2 * (32 * 32 + 32)}


def test_cli_fast_rejects_an_unknown_mixer_in_one_line(capsys):
    from eaviz.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fast", "train", "--mixer", "bogus"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
