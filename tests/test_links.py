"""Internal links of the built website: every linked or embedded file exists and every
``#anchor`` is defined on its page (``eaviz.site.check_links``, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eaviz.site import check_links, main


@pytest.fixture
def tiny_site(tmp_path: Path) -> Path:
    """A two-page site whose links all work."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "style.css").write_text("")
    (tmp_path / "index.html").write_text(
        '<link href="_static/style.css"><a href="#top" id="top">top</a>'
        '<a href="notebooks/chapter.html#the%20idea">idea</a> <a href="https://example.org/missing.html">out</a>'
        '<a href="mailto:a@b.c">mail</a> <a href="notebooks/">folder</a>'
    )
    (tmp_path / "notebooks" / "index.html").write_text('<a name="old-style"></a>')
    (tmp_path / "notebooks" / "chapter.html").write_text(
        '<section id="the idea"><a href="../index.html">back</a><img src="../_static/style.css"></section>'
    )
    return tmp_path


def add_page(site: Path, html: str) -> None:
    (site / "notebooks" / "broken.html").write_text(html)


def test_a_site_whose_links_all_work_has_no_problems(tiny_site: Path):
    assert check_links(tiny_site) == []


def test_a_link_to_a_missing_page_is_reported_with_page_and_line(tiny_site: Path):
    add_page(tiny_site, '<p>\n<a href="nowhere.html">x</a></p>')
    assert check_links(tiny_site) == ["notebooks/broken.html:2: nowhere.html points at a missing file"]


def test_a_missing_image_or_script_is_reported(tiny_site: Path):
    add_page(tiny_site, '<img src="../_images/plot.png"><script src="../_static/widgets.js"></script>')
    assert len(check_links(tiny_site)) == 2


def test_an_anchor_the_target_page_does_not_define_is_reported(tiny_site: Path):
    add_page(tiny_site, '<a href="chapter.html#no-such-section">x</a> <a href="#here">y</a>')
    problems = check_links(tiny_site)
    assert "chapter.html#no-such-section points at an anchor that notebooks/chapter.html does not define" in problems[0]
    assert "#here points at an anchor that notebooks/broken.html does not define" in problems[1]


def test_a_link_out_of_the_site_folder_is_reported(tiny_site: Path):
    add_page(tiny_site, '<a href="../../elsewhere.html">x</a>')
    assert check_links(tiny_site) == ["notebooks/broken.html:1: ../../elsewhere.html points outside the site"]


def test_command_exits_1_and_lists_broken_links(tiny_site: Path, capsys):
    add_page(tiny_site, '<a href="nowhere.html">x</a>')
    assert main([str(tiny_site)]) == 1
    assert "nowhere.html points at a missing file" in capsys.readouterr().out


def test_command_on_a_folder_without_a_site_is_a_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path)])
    assert exit.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_built_book_has_no_broken_internal_link_or_anchor(site: Path):
    assert check_links(site) == []
