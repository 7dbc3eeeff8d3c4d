"""Specs for eaviz.explain: captum attributions and deletion / insertion curves."""

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from captum.metrics import infidelity
from einops import repeat
from torch import nn

from eaviz.explain import (
    METHODS,
    Curve,
    attribute,
    baseline_images,
    deletion_curve,
    faithfulness_curves,
    faithfulness_table,
    plot_explanations,
    plot_faithfulness,
)
from eaviz.models import Classifier, ClassifierConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(dim=32, depth=1)).eval()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32)


class RegionScore(nn.Module):
    """A "model" with a known answer: class 0's logit is a weighted sum of the pixels.

    images: (B, 3, H, W) -> logits (B, 2) = [s, 0], s = sum(weight * images) rescaled to about
    [-2, 2]; the weight is positive inside the top-left quarter and zero elsewhere, so the true
    importance of a pixel (against a black baseline) is sum over RGB of weight * image.
    """

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        weight = torch.zeros(3, size, size)
        weight[:, : size // 2, : size // 2] = torch.rand(3, size // 2, size // 2) + 0.1
        self.register_buffer("weight", weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = 8 * (images * self.weight).sum(dim=(1, 2, 3)) / self.weight.sum() - 2
        return torch.stack([s, torch.zeros_like(s)], dim=-1)

    def importance(self, images: torch.Tensor) -> torch.Tensor:
        return (images * self.weight).sum(dim=1)


@pytest.fixture
def linear_case() -> tuple[RegionScore, torch.Tensor]:
    torch.manual_seed(2)
    return RegionScore(), torch.rand(3, 3, 8, 8)


def reference_baseline(images: torch.Tensor, baseline: str) -> torch.Tensor:
    """What removed pixels become, written apart from eaviz.explain: black, each image's mean
    colour, or a 2-D Gaussian blur (sigma = max(H, W) / 8, radius ceil(2 sigma)) of the
    edge-replicated image."""
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    sigma = max(images.shape[-2:]) / 8
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    gauss = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    kernel = (gauss / gauss.sum()).expand(images.shape[1], 1, -1, -1)
    return F.conv2d(F.pad(images, (radius,) * 4, mode="replicate"), kernel, groups=images.shape[1])


def reference_curve(model, images, maps, target, steps, mode, fill):
    """Plain pixel-by-pixel deletion / insertion: no batching, no masks, no einops.

    A coarse map is first blown up so that every pixel carries its cell's value; pixels are
    ranked highest first (Python's sort is stable, so ties keep raster order) and moved one
    at a time, recording the class probability after every H * W / steps of them.
    """
    batch, _, height, width = images.shape
    pixels = height * width
    assert pixels % steps == 0, "choose steps dividing H * W so each step moves whole pixels"
    scores, areas = [], []
    for b in range(batch):
        full = maps[b].repeat_interleave(height // maps.shape[1], 0).repeat_interleave(width // maps.shape[2], 1)
        values = full.flatten().tolist()
        order = sorted(range(pixels), key=lambda i: -values[i])
        picture, source = (images[b].clone(), fill[b]) if mode == "deletion" else (fill[b].clone(), images[b])

        def score():
            with torch.no_grad():
                return model(picture[None]).softmax(dim=-1)[0, target[b]].item()

        row = [score()]
        for moved, i in enumerate(order, start=1):
            y, x = divmod(i, width)
            picture[:, y, x] = source[:, y, x]
            if moved % (pixels // steps) == 0:
                row.append(score())
        scores.append(row)
        areas.append(sum((row[k] + row[k + 1]) / 2 / steps for k in range(steps)))
    return torch.tensor(scores), torch.tensor(areas)


def test_attribute_returns_one_nonnegative_image_sized_map_per_method(model, images):
    maps = attribute(model, images)
    assert list(maps) == list(METHODS)
    for name, m in maps.items():
        assert m.shape == (2, 32, 32), name
        assert torch.isfinite(m).all(), name
        assert (m >= 0).all(), name
        assert m.max() > 0, name


def test_attribute_defaults_to_the_predicted_class(model, images):
    predicted = model(images).argmax(dim=-1)
    default = attribute(model, images, methods="saliency")["saliency"]
    explicit = attribute(model, images, target=predicted, methods="saliency")["saliency"]
    torch.testing.assert_close(default, explicit)


def test_attribute_restores_the_model_and_leaves_no_parameter_gradients(images):
    torch.manual_seed(0)
    net = Classifier(ClassifierConfig(dim=32, depth=1)).train()
    attribute(net, images, ig_steps=4, window=8)
    assert net.training
    assert all(p.grad is None and p.requires_grad for p in net.parameters())


def test_grad_cam_is_the_relu_of_gradient_weighted_token_grid_upsampled(model, images):
    target = torch.tensor([3, 7])
    saved = {}
    handle = model.token_grid.register_forward_hook(lambda mod, inp, out: saved.update(grid=out))
    logits = model(images)
    handle.remove()
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), saved["grid"])[0]  # (B, d, 8, 8)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * saved["grid"]).sum(dim=1, keepdim=True))
    expected = F.interpolate(cam, size=(32, 32), mode="bilinear")[:, 0]
    torch.testing.assert_close(attribute(model, images, target, "grad_cam")["grad_cam"], expected.detach())


def test_attribute_rejects_an_unknown_method_and_lists_the_valid_ones(model, images):
    with pytest.raises(ValueError, match="gradcam.*integrated_gradients.*occlusion"):
        attribute(model, images, methods=("saliency", "gradcam"))


def test_attribute_rejects_images_without_a_batch_axis(model, images):
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\)"):
        attribute(model, images[0])


def test_attribute_rejects_a_target_per_image_of_the_wrong_length(model, images):
    with pytest.raises(ValueError, match="expected target"):
        attribute(model, images, target=[1, 2, 3], methods="saliency")
    with pytest.raises(ValueError, match=r"target classes in \[0, 10\)"):
        attribute(model, images, target=10, methods="saliency")


def test_deleting_by_the_true_importance_drops_the_score_fastest(linear_case):
    net, x = linear_case
    perfect = deletion_curve(net, x, net.importance(x), target=0, steps=64, baseline="zero")
    inverted = deletion_curve(net, x, -net.importance(x), target=0, steps=64, baseline="zero")
    for seed in range(5):
        torch.manual_seed(seed)
        chance = deletion_curve(net, x, torch.rand(3, 8, 8), target=0, steps=64, baseline="zero")
        assert (perfect.scores <= chance.scores + 1e-6).all()
        assert (perfect.auc < chance.auc).all() and (chance.auc < inverted.auc).all()


def test_insertion_ranks_the_maps_the_other_way(linear_case):
    net, x = linear_case
    kw = dict(target=0, steps=64, mode="insertion", baseline="zero")
    perfect = deletion_curve(net, x, net.importance(x), **kw)
    inverted = deletion_curve(net, x, -net.importance(x), **kw)
    for seed in range(5):
        torch.manual_seed(seed)
        chance = deletion_curve(net, x, torch.rand(3, 8, 8), **kw)
        assert (perfect.scores >= chance.scores - 1e-6).all()
        assert (perfect.auc > chance.auc).all() and (chance.auc > inverted.auc).all()


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
@pytest.mark.parametrize("map_size, steps", [(8, 16), (32, 8)])
def test_deletion_curve_matches_a_pixel_by_pixel_reference(model, images, mode, baseline, map_size, steps):
    torch.manual_seed(3)
    maps = torch.rand(2, map_size, map_size)
    target = model(images).argmax(dim=-1)
    curve = deletion_curve(model, images, maps, steps=steps, mode=mode, baseline=baseline)
    scores, areas = reference_curve(model, images, maps, target, steps, mode, reference_baseline(images, baseline))
    torch.testing.assert_close(curve.fractions, torch.linspace(0, 1, steps + 1))
    torch.testing.assert_close(curve.scores, scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(curve.auc, areas, atol=1e-5, rtol=1e-4)


def test_infidelity_agrees_that_the_true_importance_is_the_faithful_map(linear_case):
    net, x = linear_case

    def drop_random_pixels(inputs):
        kept = (torch.rand(inputs.shape[0], 1, *inputs.shape[2:]) > 0.3).float()
        return (1 - kept).expand_as(inputs), inputs * kept

    def infidelity_of(maps):
        torch.manual_seed(4)
        per_channel = repeat(maps, "b h w -> b c h w", c=3) / 3
        return infidelity(net, drop_random_pixels, x, per_channel, target=0, n_perturb_samples=16, normalize=True)

    torch.manual_seed(5)
    chance = torch.rand(3, 8, 8)
    assert infidelity_of(net.importance(x)).max() < 1e-6
    assert (infidelity_of(chance) > 1e-3).all()
    kw = dict(target=0, steps=64, baseline="zero")
    assert (deletion_curve(net, x, net.importance(x), **kw).auc < deletion_curve(net, x, chance, **kw).auc).all()


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
def test_baselines_match_references_written_apart(images, baseline):
    torch.testing.assert_close(baseline_images(images, baseline), reference_baseline(images, baseline))


def test_blur_baseline_keeps_a_flat_image_flat_and_smooths_noise():
    torch.manual_seed(6)
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(baseline_images(flat, "blur"), flat)
    noise = torch.rand(1, 3, 16, 16)
    assert baseline_images(noise, "blur").std() < noise.std() / 2


def test_faithfulness_table_holds_mean_deletion_and_insertion_auc(model, images):
    torch.manual_seed(7)
    maps = {"random": torch.rand(2, 8, 8), "center": F.pad(torch.ones(2, 4, 4), (2, 2, 2, 2))}
    table = faithfulness_table(model, images, maps, steps=8)
    deletion = deletion_curve(model, images, maps["random"], steps=8)
    insertion = deletion_curve(model, images, maps["random"], steps=8, mode="insertion")
    assert list(table) == ["random", "center"]
    assert table["random"] == pytest.approx((deletion.auc.mean().item(), insertion.auc.mean().item()))


def test_deletion_curve_rejects_maps_that_do_not_fit_the_images(model, images):
    with pytest.raises(ValueError, match=r"expected maps of shape \(2, h, w\)"):
        deletion_curve(model, images, torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="h dividing 32"):
        deletion_curve(model, images, torch.rand(2, 7, 7))
    with pytest.raises(ValueError, match="finite"):
        deletion_curve(model, images, torch.full((2, 8, 8), float("nan")))


def test_deletion_curve_rejects_fewer_than_one_step_and_unknown_options(model, images):
    maps = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="expected steps >= 1, got 0"):
        deletion_curve(model, images, maps, steps=0)
    with pytest.raises(ValueError, match="mode"):
        deletion_curve(model, images, maps, mode="removal")
    with pytest.raises(ValueError, match="baseline"):
        deletion_curve(model, images, maps, baseline="noise")


def test_plot_explanations_draws_the_image_then_one_column_per_map_set(images):
    fig = plot_explanations(images, {"EA unit 0": torch.rand(2, 8, 8), "saliency": torch.rand(2, 32, 32).numpy()})
    assert len(fig.axes) == 2 * 3 + 1  # and the colour bar
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "EA unit 0", "saliency"]
    plt.close(fig)
    with pytest.raises(ValueError, match="one map per image"):
        plot_explanations(images, {"SA": torch.rand(3, 8, 8)})


def test_plot_explanations_panel_sets_the_side_of_each_map(images):
    fig = plot_explanations(images, {"saliency": torch.rand(2, 8, 8)}, panel=1.4)
    assert tuple(fig.get_size_inches()) == pytest.approx((2 * 1.4, 2 * 1.4))
    plt.close(fig)


def test_plot_explanations_colour_bar_says_each_map_has_its_own_range(images):
    fig = plot_explanations(images, {"saliency": torch.rand(2, 8, 8)})
    assert fig.axes[-1].get_ylabel() == "each map on its own range"
    plt.close(fig)
    fig = plot_explanations(images, {"saliency": torch.rand(2, 8, 8)}, colorbar=False)
    assert len(fig.axes) == 2 * 2
    plt.close(fig)


def test_plot_faithfulness_draws_a_panel_per_mode_with_auc_in_the_legend(model, images):
    torch.manual_seed(8)
    curves = faithfulness_curves(model, images, {"random": torch.rand(2, 8, 8)}, steps=4)
    assert isinstance(curves["random"]["deletion"], Curve)
    fig = plot_faithfulness(curves)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["deletion", "insertion"]
    assert "AUC" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert fig.axes[0].get_ylabel() == "probability of the predicted class"
    plt.close(fig)


def test_plot_faithfulness_keeps_each_methods_line_style_in_both_panels(model, images):
    torch.manual_seed(8)
    maps = {"random": torch.rand(2, 8, 8), "other": torch.rand(2, 8, 8)}
    fig = plot_faithfulness(faithfulness_curves(model, images, maps, steps=2))
    styles = [[line.get_linestyle() for line in ax.get_lines()] for ax in fig.axes]
    assert styles[0] == styles[1] == ["-", "--"]
    plt.close(fig)
