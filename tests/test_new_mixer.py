"""Adding a mixer is its class and one registration line: trained, recorded and benchmarked without touching eaviz.

The mixer below lives only in this file, as it would in a reader's notebook.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eaviz import bench
from eaviz.attention import double_normalization, register_mixer
from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, build_model
from eaviz.train import TrainConfig, train
from eaviz.viz import build_memory_atlas, capture_attention, memory_unit_maps, mixer_names
from eaviz.viz.record import layer_kind

pytestmark = pytest.mark.usefixtures("single_thread")


class CosineMemory(nn.Module):
    """External attention whose logits are cosine similarities to the memories, times a learned scale.

    x: (B, N, d) -> (B, N, d); attn: (B, N, S).
    """

    kind = "external"

    def __init__(self, dim: int, *, memory_units: int = 16) -> None:
        super().__init__()
        self.memory_units = memory_units
        self.keys = nn.Parameter(torch.randn(memory_units, dim))
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.values = nn.Linear(memory_units, dim, bias=False)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        logits = self.scale * F.normalize(x, dim=-1) @ F.normalize(self.keys, dim=-1).T
        attn = double_normalization(logits)
        y = self.values(attn)
        return (y, attn) if return_attn else y


register_mixer("cosine_memory", CosineMemory)

CONFIG = ClassifierConfig(mixer="cosine_memory", dim=32, depth=2, memory_units=8)


@pytest.fixture(scope="module")
def trained():
    """A classifier with the new mixer, trained for one epoch on the synthetic shapes."""
    torch.manual_seed(0)
    model = build_model(CONFIG)
    train_set, val_set = load_dataset("shapes", "train", limit=256), load_dataset("shapes", "val", limit=64)
    history = train(model, train_set, val_set, TrainConfig(epochs=1, batch_size=64, lr=0.05), progress=False)
    return model.eval(), history, val_set


def test_the_config_gives_the_new_mixer_its_settings():
    model = build_model(CONFIG)
    assert all(type(block.mixer) is CosineMemory and block.mixer.memory_units == 8 for block in model.blocks)


def test_a_model_with_the_new_mixer_trains(trained):
    _, history, _ = trained
    assert torch.isfinite(torch.tensor(history["train_loss"])).all()
    assert 0 <= history.last["val_accuracy"] <= 1


def test_the_recorder_finds_the_new_mixer_as_external_attention(trained):
    model, _, val_set = trained
    images = val_set.images[:4].float() / 255
    assert mixer_names(model) == ["blocks.0.mixer", "blocks.1.mixer"]
    assert layer_kind(model, "blocks.1.mixer") == "external"
    record, _ = capture_attention(model, images)
    assert record["blocks.1.mixer"].shape == (4, 64, 8) and record.grids["blocks.1.mixer"] == (8, 8)
    assert memory_unit_maps(model, images, units=[0, 5]).shape == (4, 2, 32, 32)


def test_the_memory_atlas_reads_the_new_mixers_units(trained):
    model, _, val_set = trained
    atlas = build_memory_atlas(model, val_set, top_k=3, progress=False)
    assert atlas.indices.shape == (8, 3)


def test_the_attention_benchmark_measures_the_new_mixer_by_name():
    rows = bench.bench_attention(
        (16, 32), mixers=("external", "cosine_memory"), dim=8, memory_units=4, device="cpu", min_run_time=0.001,
        out=None, verbose=False,
    )  # fmt: skip
    cases = [(n, m) for n in (16, 32) for m in ("external", "cosine_memory")]
    assert [(r["tokens"], r["mixer"]) for r in rows] == cases
    found = {(r["tokens"], r["mixer"]): r for r in rows}
    assert found[(32, "cosine_memory")]["estimated_mb"] == found[(32, "external")]["estimated_mb"]  # an N x S map
    assert all(r["forward_backward_ms"] > 0 for r in rows)


def test_the_training_benchmark_measures_the_new_mixer(tmp_path):
    base = ClassifierConfig(dim=16, depth=1, memory_units=4)
    rows = bench.bench_train(
        ("cosine_memory",), batch_size=4, steps=2, warmup_steps=1, base=base, device="cpu", out=None, verbose=False
    )
    assert rows[0]["mixer"] == "cosine_memory" and rows[0]["images_per_s"] > 0
