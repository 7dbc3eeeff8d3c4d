import pytest
import torch
from torch import nn

from eaviz.data.synthetic import (
    SEGMENTATION_CLASSES,
    SHAPE_CLASSES,
    load_shapes,
    load_shapes_segmentation,
    make_shapes,
    make_shapes_segmentation,
)

# The test machines are shared: one thread per test process avoids threads fighting.
pytestmark = pytest.mark.usefixtures("single_thread")


def test_shapes_are_the_same_for_the_same_seed():
    a, b = make_shapes(50, seed=3), make_shapes(50, seed=3)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.targets, b.targets)
    assert torch.equal(a.masks, b.masks)


def test_shapes_differ_between_seeds():
    a, b = make_shapes(50, seed=0), make_shapes(50, seed=1)
    assert not torch.equal(a.images, b.images)


def test_shapes_segmentation_is_the_same_for_the_same_seed():
    a, b = make_shapes_segmentation(10, seed=3), make_shapes_segmentation(10, seed=3)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.images, make_shapes_segmentation(10, seed=4).images)


def test_shapes_have_uint8_images_class_targets_and_bool_masks():
    ds = make_shapes(40, size=32)
    assert ds.images.shape == (40, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.targets.shape == (40,) and ds.targets.dtype == torch.int64
    assert ds.masks.shape == (40, 32, 32) and ds.masks.dtype == torch.bool
    assert ds.targets.min() >= 0 and ds.targets.max() < 10
    assert ds.classes == SHAPE_CLASSES and len(set(ds.classes)) == 10
    assert ds.name == "shapes" and ds.task == "classification"


def test_shapes_follow_the_size_argument():
    ds = make_shapes(4, size=48)
    assert ds.images.shape == (4, 3, 48, 48) and ds.masks.shape == (4, 48, 48)


def test_every_shape_mask_is_a_non_empty_part_of_the_image():
    ds = make_shapes(200)
    area = ds.masks.float().mean(dim=(1, 2))
    assert area.min() > 0.03 and area.max() < 0.6
    # objects stay inside the image: the outermost pixel ring is always background
    border = ds.masks.clone()
    border[:, 1:-1, 1:-1] = False
    assert not border.any()


def test_objects_contrast_with_the_background_around_them():
    ds = make_shapes(100)
    images, masks = ds.images.float(), ds.masks[:, None]
    inside = (images * masks).sum(dim=(2, 3)) / masks.sum(dim=(2, 3))
    outside = (images * ~masks).sum(dim=(2, 3)) / (~masks).sum(dim=(2, 3))
    assert (inside - outside).abs().max(dim=1).values.min() > 20


def test_shape_classes_are_balanced():
    counts = make_shapes(1005).targets.bincount(minlength=10)
    assert counts.min() == 100 and counts.max() == 101


def test_shapes_segmentation_labels_background_and_shapes():
    ds = make_shapes_segmentation(20, size=64, max_objects=3)
    assert ds.images.shape == (20, 3, 64, 64) and ds.images.dtype == torch.uint8
    assert ds.targets.shape == (20, 64, 64) and ds.targets.dtype == torch.int64
    assert ds.classes == SEGMENTATION_CLASSES and ds.classes[0] == "background"
    assert ds.targets.min() >= 0 and ds.targets.max() < len(SEGMENTATION_CLASSES)
    assert ds.name == "shapes_seg" and ds.task == "segmentation"


def test_shapes_segmentation_masks_are_the_non_background_pixels():
    ds = make_shapes_segmentation(20)
    assert torch.equal(ds.masks, ds.targets > 0)
    assert ds.masks.any(dim=(1, 2)).all()
    assert (~ds.masks).any(dim=(1, 2)).all()


def test_shapes_segmentation_uses_every_class_and_at_most_max_objects():
    ds = make_shapes_segmentation(50, max_objects=2)
    assert set(ds.targets.unique().tolist()) == set(range(len(SEGMENTATION_CLASSES)))
    assert max(ds.info["objects"]) <= 2 and min(ds.info["objects"]) >= 1


def test_load_shapes_train_and_val_differ_and_have_default_sizes():
    train, val = load_shapes("train", n=30), load_shapes("val", n=30)
    assert train.info["split"] == "train" and val.info["split"] == "val"
    assert not torch.equal(train.images, val.images)
    assert len(load_shapes_segmentation("val")) == 200


def test_load_shapes_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split"):
        load_shapes("test")
    with pytest.raises(ValueError, match="split"):
        load_shapes_segmentation("official_val")


def test_make_shapes_rejects_a_non_positive_n():
    with pytest.raises(ValueError, match="n >= 1"):
        make_shapes(0)


@pytest.mark.slow
def test_a_tiny_cnn_learns_shapes_well_above_chance():
    torch.manual_seed(0)
    train, val = make_shapes(2000, seed=0), make_shapes(500, seed=1)

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    net = nn.Sequential(
        *block(3, 8),
        nn.MaxPool2d(2),
        *block(8, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    images, g = train.images.float() / 255, torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = torch.randint(len(train), (32,), generator=g)
        loss = nn.functional.cross_entropy(net(images[batch]), train.targets[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(val.images.float() / 255).argmax(1) == val.targets).float().mean()
    assert accuracy > 0.5
