"""Specs for class-aware external-attention maps, the centre prior, and paired AUC differences."""

import pytest
import torch
from einops import rearrange
from torch import nn

from eaviz.attention import ExternalAttention
from eaviz.explain import (
    AucDifference,
    AucTable,
    auc_differences,
    bootstrap_interval,
    centre_prior,
    curve_differences,
    faithfulness_curves,
    unit_grad_cam,
    value_memory,
    value_norm_map,
)
from eaviz.models import Classifier, ClassifierConfig

pytestmark = pytest.mark.usefixtures("single_thread")


class PixelTokens(nn.Module):
    """Each pixel is a token, one external-attention layer, mean pooling, a linear head: (B, 3, 4, 4) -> (B, 3).

    With a non-negative value memory, class 0 gains from every unit and class 1 loses from every unit.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mixer = ExternalAttention(3, memory_units=5)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.mixer.mv.weight.abs_()
            self.head.weight.copy_(torch.tensor([[1.0, 0.5, 0.2], [-1.0, -1.0, -1.0], [0.3, -0.2, 0.1]]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = rearrange(images, "b c h w -> b (h w) c")
        return self.head(self.mixer(tokens).mean(dim=1))


class TopLeft(nn.Module):
    """Class 0 scores the brightness of the top-left quadrant; class 1 scores nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = images[:, :, :4, :4].mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([score, torch.full_like(score, 2.0)], dim=1)


def images(n: int = 3, size: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_unit_grad_cam_weights_units_by_the_class_gradient():
    model, x = PixelTokens().eval(), images()
    target = torch.tensor([0, 0, 2])
    attn = model.mixer.mk(rearrange(x, "b c h w -> b (h w) c"))
    from eaviz.attention import normalize_attention

    attn = normalize_attention(attn, "double")  # (B, 16, 5)
    weights = model.head.weight[target] @ model.mixer.mv.weight / 16  # d logit / d alpha[n, s], the same for every n
    expected = torch.einsum("bs,bns->bn", weights, attn).clamp_min(0).reshape(3, 4, 4)
    assert expected[0].min() > 0 and expected[0].std() > 0
    torch.testing.assert_close(unit_grad_cam(model, x, target), expected.detach())


def test_unit_grad_cam_changes_with_the_explained_class():
    model, x = PixelTokens().eval(), images()
    assert (unit_grad_cam(model, x, 0) > 0).all() and (unit_grad_cam(model, x, 1) == 0).all()


def test_unit_grad_cam_leaves_the_model_as_it_found_it():
    model = Classifier(ClassifierConfig(dim=32, depth=1, memory_units=8)).train()
    cam = unit_grad_cam(model, images(2, 32))
    assert cam.shape == (2, 8, 8) and (cam >= 0).all()
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_unit_grad_cam_averages_the_heads_of_multi_head_external_attention():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(dim=32, depth=2, mixer="multihead_external", heads=2, memory_units=8)).eval()
    cam = unit_grad_cam(model, images(2, 32), layer="blocks.0.mixer")
    assert cam.shape == (2, 8, 8) and torch.isfinite(cam).all()


def test_value_norm_map_is_the_norm_of_what_the_mixer_writes():
    model, x = PixelTokens().eval(), images()
    written = model.mixer(rearrange(x, "b c h w -> b (h w) c")).norm(dim=-1).reshape(3, 4, 4)
    torch.testing.assert_close(value_norm_map(model, x), written.detach())


def test_value_norm_map_works_on_multi_head_layers():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(dim=32, depth=1, mixer="multihead_external", heads=2, memory_units=8)).eval()
    assert value_memory(model, "blocks.0.mixer").shape == (8, 16)
    assert value_norm_map(model, images(2, 32)).shape == (2, 8, 8)


def test_a_mixer_without_value_memory_is_rejected_by_name():
    class Memoryless(nn.Module):
        kind = "external"
        memory_units = 4

        def forward(self, x, return_attn=False):
            attn = torch.full((*x.shape[:2], 4), 0.25)
            return (x, attn) if return_attn else x

    model = nn.Sequential(Memoryless())
    with pytest.raises(ValueError, match="layer '0' \\(Memoryless\\) has no value memory"):
        value_memory(model, "0")


def test_centre_prior_peaks_in_the_middle_and_is_symmetric():
    prior = centre_prior(2, (6, 8))
    assert prior.shape == (2, 6, 8)
    assert int(prior[0].argmax()) in {2 * 8 + 3, 2 * 8 + 4, 3 * 8 + 3, 3 * 8 + 4}
    torch.testing.assert_close(prior, prior.flip(-1).flip(-2))
    assert prior.max() <= 1 and prior.min() > 0


def test_a_map_of_what_the_model_reads_beats_random_in_both_modes():
    model, x = TopLeft(), 0.5 + 0.5 * images(8, 8)
    right = torch.zeros(8, 2, 2)
    right[:, 0, 0] = 1
    table = auc_differences(model, x, {"top-left": right}, target=0, steps=4, baseline="zero", resamples=200)
    deletion, insertion = table
    assert (deletion.mode, insertion.mode) == ("deletion", "insertion")
    assert deletion.better and insertion.better
    assert deletion.difference == pytest.approx(deletion.auc - deletion.reference_auc)


def test_random_maps_drawn_with_the_same_seed_differ_from_random_by_zero():
    model, x = TopLeft(), images(4, 8)
    noise = torch.rand((4, 2, 2), generator=torch.Generator().manual_seed(3))
    row = auc_differences(model, x, {"same noise": noise}, steps=4, seed=3, resamples=50)[0]
    assert (row.difference, row.low, row.high) == (0.0, 0.0, 0.0)
    assert not row.better
    assert "same noise" in str(auc_differences(model, x, {"same noise": noise}, steps=4, seed=3, resamples=50))


def test_bootstrap_interval_is_seeded_and_holds_the_mean():
    values = torch.randn(30, generator=torch.Generator().manual_seed(0))
    low, high = bootstrap_interval(values, seed=1)
    assert (low, high) == bootstrap_interval(values, seed=1)
    assert low < float(values.mean()) < high


def test_curve_differences_pair_every_method_with_the_named_reference():
    model, x = TopLeft(), 0.5 + 0.5 * images(8, 8)
    right = torch.zeros(8, 2, 2)
    right[:, 0, 0] = 1
    maps = {"top-left": right, "centre": centre_prior(8, (2, 2)), "wrong": 1 - right}
    curves = faithfulness_curves(model, x, maps, target=0, steps=4, baseline="zero")
    table = curve_differences(curves, "wrong", resamples=200)
    assert [(row.method, row.mode, row.reference) for row in table] == [
        (method, mode, "wrong") for method in ("top-left", "centre") for mode in ("deletion", "insertion")
    ]
    deletion = table[0]
    expected = (curves["top-left"]["deletion"].auc - curves["wrong"]["deletion"].auc).mean()
    assert deletion.difference == pytest.approx(float(expected))
    assert deletion.better and table[1].better and "wrong" in str(table)


def test_difference_tables_print_one_table_per_mode_and_name_the_reference_once():
    model, x = TopLeft(), 0.5 + 0.5 * images(8, 8)
    right = torch.zeros(8, 2, 2)
    right[:, 0, 0] = 1
    curves = faithfulness_curves(model, x, {"top-left": right, "wrong": 1 - right}, target=0, steps=4, baseline="zero")
    table = curve_differences(curves, "wrong", resamples=200)
    caption, deletion, insertion = str(table).split("\n\n")
    assert caption.startswith("Reference: wrong (deletion AUC") and "8 images" in caption
    for block, mode in ((deletion, "deletion"), (insertion, "insertion")):
        title, header, row = block.splitlines()
        assert title.startswith(mode) and header.split() == ["map", "AUC", "difference", "95%", "interval"]
        assert row.startswith("top-left") and row.endswith("] ✓")
    assert table._repr_markdown_().count("| top-left |") == 2


def test_difference_tables_never_print_a_nonzero_interval_end_as_zero():
    row = AucDifference("map", "insertion", 0.02, 0.00004, 0.04, 0.6, 0.58, 100, 0.95, "centre prior")
    interval = AucTable([row]).rows("insertion")[0][-1]
    assert interval == "[+0.00004, +0.040] ✓"


def test_curve_differences_name_a_missing_reference():
    curves = faithfulness_curves(TopLeft(), images(2, 8), {"noise": torch.rand(2, 2, 2)}, steps=2)
    with pytest.raises(ValueError, match="expected reference to be one of the methods \\['noise'\\], got 'random'"):
        curve_differences(curves)
