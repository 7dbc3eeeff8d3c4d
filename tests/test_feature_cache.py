"""Training a head on cached backbone features is training the same model on images."""

from dataclasses import replace

import pytest
import torch

from eaviz import pretrained
from eaviz.data.synthetic import load_shapes_segmentation
from eaviz.feature_cache import FeatureSet, cached_features, class_weights, evaluate_head, train_head
from eaviz.models import Segmenter, SegmenterConfig
from eaviz.train import TrainConfig, evaluate

pytestmark = pytest.mark.usefixtures("single_thread")


def frozen_segmenter(head: str = "external") -> Segmenter:
    torch.manual_seed(0)
    config = SegmenterConfig(num_classes=6, head=head, width=16, memory_units=8, freeze_backbone=True)
    return Segmenter(config).eval()  # shapes_seg: background and 5 shapes


@pytest.mark.parametrize("head", ["external", "nonlocal", "none"])
def test_head_on_cached_features_gives_the_logits_of_the_whole_model(head, tmp_path):
    model, data = frozen_segmenter(head), load_shapes_segmentation("val", n=4)
    features = cached_features(model, data, cache_dir=tmp_path, progress=False)
    images = data.images.float() / 255
    with torch.no_grad():
        assert torch.allclose(model.head(features.features, images.shape[-2:]), model(images), atol=1e-5)


def test_cached_evaluation_matches_evaluate_on_the_images(tmp_path):
    model, data = frozen_segmenter(), load_shapes_segmentation("val", n=6)
    from_cache = evaluate_head(model, cached_features(model, data, cache_dir=tmp_path, progress=False))
    from_images = evaluate(model, data)
    assert from_cache["miou"] == pytest.approx(from_images["miou"], abs=1e-6)
    assert from_cache["loss"] == pytest.approx(from_images["loss"], rel=1e-4)


def test_features_are_computed_once_and_read_back_from_the_cache(tmp_path, monkeypatch):
    model, data = frozen_segmenter(), load_shapes_segmentation("val", n=4)
    first = cached_features(model, data, cache_dir=tmp_path, flips=True, progress=False)
    monkeypatch.setattr(model, "features", lambda images: pytest.fail("recomputed cached features"))
    again = cached_features(model, data, cache_dir=tmp_path, flips=True, progress=False)
    assert len(list(tmp_path.iterdir())) == 1 and torch.equal(first.features, again.features)


def test_flipped_features_are_those_of_the_mirror_images_with_mirrored_labels(tmp_path):
    model, data = frozen_segmenter(), load_shapes_segmentation("val", n=3)
    cached = cached_features(model, data, cache_dir=tmp_path, flips=True, progress=False)
    with torch.no_grad():
        mirrored = model.features(data.images.flip(-1).float() / 255)
    assert len(cached) == 6 and cached.images == 3
    assert torch.allclose(cached.features[3:], mirrored, atol=1e-6)
    assert torch.equal(cached.targets[3:].long(), data.targets.flip(-1))


def test_other_images_or_other_backbone_weights_get_another_cache_file(tmp_path):
    model, data = frozen_segmenter(), load_shapes_segmentation("val", n=4)
    cached_features(model, data, cache_dir=tmp_path, progress=False)
    cached_features(model, data.subset(slice(0, 3)), cache_dir=tmp_path, progress=False)
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    cached_features(model, data, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.iterdir())) == 3


def test_cached_features_need_a_frozen_backbone(tmp_path):
    model = Segmenter(SegmenterConfig(width=16, memory_units=8))
    with pytest.raises(ValueError, match="freeze_backbone=True"):
        cached_features(model, load_shapes_segmentation("val", n=2), cache_dir=tmp_path)


def test_train_head_learns_and_leaves_the_frozen_backbone_unchanged(tmp_path):
    model, data = frozen_segmenter(), load_shapes_segmentation("train", n=32)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    features = cached_features(model, data, cache_dir=tmp_path, flips=True, progress=False)
    config = TrainConfig(epochs=4, batch_size=8, lr=1e-2, optimizer="adamw", schedule="cosine", weight_decay=0.0)
    history = train_head(model, features, features, config, progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert all(torch.equal(v, backbone[k]) for k, v in model.backbone.state_dict().items())


def test_cached_recipe_trains_a_head_and_ships_only_the_head(voc_root, tmp_path, monkeypatch):
    recipe = pretrained.RECIPES["voc-external"]
    small = replace(recipe, train=replace(recipe.train, epochs=1, batch_size=4), data_size=16)
    monkeypatch.setitem(pretrained.RECIPES, "voc-external", small)
    folder = tmp_path / "checkpoints"
    card = pretrained.train_cached_recipe("voc-external", root=voc_root, cache_dir=tmp_path / "cache", folder=folder)
    assert card["split"]["val_split"] == "val" and card["split"]["train"] == 9 and card["split"]["val"] == 1
    assert "frozen" in card["backbone"] and "cached" in card["backbone"] and len(card["history"]) == 1
    stored = torch.load(tmp_path / "checkpoints" / "voc-external.pt", weights_only=True)
    assert not any(k.startswith("backbone.") for k in stored["head"])
    model, loaded_card = pretrained.load_pretrained("voc-external", folder=folder)
    assert loaded_card["name"] == "voc-external" and not model.training


def test_class_weights_favour_rare_classes_give_absent_ones_zero_and_ignore_void():
    targets = torch.tensor([[[0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 255, 255, 0, 0, 0, 0, 0, 0]]], dtype=torch.uint8)
    data = FeatureSet(torch.zeros(1, 1, 1, 1), targets, ["background", "cat", "dog"])
    weights = class_weights(data)  # pixel shares 15/16 and 1/16, void not counted
    expected = torch.tensor([(15 / 16) ** -0.5, 4.0])
    assert weights[2] == 0 and torch.allclose(weights[:2], expected / expected.mean())
    assert torch.equal(class_weights(data, power=0.0)[:2], torch.ones(2))
