"""Specs for the command line, run in-process through eaviz.cli.main(argv)."""

import argparse
import json
import runpy
import shutil
import sys

import pytest
import torch

from eaviz import cli
from eaviz.models import ClassifierConfig, SegmenterConfig
from eaviz.train import TrainConfig

SUBCOMMANDS = [
    ["train"],
    ["eval"],
    ["bench"],
    ["bench", "attention"],
    ["bench", "train"],
    ["pretrained"],
    ["pretrained", "list"],
    ["pretrained", "train"],
]
TINY_SHAPES = ["shapes", "--limit", "32", "--epochs", "1", "--batch-size", "16", "--dim", "16", "--depth", "1",
               "--heads", "2", "--memory-units", "4", "--device", "cpu"]  # fmt: skip


def parsers(parser: argparse.ArgumentParser):
    """The parser and every subcommand parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m eaviz {' '.join(argv)}")


def test_every_flag_of_every_subcommand_explains_itself():
    for parser in parsers(cli.build_parser()):
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.option_strings or action.dest} has no help"


def test_train_flags_cover_every_train_config_field():
    args = cli.build_parser().parse_args(["train", "cifar10"])
    assert set(TrainConfig.__dataclass_fields__) <= set(vars(args))


def test_unknown_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "cifar10", "--mixer", "conv"])
    assert exit_.value.code == 2
    assert "argument --mixer: invalid choice: 'conv'" in capsys.readouterr().err


def test_unknown_task_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "imagenet"])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_train_flags_build_the_train_config():
    argv = ["train", "cifar10", "--epochs", "30", "--batch-size", "64", "--optimizer", "adamw", "--lr", "0.002",
            "--schedule", "cosine", "--ema", "0.999", "--no-amp", "--compile", "--seed", "3"]  # fmt: skip
    config = cli.train_config(cli.build_parser().parse_args(argv))
    expected = TrainConfig(
        epochs=30, batch_size=64, optimizer="adamw", lr=0.002, schedule="cosine", ema_decay=0.999, amp=False,
        compile=True, seed=3,
    )  # fmt: skip
    assert config == expected


def test_train_flags_left_out_keep_the_dataclass_defaults():
    assert cli.train_config(cli.build_parser().parse_args(["train", "cifar10"])) == TrainConfig()


def test_model_flags_build_a_classifier_config_for_cifar():
    args = cli.build_parser().parse_args(["train", "cifar10", "--mixer", "self", "--dim", "64", "--heads", "2"])
    overrides = cli.model_overrides("cifar10", args)
    assert overrides == {"mixer": "self", "dim": 64, "heads": 2}
    assert ClassifierConfig(**overrides) == ClassifierConfig(mixer="self", dim=64, heads=2)


def test_model_flags_build_a_segmenter_config_for_voc():
    args = cli.build_parser().parse_args(["train", "voc", "--head", "nonlocal", "--dim", "64"])
    assert SegmenterConfig(**cli.model_overrides("voc", args)) == SegmenterConfig(head="nonlocal", width=64)


def test_segmentation_flags_are_refused_for_classification(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "cifar10", "--head", "external"])
    assert "--head only applies to segmentation (voc, shapes_seg), not to cifar10" in capsys.readouterr().err


def test_dataset_flag_is_an_alias_of_the_task(capsys):
    code, out, _ = run(["train", *TINY_SHAPES[1:], "--dataset", "shapes"], capsys)
    assert code == 0 and out.startswith("shapes: 32 train / 32 val images")


def test_train_needs_a_dataset(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "1"])
    assert "give the dataset to train on" in capsys.readouterr().err


def test_missing_data_is_a_short_error_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "cifar10", "--data-root", str(tmp_path)])
    assert exit_.value.code == 2
    assert "python -m eaviz train: error: no cifar10 data found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny classifier run, trained once for the tests that read it."""
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    assert cli.main(["train", *TINY_SHAPES, "--out", str(out)]) == 0
    return out


def test_train_writes_a_checkpoint_and_a_card_that_records_the_dataset(trained_run):
    assert (trained_run / "last.pt").exists()
    card = json.loads((trained_run / "last.json").read_text())
    assert card["dataset"] == "shapes" and card["model"]["mixer"] == "external" and card["model"]["dim"] == 16
    assert card["command"].startswith("python -m eaviz train shapes --limit 32")
    assert [row["epoch"] for row in card["history"]] == [1]


def test_eval_prints_the_metrics_of_a_trained_checkpoint(trained_run, capsys):
    code, out, _ = run(["eval", str(trained_run / "last.pt"), "--limit", "20", "--device", "cpu"], capsys)
    assert code == 0
    assert out.startswith(f"{trained_run / 'last.pt'} on shapes val (20 images):")
    assert set(json.loads(out.split("\n", 1)[1])) == {"loss", "accuracy"}


def test_eval_without_a_recorded_dataset_asks_for_one(trained_run, tmp_path, capsys):
    checkpoint = torch.load(trained_run / "last.pt", weights_only=True)
    del checkpoint["dataset"]  # as in a checkpoint written by other code
    torch.save(checkpoint, tmp_path / "model.pt")
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path / "model.pt")])
    assert "records no dataset" in capsys.readouterr().err


def test_eval_reads_the_dataset_recorded_in_the_checkpoint(trained_run, tmp_path, capsys):
    shutil.copy(trained_run / "last.pt", tmp_path / "model.pt")
    code, out, _ = run(["eval", str(tmp_path / "model.pt")], capsys)
    assert code == 0 and "accuracy" in out


def test_resume_with_other_settings_is_refused_with_the_difference(trained_run, tmp_path, capsys):
    shutil.copy(trained_run / "last.pt", tmp_path / "last.pt")
    argv = ["train", *TINY_SHAPES, "--epochs", "2", "--out", str(tmp_path), "--resume", str(tmp_path / "last.pt")]
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "'epochs': (1, 2)" in capsys.readouterr().err


def test_train_a_tiny_segmenter(tmp_path, capsys):
    argv = ["train", "shapes_seg", "--limit", "8", "--epochs", "1", "--batch-size", "4", "--dim", "16",
            "--memory-units", "4", "--crop-size", "32", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 0 and "Segmenter" in out
    assert json.loads((tmp_path / "last.json").read_text())["model"]["width"] == 16


def test_bench_attention_runs_end_to_end_and_writes_json(tmp_path, capsys):
    argv = ["bench", "attention", "--sizes", "16", "--dim", "8", "--memory-units", "4", "--device", "cpu",
            "--no-backward", "--min-run-time", "0.001", "--out", str(tmp_path)]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert "| 16 | EA |" in out
    (path,) = tmp_path.glob("attention-cpu-*.json")
    assert [row["mixer"] for row in json.loads(path.read_text())["results"]] == ["self", "self_fused", "external"]


def test_bench_train_runs_end_to_end_and_writes_json(tmp_path, capsys):
    argv = ["bench", "train", "--mixers", "none", "--steps", "1", "--warmup-steps", "0", "--batch-size", "1",
            "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 0 and "| none |" in out
    assert len(list(tmp_path.glob("train-cpu-*.json"))) == 1


def test_pretrained_list_names_every_recipe(capsys):
    code, out, _ = run(["pretrained", "list"], capsys)
    assert code == 0 and "cifar10-vit-external" in out and "voc-nonlocal" in out


def test_python_dash_m_eaviz_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m eaviz", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("eaviz", run_name="__main__")
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m eaviz")


def test_notebooks_subcommand_checks_the_stored_notebooks(capsys):
    assert cli.main(["notebooks", "check", "notebooks/01_introduction.ipynb"]) == 0
    assert "no problems" in capsys.readouterr().out


def test_pretrained_backbone_flag_reaches_the_segmenter_config():
    args = cli.build_parser().parse_args(["train", "voc", "--backbone", "resnet18", "--pretrained-backbone"])
    args.parser = cli.build_parser()
    assert cli.model_overrides("voc", args) == {"backbone": "resnet18", "pretrained_backbone": True}


def test_eval_prints_the_numbers_that_evaluate_computes(trained_run, capsys):
    from eaviz.data import load_dataset
    from eaviz.train import evaluate, load_checkpoint

    code, out, _ = run(["eval", str(trained_run / "last.pt"), "--limit", "20", "--device", "cpu"], capsys)
    model, _ = load_checkpoint(trained_run / "last.pt")
    expected = evaluate(model, load_dataset("shapes", "val", limit=20))
    assert code == 0 and json.loads(out.split("\n", 1)[1]) == pytest.approx(expected)


def test_pretrained_train_retrains_a_recipe_into_a_checkpoint_and_a_card(tmp_path, monkeypatch, capsys):
    import eaviz.pretrained as pretrained

    tiny = pretrained.Recipe(
        "shapes",
        ClassifierConfig(image_size=16, dim=16, depth=1, memory_units=4),
        TrainConfig(epochs=1, batch_size=100, lr=0.01, device="cpu"),
        data_size=16,
    )
    monkeypatch.setitem(pretrained.RECIPES, "shapes-tiny", tiny)
    folder = tmp_path / "checkpoints"
    command = ["pretrained", "train", "shapes-tiny", "--out", str(tmp_path / "runs"), "--checkpoint-dir", str(folder)]
    code, out, _ = run(command, capsys)
    assert code == 0 and json.loads(out[out.index("{\n  \"name\""):])["name"] == "shapes-tiny"
    model, card = pretrained.load_pretrained("shapes-tiny", folder=folder)
    assert card["command"] == "python -m eaviz pretrained train shapes-tiny" and card["epochs"] == 1
    assert card["split"]["train"] == 5000 and card["model"]["dim"] == 16
    assert (tmp_path / "runs" / "shapes-tiny" / "last.pt").exists()
    from eaviz.data import load_dataset
    from eaviz.train import evaluate

    metrics = evaluate(model, load_dataset("shapes", "val", size=16))
    assert metrics["accuracy"] == pytest.approx(card["val_metrics"]["accuracy"])


def test_cli_and_pretrained_write_one_card_format(trained_run):
    import eaviz.pretrained as pretrained

    cli_card = json.loads((trained_run / "last.json").read_text())
    shipped = pretrained.load_card("cifar10-vit-external")
    assert set(cli_card) == set(shipped)


def test_every_model_field_is_a_flag_with_its_comment_as_help():
    from eaviz._flags import field_docs

    parser = cli.build_parser()
    train_parser = next(p for p in parsers(parser) if p.prog == "python -m eaviz train")
    helps = {action.dest: action.help for action in train_parser._actions}
    for config in (ClassifierConfig, SegmenterConfig, TrainConfig):
        for name, doc in field_docs(config).items():
            if name in cli.FROM_DATA:
                continue
            dest = "dim" if (config, name) == (SegmenterConfig, "width") else name
            assert doc in helps[dest], (config.__name__, name)
