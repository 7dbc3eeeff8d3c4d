"""Keep the book's notebooks honest: execute them, give them their Colab cells, check them.

The website shows the outputs stored in each notebook (``execute_notebooks: "off"`` in
``_config.yml``), so those outputs must come from one clean top-to-bottom run of the
current code:

- ``execute_notebook`` runs a notebook in a fresh kernel and stores the outputs in place,
  with the widget state, so that widgets render on the static website;
- ``sync_colab_cells`` writes the first two cells of a notebook, an "Open in Colab" badge
  and a Colab-only install cell, from the repository named in ``_config.yml``;
- ``check_notebook`` lists what is wrong with a notebook's stored outputs.

``sync`` also writes the website's address, derived from the same repository setting, into
``_config.yml`` and the README (``eaviz.site.sync_site_address``).

Command line::

    python -m eaviz notebooks run   [--profile smoke|full] [paths...]   # sync, then execute
    python -m eaviz notebooks sync  [paths...]
    python -m eaviz notebooks check [paths...]

Without paths, every notebook listed in ``_toc.yml`` is used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import nbformat
import yaml
from nbclient import NotebookClient
from nbformat import NotebookNode

from eaviz.profile import ENV_VAR, PROFILES, Profile, current_profile
from eaviz.site import site_url, sync_site_address

CONFIG_FILE = "_config.yml"
TOC_FILE = "_toc.yml"
BADGE_TAG = "colab-badge"
INSTALL_TAG = "colab-install"
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_DATA = "/content/eaviz-data"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
DEFAULT_TIMEOUT = 900.0


def find_book_root(start: Path | str = ".") -> Path:
    """The nearest folder at or above ``start`` that holds ``_config.yml``."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise FileNotFoundError(f"expected a {CONFIG_FILE} in {start} or a folder above it, found none")


def load_config(root: Path) -> dict:
    """The book's ``_config.yml`` as a dict."""
    return yaml.safe_load((root / CONFIG_FILE).read_text())


def _toc_entries(node: dict) -> Iterator[str]:
    if "file" in node:
        yield node["file"]
    for key in ("parts", "chapters", "sections"):
        for child in node.get(key, []):
            yield from _toc_entries(child)


def toc_pages(root: Path) -> list[Path]:
    """Every page of ``_toc.yml`` in reading order (the root first), as existing files.

    Entries name files without their suffix; a page is the ``.ipynb`` or ``.md`` file of
    that name. Raises FileNotFoundError listing every entry that has neither.
    """
    toc = yaml.safe_load((root / TOC_FILE).read_text())
    pages, missing = [], []
    for entry in (toc["root"], *_toc_entries(toc)):
        found = [root / f"{entry}{suffix}" for suffix in (".ipynb", ".md")]
        found = [page for page in found if page.is_file()]
        if found:
            pages.append(found[0])
        else:
            missing.append(entry)
    if missing:
        raise FileNotFoundError(f"expected a .ipynb or .md file for every entry of {TOC_FILE}, missing: {missing}")
    return pages


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks among the pages of ``_toc.yml``, in reading order."""
    return [page for page in toc_pages(root) if page.suffix == ".ipynb"]


def _github_repository(config: dict) -> tuple[str, str, str]:
    """(url, owner/name, branch) of the repository in ``_config.yml``."""
    repository = config["repository"]
    url = repository["url"].rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(
            f"expected repository.url in {CONFIG_FILE} to be https://github.com/OWNER/NAME "
            f"(Colab opens notebooks from GitHub), got {url!r}"
        )
    return url, url.removeprefix("https://github.com/"), repository["branch"]


def colab_url(notebook: Path, root: Path) -> str:
    """The address that opens ``notebook`` from the book's GitHub repository in Colab."""
    config = load_config(root)
    _, github, branch = _github_repository(config)
    path_in_book = Path(notebook).resolve().relative_to(root).as_posix()
    path_in_repo = PurePosixPath(config["repository"].get("path_to_book") or ".", path_in_book)
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{github}/blob/{branch}/{path_in_repo}"


def colab_cells(notebook: Path, root: Path) -> tuple[NotebookNode, NotebookNode]:
    """The two cells every notebook starts with: the Colab badge and the install cell.

    The install cell runs only in Colab: it installs eaviz from the book's repository (pip
    keeps Colab's own torch) and keeps downloaded data under ``/content``.
    """
    url, _, branch = _github_repository(load_config(root))
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab]({COLAB_BADGE_SVG})]({colab_url(notebook, root)})",
        id=BADGE_TAG,
        metadata={"tags": [BADGE_TAG]},
    )
    install = nbformat.v4.new_code_cell(
        "\n".join(
            [
                "# In Colab: install eaviz from the book's repository; elsewhere, do nothing.",
                "import os",
                "import subprocess",
                "import sys",
                "",
                'if "google.colab" in sys.modules:',
                f'    package = "eaviz @ git+{url}@{branch}"',
                '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)',
                f'    os.environ.setdefault("EAVIZ_DATA", "{COLAB_DATA}")',
            ]
        ),
        id=INSTALL_TAG,
        metadata={"tags": [INSTALL_TAG, "remove-cell"]},
    )
    return badge, install


def _is_colab_cell(cell: NotebookNode) -> bool:
    return bool({BADGE_TAG, INSTALL_TAG} & set(cell.metadata.get("tags", [])))


def _content(cell: NotebookNode) -> tuple:
    """What makes two cells the same cell, outputs aside."""
    return cell.cell_type, cell.source, tuple(cell.metadata.get("tags", ()))


def _with_colab_cells(nb: NotebookNode, notebook: Path, root: Path) -> list[NotebookNode]:
    """The notebook's cells, fresh Colab cells first. A Colab cell whose content did not
    change is kept as it is, stored outputs included."""
    old = {_content(cell): cell for cell in nb.cells if _is_colab_cell(cell)}
    fresh = [old.get(_content(cell), cell) for cell in colab_cells(notebook, root)]
    return fresh + [cell for cell in nb.cells if not _is_colab_cell(cell)]


def sync_colab_cells(path: Path | str) -> bool:
    """Write the Colab badge and install cell (from ``_config.yml``) as the first two cells.

    Returns True when the file changed. An unchanged install cell keeps its stored output.
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    if nb.nbformat_minor < 5:  # the Colab cells carry cell ids, new in nbformat 4.5
        nb = nbformat.v4.upgrade(nb, from_version=4, from_minor=nb.nbformat_minor)
    cells = _with_colab_cells(nb, path, find_book_root(path))
    if cells == nb.cells:
        return False
    nb.cells = cells
    nbformat.write(nb, path)
    return True


def _kernel_env(profile: str) -> dict[str, str]:
    env = dict(os.environ, **{ENV_VAR: profile})
    # A non-interactive MPLBACKEND (CI sets Agg) would keep figures out of the outputs;
    # without it the kernel picks its inline backend.
    env.pop("MPLBACKEND", None)
    if env.get("EAVIZ_DATA"):
        # The kernel runs in another folder: a relative data path must not change meaning.
        env["EAVIZ_DATA"] = str(Path(env["EAVIZ_DATA"]).resolve())
    return env


def execute_notebook(
    path: Path | str,
    *,
    profile: str = "full",
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | str | None = None,
) -> None:
    """Run the notebook at ``path`` top to bottom in a fresh kernel; store the outputs in place.

    profile: "full" or "smoke", passed to the kernel as ``$EAVIZ_PROFILE``.
    timeout: seconds the whole notebook may take. cwd: the kernel's working folder
    (default: the book root, the folder of ``_config.yml``). The widget state is stored in
    the notebook's metadata. On an error or a timeout the file is left as it was.
    The kernel is ``python3`` run by this Python (jupyter_client swaps the kernel spec's
    ``python`` for ``sys.executable``), so it sees the same installed eaviz.
    """
    profile = Profile(profile).name
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # widget state of an earlier run
    client = NotebookClient(
        nb,
        kernel_name="python3",
        store_widget_state=True,
        record_timing=False,  # timestamps in every cell would make every run a diff
        resources={"metadata": {"path": str(cwd or find_book_root(path))}},
    )
    try:
        asyncio.run(asyncio.wait_for(client.async_execute(env=_kernel_env(profile)), timeout))
    except asyncio.TimeoutError:
        raise TimeoutError(f"{path} did not finish within {timeout:g} s") from None
    nbformat.write(nb, path)


def _widget_models(nb: NotebookNode) -> set[str]:
    return set(nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {}))


def check_notebook(path: Path | str) -> list[str]:
    """What is wrong with the notebook's stored outputs; an empty list when nothing is.

    Looks for: Colab cells that differ from ``_config.yml``, code cells not executed or
    executed out of order (counts must be 1..n), error outputs, no outputs at all,
    widgets whose state was not stored, and figures stored only as their text
    ``<Figure size ...>`` (a figure made without pyplot, shown before ``%matplotlib inline``).
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    problems = []
    expected = [_content(cell) for cell in colab_cells(path, find_book_root(path))]
    if [_content(cell) for cell in nb.cells[:2]] != expected:
        problems.append(
            f"the first two cells are not the Colab cells made from {CONFIG_FILE}: run `python -m eaviz notebooks sync`"
        )
    code = [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    counts = [cell.execution_count for _, cell in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(
            f"execution counts are {counts}, expected 1..{len(code)} in order: run `python -m eaviz notebooks run`"
        )
    if code and not any(cell.outputs for _, cell in code):
        problems.append("no stored outputs")
    models = _widget_models(nb)
    for index, cell in code:
        for output in cell.outputs:
            if output.output_type == "error":
                problems.append(f"cell {index}: error output {output.ename}: {output.evalue}")
            data = output.get("data", {})
            if str(data.get("text/plain", "")).startswith("<Figure size") and not (
                {"image/png", "image/jpeg", "image/svg+xml"} & set(data)
            ):
                problems.append(f"cell {index}: a figure was stored as text only: add `%matplotlib inline`")
            view = data.get(WIDGET_VIEW)
            if view and view["model_id"] not in models:
                problems.append(
                    f"cell {index}: shows a widget whose state is not stored: run `python -m eaviz notebooks run`"
                )
    return problems


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("run", "sync", "check"),
        help="run: sync, then execute in place; sync: write the Colab cells and the site's address; "
        "check: list problems",
    )
    parser.add_argument("paths", nargs="*", type=Path, help=f"notebooks (default: every notebook in {TOC_FILE})")
    parser.add_argument("--profile", choices=PROFILES, help=f"run: sizes to use (default: ${ENV_VAR}, else full)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="run: seconds one notebook may take")


def notebooks_command(args: argparse.Namespace) -> int:
    """Carry out a parsed ``notebooks`` command; returns the exit status."""
    paths = args.paths or toc_notebooks(find_book_root())
    if args.action == "check":
        problems = [f"{path}: {problem}" for path in paths for problem in check_notebook(path)]
        print("\n".join(problems) or f"no problems in {len(paths)} notebook(s)")
        return 1 if problems else 0
    if args.action == "sync":
        root = find_book_root()
        for changed in sync_site_address(root):
            print(f"{changed.relative_to(root)}: site address set to {site_url(load_config(root))}")
    for path in paths:
        changed = sync_colab_cells(path)
        if args.action == "sync":
            print(f"{path}: {'updated' if changed else 'unchanged'}")
            continue
        profile = args.profile or current_profile().name
        start = time.perf_counter()
        execute_notebook(path, profile=profile, timeout=args.timeout)
        print(f"{path}: executed ({profile} profile) in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eaviz notebooks ...`` without the leading ``notebooks``."""
    parser = argparse.ArgumentParser(
        prog="python -m eaviz notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return notebooks_command(parser.parse_intermixed_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
