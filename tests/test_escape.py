"""Untrusted text stays text in Markdown, HTML, the terminal and workflow commands."""

from __future__ import annotations

import pytest

from tiergate.report.escape import (
    code_fence,
    cut_bytes,
    cut_middle_bytes,
    html_pre,
    html_text,
    md_code,
    md_text,
    terminal_text,
    workflow_command,
)

SECRET = "hunter2-very-secret"


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_PASSWORD", SECRET)


def test_markdown_text_has_no_html_no_mentions_no_table_breaks() -> None:
    text = md_text(f"<script>alert(1)</script> | @everyone @org/team **x** [a](b) {SECRET}\nnext")
    assert "<" not in text and ">" not in text.replace("&gt;", "")
    assert "@everyone" not in text and "@org" not in text
    assert "|" not in text.replace("\\|", "")
    assert "\n" not in text
    assert "\\*\\*x\\*\\*" in text and "\\[a\\]\\(b\\)" in text
    assert SECRET not in text and "\\*\\*\\*" in text


def test_code_in_a_table_cell() -> None:
    cell = md_code("tests/test_a.py::test_x[a|b]")
    assert cell.startswith("<code>") and "\\|" in cell and "a|b" not in cell


def test_pre_block_cannot_be_closed_by_its_content() -> None:
    block = html_pre("line\n</pre><script>x</script>\n\n```\n::error::x\n@here")
    assert block.count("<pre>") == 1 and block.count("</pre>") == 1 and block.endswith("</pre>")
    assert "<script>" not in block and "@here" not in block
    assert "\n::error" not in block


def test_code_fence_is_longer_than_any_backtick_run() -> None:
    fence = code_fence("a ```` b")
    assert fence.startswith("`````\n") and fence.endswith("\n`````")


def test_workflow_command_message_cannot_start_a_new_command() -> None:
    line = workflow_command("error", "bad\n::error::pwned\r%0A", file="a:b,c.py", line=3,
                            title="x, y: z")
    assert "\n" not in line and "\r" not in line
    assert line == ("::error file=a%3Ab%2Cc.py,line=3,title=x%2C y%3A z::"
                    "bad%0A::error::pwned%0A%250A")


def test_workflow_command_redacts_and_neutralises_old_style_commands() -> None:
    line = workflow_command("warning", f"token is {SECRET} ##[error]x")
    assert SECRET not in line and "##[" not in line


@pytest.mark.parametrize("text", ["::error::x", "  ::set-output name=a::b", "a\n::error::x"])
def test_terminal_lines_never_start_with_a_command(text: str) -> None:
    line = terminal_text(text)
    assert "\n" not in line and not line.lstrip().startswith("::")


def test_terminal_drops_escape_sequences() -> None:
    assert terminal_text("\x1b[31mred\x1b[0m\x07") == "red"


def test_a_secret_set_or_changed_after_an_earlier_report_is_still_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SECRET not in md_text(SECRET)  # the values are remembered per environment...
    monkeypatch.setenv("DEPLOY_PASSWORD", "rotated-secret-value")
    monkeypatch.setenv("LATE_API_KEY", "late-secret-value")
    text = md_text(f"{SECRET} rotated-secret-value late-secret-value")
    assert "rotated-secret-value" not in text and "late-secret-value" not in text  # ...not once
    assert SECRET in text  # no longer a secret of this environment


def test_text_inside_raw_html_is_html_escaped_not_markdown_escaped() -> None:
    text = html_text(f"dumps/tests_test_a[1]*.txt <b> & @here {SECRET}")
    assert text == "dumps/tests_test_a[1]*.txt &lt;b&gt; &amp; @\u200bhere ***"


def test_a_url_in_an_id_gives_the_autolinker_nothing_to_start_on() -> None:
    cell = md_code("tests/test_a.py::test_get[https://x.test/a_b|c] www.x.test")
    assert "://" not in cell and "www." not in cell and "<a " not in cell
    assert "https&#58;//x.test/a\\_b\\|c" in cell


def test_a_link_href_is_the_url_attribute_escaped() -> None:
    text = md_text('see https://x.test/q?a=1&b=2|3"><script>')
    assert text.startswith('see <a href="https://x.test/q?a=1&amp;b=2&#124;3">')  # ends at '"'
    assert "<script>" not in text


@pytest.mark.parametrize("text", ["é" * 40_000, "名" * 30_000, "🙈" * 20_000, "a&amp;" * 20_000])
def test_a_cut_in_bytes_fits_and_never_splits_a_character(text: str) -> None:
    for cut in (cut_bytes(text, 65_535), cut_middle_bytes(text, 65_535)):
        assert len(cut.encode()) <= 65_535 and "\ufffd" not in cut
    assert cut_middle_bytes(text, 65_535).endswith(text[-100:])
    assert not cut_bytes("x &amp; y", 6, markup=True).endswith("&am")
