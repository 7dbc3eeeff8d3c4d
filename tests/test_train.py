"""The training loop: it learns, checkpoints round-trip, and resuming continues exactly."""

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
