"""The chapters: stored outputs the website can show, Colab cells made from ``_config.yml``,
and a clean top-to-bottom run in the smoke profile. Also the tools that keep them so
(``eaviz.notebooks``) and the run profiles (``eaviz.profile``).

The smoke runs execute a copy of each notebook, never the notebook itself. They read real
data from ``$EAVIZ_DATA`` when it is set; the chapters fall back to synthetic data otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from eaviz.notebooks import (
    check_notebook,
    colab_url,
    execute_notebook,
    load_config,
    sync_colab_cells,
    toc_notebooks,
)
from eaviz.profile import Profile, current_profile, setup

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks(ROOT)
SMOKE_TIMEOUT = 900


def notebook_id(path: Path) -> str:
    return path.stem


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A book root with this repository's _config.yml and one small notebook."""
    shutil.copy(ROOT / "_config.yml", tmp_path)
    (tmp_path / "notebooks").mkdir()
    nb = new_notebook(cells=[new_markdown_cell("# A chapter"), new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "chapter.ipynb")
    return tmp_path


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_stored_outputs_are_complete_in_order_and_error_free(notebook: Path):
    assert check_notebook(notebook) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_notebook_starts_with_colab_badge_for_its_path_in_the_repository(notebook: Path):
    config = load_config(ROOT)
    repository = config["repository"]["url"].removeprefix("https://github.com/")
    url = (
        f"{config['launch_buttons']['colab_url']}/github/{repository}"
        f"/blob/{config['repository']['branch']}/notebooks/{notebook.name}"
    )
    badge, install = nbformat.read(notebook, as_version=4).cells[:2]
    assert badge.cell_type == "markdown"
    assert f"]({url})" in badge.source
    assert install.cell_type == "code"
    assert 'if "google.colab" in sys.modules:' in install.source
    assert f"git+{config['repository']['url']}@{config['repository']['branch']}" in install.source


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=notebook_id)
def test_notebook_runs_top_to_bottom_in_smoke_profile(notebook: Path, tmp_path: Path):
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    execute_notebook(copy, profile="smoke", timeout=SMOKE_TIMEOUT, cwd=ROOT)
    cells = nbformat.read(copy, as_version=4).cells
    assert any(cell.get("outputs") for cell in cells)


def test_colab_url_points_at_the_notebook_on_github(book: Path):
    assert colab_url(book / "notebooks" / "chapter.ipynb", book) == (
        "https://colab.research.google.com/github/eaviz/external-attention-book/blob/main/notebooks/chapter.ipynb"
    )


def test_sync_adds_badge_and_install_cell_once(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    assert sync_colab_cells(path) is True
    assert sync_colab_cells(path) is False
    cells = nbformat.read(path, as_version=4).cells
    assert [cell.cell_type for cell in cells] == ["markdown", "code", "markdown", "code"]
    assert "Open In Colab" in cells[0].source
    compile(cells[1].source, "install cell", "exec")  # plain Python, no magics


def test_sync_follows_the_repository_in_config(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    sync_colab_cells(path)
    config = (book / "_config.yml").read_text()
    (book / "_config.yml").write_text(config.replace("eaviz/external-attention-book", "someone/fork"))
    assert sync_colab_cells(path) is True
    cells = nbformat.read(path, as_version=4).cells
    assert "github/someone/fork/blob/main/notebooks/chapter.ipynb" in cells[0].source
    assert "git+https://github.com/someone/fork@main" in cells[1].source
    assert len(cells) == 4


def test_sync_gives_notebooks_older_than_nbformat_4_5_cell_ids(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    nbformat.write(nb, path)
    sync_colab_cells(path)
    nb = nbformat.read(path, as_version=4)
    assert nb.nbformat_minor == 5
    assert [cell.id for cell in nb.cells[:2]] == ["colab-badge", "colab-install"]
    nbformat.validate(nb)


def test_check_lists_missing_colab_cells_and_unexecuted_cells(book: Path):
    problems = check_notebook(book / "notebooks" / "chapter.ipynb")
    assert any("Colab cells" in problem for problem in problems)
    assert any("execution counts are [None]" in problem for problem in problems)
    assert any("no stored outputs" in problem for problem in problems)


def test_check_lists_error_outputs_and_out_of_order_counts(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    sync_colab_cells(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].execution_count = 2
    nb.cells[3].execution_count = 1
    nb.cells[3].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])]
    nbformat.write(nb, path)
    problems = check_notebook(path)
    assert any("execution counts are [2, 1]" in problem for problem in problems)
    assert any("cell 3: error output ValueError: bad" in problem for problem in problems)


def test_check_lists_figures_stored_as_text_only(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    sync_colab_cells(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[3].outputs = [
        nbformat.v4.new_output(
            "execute_result", data={"text/plain": "<Figure size 640x480 with 1 Axes>"}, execution_count=2
        )
    ]
    nbformat.write(nb, path)
    assert any("figure was stored as text only" in problem for problem in check_notebook(path))


def test_execute_stores_outputs_and_keeps_install_output_on_resync(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    sync_colab_cells(path)
    execute_notebook(path, profile="smoke", timeout=120)
    assert check_notebook(path) == []
    assert nbformat.read(path, as_version=4).cells[3].outputs[0].text == "42\n"
    assert sync_colab_cells(path) is False
    assert check_notebook(path) == []


def test_execute_leaves_the_file_alone_when_a_cell_fails(book: Path):
    path = book / "notebooks" / "chapter.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "import os\nassert os.environ['EAVIZ_PROFILE'] == 'full', 'wrong profile'"
    nbformat.write(nb, path)
    before = path.read_text()
    with pytest.raises(CellExecutionError, match="wrong profile"):
        execute_notebook(path, profile="smoke", timeout=120)
    assert path.read_text() == before


def test_execute_rejects_an_unknown_profile(book: Path):
    with pytest.raises(ValueError, match="expected profile to be one of"):
        execute_notebook(book / "notebooks" / "chapter.ipynb", profile="fast")


def test_profile_pick_returns_the_value_for_the_active_profile():
    assert Profile("full").pick(full=30, smoke=1) == 30
    assert Profile("smoke").pick(full=30, smoke=1) == 1


def test_current_profile_defaults_to_full(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EAVIZ_PROFILE", raising=False)
    assert current_profile() == Profile("full")


def test_current_profile_rejects_unknown_names(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EAVIZ_PROFILE", "quick")
    with pytest.raises(ValueError, match=r"EAVIZ_PROFILE to be one of \('full', 'smoke'\), got 'quick'"):
        current_profile()


def test_setup_seeds_picks_the_device_and_says_so(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("EAVIZ_PROFILE", "smoke")
    profile, device = setup(seed=3)
    first = torch.rand(3)
    setup(seed=3)
    assert torch.equal(torch.rand(3), first)
    assert profile.smoke
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert capsys.readouterr().out.startswith(f"profile: smoke | device: {device.type} (")
