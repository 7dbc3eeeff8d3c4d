"""The training loop: it learns, checkpoints round-trip, and resuming continues exactly."""

import math

import pytest
import torch

from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, SegmenterConfig, build_model
from eaviz.train import TrainConfig, evaluate, load_checkpoint, train

SMALL = ClassifierConfig(dim=32, depth=1, memory_units=16)

pytestmark = pytest.mark.usefixtures("single_thread")


def shapes(split, n):
    return load_dataset("shapes", split, limit=n)


@pytest.fixture(scope="module")
def data():
    return shapes("train", 1024), shapes("val", 256)


@pytest.mark.slow
def test_short_run_on_synthetic_shapes_learns_well_above_chance():
    torch.manual_seed(0)
    model = build_model(ClassifierConfig(dim=64, depth=1, memory_units=16))
    config = TrainConfig(
        epochs=5, batch_size=32, lr=3e-3, optimizer="adamw", weight_decay=0.01, label_smoothing=0.0, warmup_epochs=0.5
    )
    history = train(model, shapes("train", 2048), shapes("val", 256), config, progress=False)
    assert history.last["val_accuracy"] > 0.3  # chance is 0.1
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_segmentation_run_reports_miou_over_present_classes():
    torch.manual_seed(0)
    train_set, val_set = load_dataset("shapes_seg", "train", limit=32), load_dataset("shapes_seg", "val", limit=8)
    model = build_model(SegmenterConfig(num_classes=train_set.num_classes, width=32, memory_units=8))
    history = train(model, train_set, val_set, TrainConfig(epochs=1, batch_size=8, crop_size=48), progress=False)
    metrics = history.last["val_metrics"]
    assert 0 <= metrics["miou"] <= 1 and set(metrics["iou"]) == set(metrics["present_classes"])


def test_checkpoint_round_trip_gives_the_same_predictions(data, tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL)
    train(model, data[0], None, TrainConfig(epochs=1, batch_size=128), out=tmp_path, progress=False)
    loaded, checkpoint = load_checkpoint(tmp_path / "last.pt")
    images = data[1].images[:8].float() / 255
    model.eval()
    assert torch.allclose(model(images), loaded(images), atol=1e-6)
    assert checkpoint["config"] == SMALL.to_dict() and checkpoint["epoch"] == 1


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_continues_exactly(data, tmp_path, ema_decay):
    config = TrainConfig(epochs=2, batch_size=128, ema_decay=ema_decay, label_smoothing=0.0)
    torch.manual_seed(0)
    straight = build_model(SMALL)
    train(straight, data[0], None, config, progress=False)
    torch.manual_seed(0)
    split = build_model(SMALL)
    train(split, data[0], None, config, out=tmp_path, stop_after=1, progress=False)
    resumed = build_model(SMALL)
    train(resumed, data[0], None, config, out=tmp_path, resume=tmp_path / "last.pt", progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_evaluate_leaves_the_training_mode_as_it_was(data):
    model = build_model(SMALL).train()
    metrics = evaluate(model, data[1])
    assert model.training and 0 <= metrics["accuracy"] <= 1


def test_bad_settings_are_rejected(data):
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="at least one batch"):
        train(build_model(SMALL), data[0].subset(slice(0, 10)), None, TrainConfig(batch_size=64), progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint("does/not/exist.pt")


def test_resume_rejects_a_different_train_config(data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=128)
    train(build_model(SMALL), data[0], None, config, out=tmp_path, stop_after=1, progress=False)
    with pytest.raises(ValueError, match="'lr'"):
        train(build_model(SMALL), data[0], None, TrainConfig(epochs=2, batch_size=128, lr=1.0),
              resume=tmp_path / "last.pt", progress=False)  # fmt: skip


def test_resume_is_exact_with_dropout(data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=128)
    dropping = ClassifierConfig(dim=32, depth=1, memory_units=16, dropout=0.3)
    torch.manual_seed(0)
    straight = build_model(dropping)
    train(straight, data[0], None, config, progress=False)
    torch.manual_seed(0)
    train(build_model(dropping), data[0], None, config, out=tmp_path, stop_after=1, progress=False)
    resumed = build_model(dropping)
    train(resumed, data[0], None, config, resume=tmp_path / "last.pt", progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_evaluate_refuses_a_device_the_model_is_not_on(data):
    with pytest.raises(ValueError, match="move it first"):
        evaluate(build_model(SMALL), data[1], device="meta")


def test_evaluate_refuses_a_model_with_other_classes(data):
    with pytest.raises(ValueError, match="predicts 21 classes"):
        evaluate(build_model(SegmenterConfig(width=16, memory_units=4)), load_dataset("shapes_seg", "val", limit=2))


# --- the schedule, the optimizer groups, EMA and evaluate, against hand-computed numbers ---------


def test_lr_warms_up_linearly_then_decays_to_zero():
    from eaviz.train import _lr_factor

    # 10 steps, 4 of warm-up: 1/4, 2/4, 3/4, 4/4, then from 1 at step 4 linearly down to 0 at step 10.
    onecycle = [_lr_factor(step, 10, 4, "onecycle") for step in range(11)]
    assert onecycle == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])
    cosine = [_lr_factor(step, 10, 4, "cosine") for step in (4, 5, 8, 10)]
    # 0.5 * (1 + cos(pi * progress)) at progress 0, 1/6, 4/6, 1
    assert cosine == pytest.approx([1.0, 0.5 + 0.25 * math.sqrt(3), 0.25, 0.0])


def test_the_learning_rate_of_a_run_follows_the_schedule(data):
    """8 steps per epoch, 2 epochs, half an epoch (4 steps) of warm-up: the lr after each epoch."""
    config = TrainConfig(epochs=2, batch_size=128, lr=0.4, warmup_epochs=0.5)
    history = train(build_model(SMALL), data[0], None, config, progress=False)
    # After 8 steps: progress (8 - 4) / (16 - 4) = 1/3 of the decay; after 16: the end.
    assert history["lr"] == pytest.approx([0.4 * (1 - 1 / 3), 0.0])


def test_weight_decay_skips_norms_biases_and_the_position_embedding():
    from eaviz.train import make_optimizer

    model = build_model(SMALL)
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decayed, undecayed = (group["params"] for group in optimizer.param_groups)
    names = {id(p): name for name, p in model.named_parameters()}
    assert "pos_embedding" in {names[id(p)] for p in undecayed}
    assert all(p.ndim < 2 or names[id(p)] == "pos_embedding" for p in undecayed)
    matrices = {name for name, p in model.named_parameters() if p.ndim >= 2}
    assert {names[id(p)] for p in decayed} == matrices - {"pos_embedding"}


def test_ema_weights_are_saved_resumed_and_loaded(data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=128, ema_decay=0.9, label_smoothing=0.0)
    torch.manual_seed(0)
    train(build_model(SMALL), data[0], None, config, out=tmp_path / "straight", progress=False)
    torch.manual_seed(0)
    train(build_model(SMALL), data[0], None, config, out=tmp_path / "split", stop_after=1, progress=False)
    train(build_model(SMALL), data[0], None, config, out=tmp_path / "split", resume=tmp_path / "split" / "last.pt",
          progress=False)  # fmt: skip
    straight, split = (torch.load(tmp_path / run / "last.pt", weights_only=True) for run in ("straight", "split"))
    assert straight["ema_n_averaged"] == split["ema_n_averaged"] == 16
    for key, value in straight["ema"].items():
        assert torch.allclose(value.float(), split["ema"][key].float(), atol=1e-6), key
    loaded, _ = load_checkpoint(tmp_path / "split" / "last.pt")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, split["ema"][key]), key  # the EMA weights, not the raw ones
    assert any(not torch.equal(split["ema"][k], split["model"][k]) for k in split["model"])


class Fixed(torch.nn.Module):
    """A 'model' with hand-set logits: class scores = (mean pixel, 0, 0) + a bias per class."""

    def __init__(self, bias):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(bias))

    def forward(self, images):
        mean = images.mean(dim=(1, 2, 3))
        return torch.stack([mean, torch.zeros_like(mean), torch.zeros_like(mean)], dim=1) + self.bias


def test_evaluate_loss_and_accuracy_match_hand_computed_numbers():
    from eaviz.data import ImageDataset

    images = torch.tensor([0, 255, 51, 0], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    data = ImageDataset(images, torch.tensor([0, 0, 1, 2]), ["a", "b", "c"])
    model = Fixed([0.0, 0.5, 0.0])
    # Logits per image (mean pixel 0, 1, 0.2, 0): (0, .5, 0), (1, .5, 0), (.2, .5, 0), (0, .5, 0).
    logits = torch.tensor([[0, 0.5, 0], [1, 0.5, 0], [0.2, 0.5, 0], [0, 0.5, 0]])
    losses = [math.log(row.exp().sum()) - row[t] for row, t in zip(logits, [0, 0, 1, 2])]
    metrics = evaluate(model, data, batch_size=3)  # 2 batches: the sums must not depend on batching
    assert metrics["loss"] == pytest.approx(sum(losses).item() / 4, abs=1e-6)
    assert metrics["accuracy"] == 0.5  # predicted 1, 0, 1, 1 against 0, 0, 1, 2


def test_evaluate_segmentation_counts_only_non_void_pixels():
    from eaviz.data import ImageDataset

    class Constant(torch.nn.Module):  # predicts class 1 everywhere, logits (0, 1)
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, images):
            b, _, h, w = images.shape
            return torch.stack([torch.zeros(b, h, w), torch.ones(b, h, w)], dim=1) + self.w

    targets = torch.tensor([[[0, 1], [1, 255]]])
    data = ImageDataset(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), targets, ["bg", "fg"])
    metrics = evaluate(Constant(), data)
    low, high = math.log(1 + math.e), math.log(1 + math.e) - 1  # -log softmax for class 0 and class 1
    assert metrics["loss"] == pytest.approx((low + 2 * high) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(2 / 3)
    # IoU: bg 0 / (1 + 0) = 0, fg 2 / (2 + 1) = 2/3; mIoU over the two present classes.
    assert metrics["iou"] == pytest.approx({"bg": 0.0, "fg": 2 / 3}) and metrics["miou"] == pytest.approx(1 / 3)
