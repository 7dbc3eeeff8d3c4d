import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.datasets.voc

from eaviz.data.voc import VOC_CLASSES, VOC_COMMON_CLASSES, eval_split, load_voc

REAL_VOC = Path(os.environ.get("EAVIZ_DATA", "/nonexistent")) / "VOCdevkit" / "VOC2012"

# The test machines are shared: one thread per test process avoids threads fighting.
pytestmark = pytest.mark.usefixtures("single_thread")


def test_load_voc_gives_uint8_images_and_int64_label_maps_of_the_requested_size(voc_root):
    ds = load_voc("train", root=voc_root, size=16)
    assert ds.images.shape == (9, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.targets.shape == (9, 16, 16) and ds.targets.dtype == torch.int64
    assert ds.masks.shape == (9, 16, 16) and ds.masks.dtype == torch.bool
    assert ds.classes == VOC_CLASSES and len(ds.classes) == 21 and ds.classes[0] == "background"
    assert ds.name == "voc" and ds.task == "segmentation"


def test_load_voc_resizes_the_shorter_side_and_center_crops(voc_root, voc_ids):
    # 48x32 -> 24x16 -> central 16 columns; the 4-pixel void band at columns 22..25
    # lands on columns 7..8, with the labelled half left of it and background right of it.
    ds = load_voc("train", root=voc_root, size=16)
    for i, name in enumerate(ds.info["ids"]):
        label = voc_ids.index(name) + 1
        row = torch.tensor([label] * 7 + [255] * 2 + [0] * 7)
        assert torch.equal(ds.targets[i], row.expand(16, 16)), name


def test_load_voc_keeps_void_pixels_as_255(voc_root):
    targets = load_voc("train", root=voc_root, size=16).targets
    values = set(targets.unique().tolist())
    assert 255 in values and values <= set(range(21)) | {255}


def test_load_voc_images_line_up_with_their_labels(voc_root):
    ds = load_voc("train", root=voc_root, size=16)
    red, blue = ds.images[:, 0].float(), ds.images[:, 2].float()
    assert red[ds.masks].mean() > 180 and blue[ds.masks].mean() < 70
    background = ds.targets == 0
    assert blue[background].mean() > 180 and red[background].mean() < 70


def test_load_voc_holds_out_every_tenth_sorted_id_as_val(voc_root, voc_ids):
    train = load_voc("train", root=voc_root, size=16)
    val = load_voc("val", root=voc_root, size=16)
    assert train.info["ids"] == voc_ids[:9] and val.info["ids"] == voc_ids[9:]
    assert train.info["split"] == "train" and val.info["split"] == "val"
    assert "every tenth" in val.info["split_rule"]


def test_eval_split_is_the_official_val_list_when_present_else_the_held_out_part(voc_root):
    assert eval_split(voc_root) == "val"
    (voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000000\n")
    assert eval_split(voc_root) == "official_val"


def test_common_classes_are_background_and_the_twelve_with_enough_pixels():
    assert len(VOC_COMMON_CLASSES) == 13 and VOC_COMMON_CLASSES[0] == "background"
    assert set(VOC_COMMON_CLASSES) <= set(VOC_CLASSES) and "aeroplane" not in VOC_COMMON_CLASSES


def test_load_voc_masks_are_the_object_pixels(voc_root):
    ds = load_voc("val", root=voc_root, size=16)
    assert torch.equal(ds.masks, (ds.targets != 0) & (ds.targets != 255))


def test_load_voc_info_counts_pixels_per_class_and_lists_present_classes(voc_root):
    ds = load_voc("val", root=voc_root, size=16)
    pixels = ds.info["pixels_per_class"]
    assert len(pixels) == 21
    assert pixels[0] == pixels[10] == 16 * 7
    assert sum(pixels) == (ds.targets != 255).sum().item()
    assert ds.info["present_classes"] == [0, 10]


def test_load_voc_limit_takes_the_first_ids_of_the_split(voc_root, voc_ids):
    ds = load_voc("train", root=voc_root, size=16, limit=3)
    assert len(ds) == 3 and ds.info["ids"] == voc_ids[:3]


def test_load_voc_progress_bar_can_be_turned_off(voc_root, capsys):
    load_voc("val", root=voc_root, size=16)
    assert "VOC val" in capsys.readouterr().err
    load_voc("val", root=voc_root, size=16, progress=False)
    assert "VOC val" not in capsys.readouterr().err


def test_load_voc_reads_the_root_from_eaviz_data(voc_root, monkeypatch):
    monkeypatch.setenv("EAVIZ_DATA", str(voc_root))
    assert len(load_voc("val", size=16)) == 1


def test_load_voc_missing_root_names_the_path_and_the_fixes(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_voc(root=missing, size=16)
    message = str(info.value)
    assert str(missing / "VOCdevkit" / "VOC2012") in message
    assert "EAVIZ_DATA" in message and "download=True" in message and "shapes_seg" in message


def test_load_voc_official_val_without_the_val_list_names_the_list(voc_root):
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_voc("official_val", root=voc_root, size=16)


def test_load_voc_corrupt_jpeg_names_the_file(voc_root, voc_ids):
    corrupt = voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{voc_ids[1]}.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    with pytest.raises(RuntimeError, match=voc_ids[1]) as info:
        load_voc("train", root=voc_root, size=16)
    assert str(corrupt) in str(info.value)


def test_load_voc_missing_mask_names_the_file(voc_root, voc_ids):
    missing = voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{voc_ids[0]}.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_voc("train", root=voc_root, size=16)
    assert str(missing) in str(info.value)


def test_load_voc_rejects_unknown_splits_and_bad_sizes(voc_root):
    with pytest.raises(ValueError, match="split"):
        load_voc("test", root=voc_root)
    with pytest.raises(ValueError, match="size"):
        load_voc(root=voc_root, size=0)
    with pytest.raises(ValueError, match="limit"):
        load_voc(root=voc_root, limit=0)


def test_load_voc_announces_the_size_of_the_download_before_it_starts(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        assert "about 2 GB" in capsys.readouterr().out
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="could not download"):
        load_voc(root=tmp_path, size=16, download=True)


def test_load_voc_wraps_a_failed_download(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match="could not download") as info:
        load_voc(root=tmp_path, size=16, download=True)
    assert str(tmp_path) in str(info.value) and "shapes_seg" in str(info.value)


def test_load_voc_does_not_download_what_is_already_there(voc_root, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("downloaded although the data was there")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", fail)
    assert len(load_voc("val", root=voc_root, size=16, download=True)) == 1


@pytest.mark.skipif(not REAL_VOC.is_dir(), reason="real VOC subset not found: set EAVIZ_DATA to ../shared/data")
def test_load_voc_reads_the_real_subset():
    ds = load_voc("train", limit=5)
    assert ds.images.shape == (5, 3, 160, 160)
    assert ds.info["ids"] == sorted(ds.info["ids"])
    assert set(ds.targets.unique().tolist()) <= set(range(21)) | {255}
    assert ds.masks.any() and (ds.targets == 255).any()
