"""eaviz as a reader installs it (a wheel, as the Colab install cell does): the package data is
in the wheel, every chapter runs from a folder that holds nothing but the notebook, and
nothing writes into the installed package.

The wheel is built offline from a copy of the checkout's sources (no build isolation, no
index) and installed into a target folder that comes first on ``PYTHONPATH``; the chapters
run in the smoke profile with no ``$EAVIZ_DATA``, a fresh ``$HOME`` and every download
pointed at a closed local port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from eaviz import bench, cli
from eaviz.notebooks import toc_notebooks
from eaviz.pretrained import RECIPES, available, load_card

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "eaviz"
NOTEBOOKS = toc_notebooks(ROOT)
SMOKE_TIMEOUT = 900
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens there: a download fails at once
RUN_NOTEBOOK = (
    "import sys\n"
    "from eaviz.notebooks import execute_notebook\n"
    "execute_notebook(sys.argv[1], profile='smoke', timeout=float(sys.argv[2]), cwd=sys.argv[3])\n"
)


def package_data() -> set[str]:
    """Every file of the checkout's package that is not Python source, as a path in the wheel."""
    files = (path for path in PACKAGE.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    return {path.relative_to(ROOT).as_posix() for path in files if path.suffix != ".py"}


def tree(folder: Path) -> dict[str, int]:
    """Each file under ``folder`` (bytecode caches aside) and its size."""
    files = (path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    return {path.relative_to(folder).as_posix(): path.stat().st_size for path in files}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources, so the build leaves nothing in the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(PACKAGE, source / "eaviz", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist]
    result = subprocess.run([*command, source], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = dist.glob("eaviz-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a fresh target folder (its dependencies come from this environment)."""
    target = tmp_path_factory.mktemp("target")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheel]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return target


@pytest.fixture(scope="session")
def bare_env(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A reader's environment: the installed wheel only, smoke profile, no data, a fresh home, offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EAVIZ_")}
    for key in ("PYTHONPATH", "NO_PROXY", "no_proxy", "MPLBACKEND"):
        env.pop(key, None)
    proxies = {key: CLOSED_PORT for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    proxies.update({key.lower(): value for key, value in proxies.items()})
    env.update(proxies, PYTHONPATH=str(installed), HOME=str(tmp_path_factory.mktemp("home")), EAVIZ_PROFILE="smoke")
    return env


def test_wheel_ships_every_data_file_of_the_package(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = package_data()
    assert {name.split("/")[1] for name in expected} >= {"checkpoints", "results"}
    assert sorted(expected - names) == []


def test_wheel_holds_a_checkpoint_and_a_card_per_recipe_and_the_recorded_results(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in RECIPES:
        assert {f"eaviz/checkpoints/{name}.pt", f"eaviz/checkpoints/{name}.json"} <= names
    for kind in bench.KINDS:
        assert any(n.startswith(f"eaviz/results/{kind}-cpu-") and n.endswith(".json") for n in names), kind


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_chapter_runs_alone_in_a_bare_folder_on_the_installed_wheel(
    notebook: Path, installed: Path, bare_env: dict[str, str], tmp_path: Path
):
    folder = tmp_path / "bare"
    folder.mkdir()
    copy = folder / notebook.name
    nb = nbformat.read(notebook, as_version=4)
    where = "import eaviz, pathlib\nassert pathlib.Path(eaviz.__file__).is_relative_to({!r}), eaviz.__file__"
    nb.cells.insert(0, nbformat.v4.new_code_cell(where.format(str(installed))))
    nbformat.write(nb, copy)
    before = tree(installed)
    result = subprocess.run(
        [sys.executable, "-c", RUN_NOTEBOOK, copy, str(SMOKE_TIMEOUT), folder],
        cwd=folder,
        env=bare_env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT + 120,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    assert any(cell.get("outputs") for cell in nbformat.read(copy, as_version=4).cells)
    assert tree(installed) == before, "the chapter wrote into the installed package"


def test_shipped_results_are_read_from_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("EAVIZ_HOME", str(tmp_path))
    recorded = bench.load_results("attention", device="cpu")
    shipped = json.loads(next((PACKAGE / "results").glob("attention-cpu-*.json")).read_text())
    assert recorded["created"] == shipped["created"]


def test_load_results_also_reads_results_measured_into_the_user_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("EAVIZ_HOME", str(tmp_path))
    document = {"kind": "attention", "created": "2099-01-01T00:00:00+00:00", "device": {"type": "cuda"}, "results": []}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "attention-cuda-h100-2099-01-01.json").write_text(json.dumps(document))
    assert bench.load_results("attention")["created"] == document["created"]
    assert bench.load_results("attention", device="cpu")["device"]["type"] == "cpu"


def test_shipped_checkpoints_and_cards_are_read_from_the_package():
    assert available() == sorted(RECIPES)
    assert load_card("cifar10-vit-external")["name"] == "cifar10-vit-external"


TINY_BENCH = ["bench", "attention", "--sizes", "16", "--dim", "8", "--memory-units", "4", "--no-backward",
              "--min-run-time", "0.001", "--device", "cpu"]  # fmt: skip


def test_bench_writes_results_to_eaviz_home_and_not_into_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("EAVIZ_HOME", str(tmp_path))
    before = tree(PACKAGE)
    assert cli.main(TINY_BENCH) == 0
    (written,) = (tmp_path / "results").glob("attention-cpu-*.json")
    assert json.loads(written.read_text())["kind"] == "attention"
    assert tree(PACKAGE) == before


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (TINY_BENCH + ["--out"], "out (--out)"),
        (["pretrained", "train", "voc-none", "--checkpoint-dir"], "folder (--checkpoint-dir)"),
    ],
    ids=["bench", "pretrained-train"],
)
def test_an_output_folder_that_cannot_be_written_is_a_one_line_error(argv, option, tmp_path: Path, capsys):
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    with pytest.raises(SystemExit) as exit:
        cli.main([*argv, str(blocked)])
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"error: expected {option} to be a folder you can write to, got '{blocked}'" in err
