"""The book: its table of contents and configuration, the build with warnings as errors, and
its pages as a reader sees them in a headless browser, offline.

Screenshots go to ``_build/screenshots/`` so that a person can look at them.
Chromium (Debian package ``chromium``) is needed for the browser tests: without it they are
skipped on a workstation and fail in CI (``$CI`` set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from eaviz.notebooks import WIDGET_STATE, load_config, toc_notebooks, toc_pages

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=8000",
    "--window-size=1200,900",
]
INTRODUCTION = ROOT / "notebooks" / "01_introduction.ipynb"
MEMORY_CHAPTER = ROOT / "notebooks" / "09_inside_the_memory.ipynb"


def has_widget_state(notebook: Path) -> bool:
    state = nbformat.read(notebook, as_version=4).metadata.get("widgets", {}).get(WIDGET_STATE, {})
    return bool(state.get("state"))


NOTEBOOKS = toc_notebooks(ROOT)
SCREENSHOT_PAGES = [page for page in NOTEBOOKS if page in (INTRODUCTION, MEMORY_CHAPTER)]
WIDGET_PAGES = [page for page in NOTEBOOKS if has_widget_state(page)]


def built(site: Path, page: Path) -> Path:
    """The HTML file the build makes from a source page."""
    return site / page.relative_to(ROOT).with_suffix(".html")


def page_id(page: Path) -> str:
    return page.stem


def chromium() -> str:
    """The Chromium executable; skips the test without one, except in CI, where it fails."""
    executable = shutil.which("chromium")
    if executable:
        return executable
    message = "headless Chromium is needed: apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(*args: str) -> str:
    """Run headless Chromium with a throwaway profile; returns its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_toc_entry_is_an_existing_page():
    pages = toc_pages(ROOT)  # raises, naming the missing entries
    assert pages[0] == INTRODUCTION
    assert ROOT / "book" / "bibliography.md" in pages


def test_config_names_repository_colab_and_bibliography():
    config = load_config(ROOT)
    assert config["repository"]["url"] == "https://github.com/eaviz/external-attention-book"
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["html"]["use_repository_button"] is True
    assert config["execute"]["execute_notebooks"] == "off"
    assert all((ROOT / bib).is_file() for bib in config["bibtex_bibfiles"])


def test_widget_scripts_are_vendored_and_small():
    sphinx = load_config(ROOT)["sphinx"]["config"]
    static = [ROOT / folder for folder in sphinx["html_static_path"]]
    scripts = list(sphinx["nb_ipywidgets_js"])
    assert [name.rsplit("/", 1)[-1] for name in scripts] == ["require.js", "embed-amd.js"]
    for script in scripts:
        assert any((folder / script).is_file() for folder in static), script
    assert not (ROOT / "_static").exists(), "Jupyter Book adds every .js under _static/ to every page"
    vendored = (ROOT / "book" / "_static" / "widgets").iterdir()
    assert sum(file.stat().st_size for file in vendored) < 5e6


@pytest.mark.slow
def test_book_builds_every_toc_page(site: Path):
    assert (site / "index.html").is_file()
    for page in toc_pages(ROOT):
        assert built(site, page).is_file(), page


@pytest.mark.slow
def test_widget_scripts_load_once_on_widget_pages_and_nowhere_else(site: Path):
    for page in toc_pages(ROOT):
        html = built(site, page).read_text()
        for script in ("widgets/require.js", "widgets/embed-amd.js"):
            expected = 1 if page in WIDGET_PAGES else 0
            assert len(re.findall(rf'<script[^>]+src="[^"]*{script}', html)) == expected, (page.name, script)
        assert "cdn.jsdelivr.net/npm/@jupyter-widgets" not in html, page.name


@pytest.mark.slow
def test_bibliography_lists_the_paper_under_the_label_its_citations_read(site: Path):
    html = (site / "book" / "bibliography.html").read_text()
    assert "beyond self-attention: external attention using two linear layers" in html.lower()
    assert re.search(r'<span class="label">.{0,120}>Guo et al\., 2023<', html) and "GLMH23" not in html


def test_bibliography_labels_are_author_year_and_unique():
    pybtex_database = pytest.importorskip("pybtex.database")
    import sys

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from authoryear_labels import AuthorYearLabelStyle

    entries = pybtex_database.parse_file(ROOT / "book" / "references.bib").entries
    labels = dict(zip(entries, AuthorYearLabelStyle().format_labels(entries.values())))
    assert labels["guo2022external"] == "Guo et al., 2023"
    assert labels["jain2019attention"] == "Jain and Wallace, 2019"
    assert len(set(labels.values())) == len(labels)


@pytest.mark.slow
@pytest.mark.parametrize("page", SCREENSHOT_PAGES, ids=page_id)
def test_page_has_text_and_figures(site: Path, page: Path):
    html = built(site, page).read_text()
    article = re.search(r'<article class="bd-article">(.*?)</article>', html, re.S).group(1)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article))
    assert len(text) > 1000
    figures = re.findall(r'<img[^>]+src="([^"]*_images/[^"]+\.png)"', article)
    assert figures, "no figure from a stored output"
    assert all((built(site, page).parent / src).is_file() for src in figures)


@pytest.mark.slow
@pytest.mark.parametrize("page", SCREENSHOT_PAGES, ids=page_id)
def test_page_screenshot_is_not_blank(site: Path, page: Path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / f"{page.stem}.png"
    png.unlink(missing_ok=True)
    run_chromium(f"--screenshot={png}", built(site, page).as_uri())
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (900, 1200)
    assert (pixels < 200).mean() > 0.05, f"{png} is almost all white"
    assert pixels.std() > 20, f"{png} is almost uniform"


def test_memory_chapter_stores_its_widgets():
    if MEMORY_CHAPTER not in NOTEBOOKS:
        pytest.skip(f"{MEMORY_CHAPTER.name} is not in _toc.yml yet")
    assert MEMORY_CHAPTER in WIDGET_PAGES


@pytest.mark.slow
@pytest.mark.parametrize("page", WIDGET_PAGES, ids=page_id)
def test_widgets_render_offline(site: Path, page: Path):
    dom = run_chromium("--dump-dom", built(site, page).as_uri())
    rendered = re.findall(r'class="[^"]*\blm-Widget\b[^"]*\bjupyter-widgets\b[^"]*"', dom)
    assert rendered, "the widget manager rendered no widget"


@pytest.mark.slow
def test_equations_render_offline_with_the_vendored_mathjax(site: Path):
    page = ROOT / "notebooks" / "05_external_attention.ipynb"
    html = built(site, page).read_text()
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-chtml\.js', html)
    assert "cdn.jsdelivr.net/npm/mathjax" not in html
    dom = run_chromium("--dump-dom", built(site, page).as_uri())
    assert dom.count("<mjx-container") > 20, "MathJax typeset no equation"


def test_every_bibliography_entry_has_a_doi_or_a_link():
    text = (ROOT / "book" / "references.bib").read_text()
    entries = re.split(r"\n(?=@)", text.strip())
    missing = [e.split(",", 1)[0] for e in entries if e.startswith("@") and not re.search(r"\b(doi|url)\s*=", e)]
    assert len(entries) > 20 and missing == []
