"""Fixtures shared by the test files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VOC_IDS = [f"2008_{i:06d}" for i in range(10)]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built once per test session, from scratch (no cached environment), warnings as errors.

    Returns the built site, ``_build/html``. Tests that use it are slow: mark them so.
    """
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [jupyter_book, "build", "-W", "-n", "--keep-going", "--path-output", out, ROOT],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return out / "_build" / "html"


def voc_palette() -> list[int]:
    """The standard Pascal VOC colour map, flattened to 768 ints for ``Image.putpalette``."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """A 10-image Pascal VOC 2012 tree in the real on-disk format; returns the root above VOCdevkit.

    Image ``VOC_IDS[i]`` is 48x32 (even i) or 32x48 (odd i). Its left half is red and has
    class ``i + 1``, its right half is blue background (0), and a void (255) band 4 pixels
    wide runs down the middle, where the halves meet. train.txt lists the ids unsorted.
    """
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    palette = voc_palette()
    for i, name in enumerate(VOC_IDS):
        w, h = (48, 32) if i % 2 == 0 else (32, 48)
        labels = np.zeros((h, w), dtype=np.uint8)
        labels[:, : w // 2] = i + 1
        labels[:, w // 2 - 2 : w // 2 + 2] = 255
        pixels = np.zeros((h, w, 3), dtype=np.uint8)
        pixels[:, : w // 2] = (220, 20, 20)
        pixels[:, w // 2 :] = (20, 20, 220)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        mask = Image.frombytes("P", (w, h), labels.tobytes())
        mask.putpalette(palette)
        mask.save(voc / "SegmentationClass" / f"{name}.png")
    listed = VOC_IDS[1::2] + VOC_IDS[::2]
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(listed) + "\n")
    return tmp_path


@pytest.fixture
def voc_ids() -> list[str]:
    """The ids that ``voc_root`` writes, sorted."""
    return list(VOC_IDS)


@pytest.fixture
def single_thread():
    """Run the test on one CPU thread (the test machines are shared), then restore the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixer_attention(model, images, layer: str = "blocks.0.mixer") -> torch.Tensor:
    """The mixer's own ``return_attn`` on the tokens it receives in a forward pass (a hook): a reference apart
    from eaviz.viz, for the tests of the recorder, maps and widgets."""
    mixer, seen = model.get_submodule(layer), []
    handle = mixer.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    with torch.no_grad():
        model(images)
        handle.remove()
        return mixer(seen[0], return_attn=True)[1]
