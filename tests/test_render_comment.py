"""The pure parts of scripts/render_comment.py: what counts as a visible Markdown escape and as a
broken link in rendered HTML. The layout itself needs Chromium, which the suite never runs."""

from __future__ import annotations

import pytest
from scripts_loader import load_script

from tiergate.report.escape import md_text

pytest.importorskip("cmarkgfm")
render_comment = load_script("render_comment")
BLOB = "https://github.com/octo/app/blob/" + "0" * 40 + "/"


@pytest.mark.parametrize("page", [
    "<p>tests\\_test\\_db.py</p>",  # a Markdown escape inside a raw HTML block
    "<p>list_items?page=2&amp;amp;size=10</p>",  # an entity escaped twice
    "<p>see https://x.test/%5Cpath</p>",
])
def test_visible_escapes_are_found(page: str) -> None:
    assert render_comment.escapes_shown(page)


def test_text_that_only_looks_escaped_in_the_source_is_clean() -> None:
    page = render_comment.render_markdown("a \\_b\\_ &amp; c: " + md_text("<x_y> & *z*"))
    assert render_comment.escapes_shown(page) == [], page


@pytest.mark.parametrize("href", [
    "", "https://x.test/a\\b", "https://x.test/a%5Cb", "https://x.test/?a=1&amp;amp;b=2",
    "tests/test_db.py#L3", "#artifacts", "javascript:alert(1)",
    "https://github.com/octo/app/blob/main/x.py",
])
def test_broken_links_are_found(href: str) -> None:
    page = f'<p><a href="{href}">x</a></p>'.replace("&amp;amp;", "&amp;amp;amp;")
    assert render_comment.broken_links(page, BLOB) == [href or "(empty)"]


def test_a_url_in_a_message_renders_as_one_whole_link() -> None:
    url = "https://example.test/list_items?page=2&size=10"
    page = render_comment.render_markdown(md_text(f"see {url} for it") + "\n\n"
                                          + f'<a href="{BLOB}x.py#L3">x.py:3</a>')
    assert render_comment.broken_links(page, BLOB) == []
    assert render_comment.escapes_shown(page) == []
    assert f'href="{url.replace("&", "&amp;")}"' in page


def test_the_page_is_one_comment_box_at_the_timelines_width() -> None:
    page = render_comment.page_html("<p>hi</p>", "/* css */")
    assert "width:800px" in page and "padding:16px" in page and "class='markdown-body'" in page
    assert "tiergate-measure" in page
    assert "tiergate-measure" not in render_comment.page_html("<p>hi</p>", "", measure=False)
