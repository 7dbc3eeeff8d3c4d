"""The book's website: its address, and a check that every internal link of the built site works.

``site_url`` derives the address GitHub Pages serves the book at from the one repository
setting in ``_config.yml``; ``sync_site_address`` (run by ``python -m eaviz notebooks sync``)
writes it wherever the book states it. ``check_links`` reads every page of a built site (offline) and
lists each link or embedded file that points at a missing file, and each ``#anchor`` that the
target page does not define. Links to other sites are not followed.

Command line (after ``jupyter-book build .``)::

    python -m eaviz.site _build/html
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

GITHUB = "https://github.com/"


def site_url(config: dict) -> str:
    """``https://OWNER.github.io/NAME/`` for ``repository.url: https://github.com/OWNER/NAME`` in ``_config.yml``.

    A repository named ``OWNER.github.io`` is served at the root, ``https://owner.github.io/``.
    """
    url = config["repository"]["url"].rstrip("/")
    owner, _, name = url.removeprefix(GITHUB).partition("/")
    if not url.startswith(GITHUB) or not owner or not name or "/" in name:
        raise ValueError(f"expected repository.url in _config.yml to be {GITHUB}OWNER/NAME, got {url!r}")
    host = f"{owner.lower()}.github.io"
    return f"https://{host}/" if name.lower() == host else f"https://{host}/{name}/"


def sync_site_address(root: Path | str) -> list[Path]:
    """Replace the address in ``html.baseurl`` by the one ``repository.url`` gives, in ``_config.yml``
    (its ``baseurl`` and footer) and in ``README.md``; returns the files that changed.

    A fork that sets ``repository.url`` to itself then states its own address everywhere.
    """
    root = Path(root)
    config_file = root / "_config.yml"
    config = yaml.safe_load(config_file.read_text())
    old, new = config["html"]["baseurl"], site_url(config)
    changed = []
    for path in (config_file, root / "README.md"):
        if old != new and path.is_file() and old in path.read_text():
            path.write_text(path.read_text().replace(old, new))
            changed.append(path)
    return changed


class _Page(HTMLParser):
    """The anchors a page defines (``id``, ``<a name>``) and the links it makes (``href``, ``src``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: set[str] = set()
        self.links: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value for key, value in attrs if value}
        if "id" in values:
            self.anchors.add(values["id"])
        if tag == "a" and "name" in values:
            self.anchors.add(values["name"])
        self.links.extend((self.getpos()[0], values[key]) for key in ("href", "src") if key in values)


@cache
def _read(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text(errors="replace"))
    return parsed


def pages(site: Path) -> list[Path]:
    """The site's HTML pages; ``_static/`` holds files the pages use (and theme templates), not pages."""
    return sorted(page for page in site.rglob("*.html") if "_static" not in page.relative_to(site).parts)


def check_links(site: Path | str) -> list[str]:
    """Every broken internal link of the built site at ``site``, as ``page:line: problem``; [] when none.

    A link is internal when it names no scheme and no host. It is broken when its file is
    missing or lies outside the site, or when its ``#anchor`` is not defined in the target page.
    """
    site = Path(site).resolve()
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"expected a built site with an index.html in {site}: build the book first")
    _read.cache_clear()  # pages may have been rebuilt since the last check
    problems = []
    for page in pages(site):
        for line, link in _read(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)}:{line}"
            if not target.is_relative_to(site):
                problems.append(f"{where}: {link} points outside the site")
            elif not target.is_file():
                problems.append(f"{where}: {link} points at a missing file")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _read(target).anchors:
                problems.append(f"{where}: {link} points at an anchor that {target.relative_to(site)} does not define")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eaviz.site [SITE]``: print the broken internal links; exit 1 if there are any."""
    parser = argparse.ArgumentParser(
        prog="python -m eaviz.site", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("site", nargs="?", default="_build/html", type=Path, help="built site (default: _build/html)")
    site = parser.parse_args(argv).site
    try:
        problems = check_links(site)
    except FileNotFoundError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print("\n".join(problems) or f"{site}: {len(pages(site))} pages, no broken internal link")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
