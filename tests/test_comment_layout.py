"""The PR comment as a reviewer sees it: rendered with cmark-gfm (GitHub's own Markdown engine),
small for 130 failures of one function, no Markdown escape visible, every link whole."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tiergate.github.comment import fit_body, marker
from tiergate.protocol.findings import LEAK_KINDS, Culprit, Finding, Location
from tiergate.report import fingerprint
from tiergate.report.chart import distinct_labels
from tiergate.report.links import Links
from tiergate.report.summary import COMMENT_LIMIT, render_summary
from tiergate.results.inputs import load_run
from tiergate.results.model import RunResult, TestResult

cmarkgfm = pytest.importorskip("cmarkgfm")
from cmarkgfm.cmark import Options  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
LINKS = Links("https://github.com", "octo/app", SHA,
              run_url="https://github.com/octo/app/actions/runs/42",
              check_url="https://github.com/octo/app/runs/7", base_sha="f" * 40)
# pixels per visible block at the PR timeline's width (a list item or paragraph of one line,
# with its margin), and per heading: the proxy for the rendered height
LINE_PX, HEADING_PX = 24, 40


def failing(nodeid: str, message: str, line: int = 10) -> TestResult:
    return TestResult(nodeid, "tests/test_parse.py", line, "failed", 0.1, "call", message,
                      f"Traceback (most recent call last):\n  File tests/test_parse.py, line "
                      f"{line}\n{message}")


def many_failures() -> RunResult:
    run = RunResult(tier="fast", started=100.0, finished=160.0)
    for i in range(120):
        nodeid = f"tests/test_parse.py::test_parse[case_{i}]"
        run.tests[nodeid] = failing(nodeid, "ValueError: bad header")
    for i in range(10):
        nodeid = f"tests/test_parse.py::test_other_{i}"
        run.tests[nodeid] = failing(nodeid, f"AssertionError: {i} != {i + 1}", 20 + i)
    return run


def render(text: str) -> str:
    return str(cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE))


def visible_px(page: str) -> int:
    """The height of what shows with every toggle closed: headings and one-line blocks."""
    shut = re.sub(r"<details>.*?</summary>.*?</details>", "<p>toggle</p>", page, flags=re.S)
    blocks = len(re.findall(r"<(?:li|p|tr)\b", shut))
    headings = len(re.findall(r"<h[1-6]\b", shut))
    return blocks * LINE_PX + headings * HEADING_PX


def shown_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_130_failures_of_one_function_make_a_small_comment() -> None:
    text = render_summary(many_failures(), budget=COMMENT_LIMIT, links=LINKS, diagnostics=False)
    page = render(text)
    assert "120 \N{MULTIPLICATION SIGN} <code>tests/test_parse.py::test_parse[…]</code>" in page
    assert "ValueError: bad header" in page
    assert visible_px(page) < 1500, visible_px(page)
    assert page.count("<li>") < 25  # 11 groups, not 130 items
    assert "case_119" in page  # the ids are there, in the group's toggle


def test_no_markdown_escape_shows_and_every_link_is_whole() -> None:
    run = many_failures()
    url = "https://example.test/list_items?page=2&size=10"
    run.findings.append(Finding(
        "timeout", "tests/test_db.py::test_query[a_b]", "error",
        "timeout: ran past its 5s limit, stuck in recv (src/app/db_pool.py:88)",
        Location("tests/test_db.py", 7), Culprit("src/app/db_pool.py", 88, "recv", None),
        dump="dumps/x.txt"))
    run.findings.append(Finding(
        "leak-thread", "tests/test_l.py::test_pool_*", "error",
        f"thread worker_1 still running, see {url}",
        Location("/home/runner/work/app/app/tests/test_l.py", 3),
        details={"created": "File src/app/pool_x.py, line 9, in start"}))
    known = {fingerprint.of_finding(run.findings[1])}
    text = render_summary(run, budget=COMMENT_LIMIT, links=LINKS, diagnostics=False,
                          known=known, dump_loader=lambda _: "Thread main\n  File a_b.py")
    page = render(text)
    shown = shown_text(page)
    assert not re.search(r"\\[_*\[\]`#|<>]", shown), re.findall(r".{20}\\.{20}", shown)
    assert "&amp;" not in shown and "%5C" not in page
    for href in re.findall(r'href="([^"]*)"', page):
        assert not href.startswith("<") and "\\" not in href and " " not in href, href
    assert f'href="https://github.com/octo/app/blob/{SHA}/src/app/db_pool.py#L88"' in page
    assert f'href="{html.escape(url)}"' in page
    assert "/home/runner" not in shown  # cells carry no runner paths
    assert shown.count("db_pool.py:88") == 1  # the timeout states its culprit once


def test_the_header_is_five_lines_with_commit_and_links() -> None:
    run = many_failures()
    text = render_summary(run, budget=COMMENT_LIMIT, links=LINKS, diagnostics=False, known=set())
    header = text.split("\n\n", 1)[0].splitlines()
    assert len(header) <= 5
    assert "130 new failures · 0 new findings · 0 fixed · 0 still failing" in header[3]
    page = render("\n".join(header))
    for want in (f"/commit/{SHA}", "/actions/runs/42\"", "/runs/7\"", "#artifacts"):
        assert want in page


def test_the_header_keeps_its_lines_where_github_joins_a_paragraphs_lines() -> None:
    """cmark-gfm (a check run, a job summary) joins a paragraph's lines with a space: measured
    with scripts/render_comment.py, the four lines ran into one 3-line blob at 800 px."""
    run = many_failures()
    text = render_summary(run, budget=COMMENT_LIMIT, links=LINKS, diagnostics=False, known=set())
    paragraph = render(text).split("</h3>", 1)[1].split("</p>", 1)[0]
    lines = [html.unescape(re.sub(r"<[^>]+>", "", line)).strip()
             for line in paragraph.split("<br />")]
    assert len(lines) == 4, lines
    assert lines[0].startswith("Failed: 130 tests failed") and lines[1].startswith("130 ❌ failed")
    assert lines[2].startswith("Changes vs base") and lines[3].startswith("Commit 0123456")
    assert not any(line.endswith("\\") for line in lines)


def test_diagnostics_are_collapsed_in_the_job_summary_only() -> None:
    run = many_failures()
    run.samples = [{"t": 100 + i * 0.25, "rss": (50 + i) * 2**20} for i in range(30)]
    summary = render_summary(run, links=LINKS)
    comment = render_summary(run, links=LINKS, diagnostics=False)
    assert "Slowest tests" not in comment and "mermaid" not in comment
    block = summary[summary.index("<details><summary>📊 Diagnostics"):]
    assert "Slowest tests" in block and "```mermaid" in block
    labels = re.search(r"x-axis \[(.*)\]", block)
    assert labels and len(set(labels.group(1).split(", "))) == 30  # no merged labels


def test_chart_labels_are_distinct() -> None:
    assert distinct_labels([0.0, 1.0, 2.0]) == ["0s", "1s", "2s"]
    assert distinct_labels([0.0, 0.21, 0.24]) == ["0.00s", "0.21s", "0.24s"]
    assert distinct_labels([0.0, 60.0, 130.0]) == ["0m", "1m", "2m"]


REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "startup-service"
FIRST_SCREEN = 25  # rendered text lines at 800 px before a reviewer scrolls


@pytest.fixture(scope="module")
def example_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example service's fast tier as `tiergate run` leaves it: a hang, leaks, an env change."""
    out = tmp_path_factory.mktemp("example") / "results"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIERGATE_") and k != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        [sys.executable, "-m", "tiergate", "run", "--tier", "fast", "--project", str(EXAMPLE),
         "--results-dir", str(out)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr
    return out


def example_comment(results: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The body `tiergate post` writes, run in the action's working-directory (the example's
    folder of this repository, as in a monorepo)."""
    monkeypatch.chdir(EXAMPLE)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(REPO))
    body = render_summary(load_run([results], []), title="tiergate · tier fast",
                          details_url=LINKS.run_url, budget=COMMENT_LIMIT - 500, known=set(),
                          links=LINKS, diagnostics=False)
    return fit_body(f"{marker('fast')}\n{body}")


def rendered_lines(page: str) -> list[str]:
    """The text a reader sees, a line per block, with every toggle shut (its summary shows)."""
    shut = re.sub(r"<details>\s*<summary>(.*?)</summary>.*?</details>", r"<p>\1</p>", page,
                  flags=re.S)
    blocks = re.sub(r"</?(?:p|li|h[1-6]|ul|ol|br|pre|table|tr|summary|details)\b[^>]*>", "\n",
                    shut)
    lines = (html.unescape(re.sub(r"<[^>]+>", "", line)).strip() for line in blocks.split("\n"))
    return [line for line in lines if line]


def findings_of(results: Path) -> list[dict[str, Any]]:
    return list(json.loads((results / "findings.json").read_text())["findings"])


def test_the_example_services_comment_shows_what_and_why_on_the_first_screen(
        example_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = render(example_comment(example_results, monkeypatch))
    screen = "\n".join(rendered_lines(page)[:FIRST_SCREEN])
    assert screen.startswith("❌ tiergate · tier fast: failed"), screen
    found = findings_of(example_results)
    hang = next(f for f in found if f["kind"] == "timeout")
    culprit = hang["culprit"]
    item = next(line for line in screen.splitlines() if hang["test"] in line)
    assert f"{culprit['path']}:{culprit['line']}" in item, item
    assert "ran past its 3s limit" in item and culprit["reason"] in item, item
    leaks = [f for f in found if f["kind"] in LEAK_KINDS]
    assert leaks
    for leak in leaks:
        assert re.search(rf"{leak['kind']} {re.escape(leak['test'])}.* at \S+:\d+", screen), leak


def test_the_example_services_comment_shows_no_escape_and_every_link_is_whole(
        example_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = render(example_comment(example_results, monkeypatch))
    shown = "\n".join(rendered_lines(page))
    assert not re.search(r"\\[_*\[\]`#|<>()!{}~]", shown), re.findall(r".{20}\\.{20}", shown)
    assert "&amp;" not in shown and "&#" not in shown
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]
    assert hrefs
    for href in hrefs:
        parts = urlsplit(href)
        assert parts.scheme == "https" and parts.netloc, href
        assert "%5C" not in href.upper() and "\\" not in href and "&amp;" not in href, href
    blobs = [h for h in hrefs if "/blob/" in h]
    assert blobs and all(h.startswith(f"https://github.com/octo/app/blob/{SHA}/"
                                      "examples/startup-service/") for h in blobs), blobs


def test_the_example_services_leaks_state_their_place_once(
        example_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = rendered_lines(render(example_comment(example_results, monkeypatch)))
    for leak in (f for f in findings_of(example_results) if f["kind"] in LEAK_KINDS):
        place = leak["culprit"] or leak["location"]
        item = next(line for line in shown if line.startswith(f"{leak['kind']} {leak['test']}"))
        assert item.count(f"{Path(place['path']).name}:{place['line']}") == 1, item
        assert str(EXAMPLE) not in item, item  # no runner paths in the text


DOC = REPO / "docs" / "pr-comment-example.md"
DOC_START = "<!-- tiergate:tier=fast -->"


def run_neutral(comment: str) -> str:
    """*comment* without what differs between two runs of the example: the dump's and a
    traceback's text (pids, addresses, stacks), absolute paths, and every number (durations,
    ports, sizes, times; the SHAs are the sample links' own)."""
    text = re.sub(r"<pre>.*?</pre>", "<pre>…</pre>", comment, flags=re.S)
    text = re.sub(r"(?<![\w.<])/[^\s()<>'\"`:]+", "<abs>", text)
    text = re.sub(r"\d[\d,.]*", "N", text)
    # the leak checks are listed the longest first: tests of similar length swap places
    return re.sub(r"^(🔁 .*?\): )(.*)\.$",
                  lambda m: m[1] + ", ".join(sorted(re.split(r", (?=<code>)", m[2]))),
                  text, flags=re.M)


def test_the_documented_example_comment_is_the_one_built_today(
        example_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts_loader import load_script

    monkeypatch.chdir(EXAMPLE)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(REPO))
    built = load_script("render_comment").comment_of(example_results)
    doc = DOC.read_text(encoding="utf-8")
    shown = doc[doc.index(DOC_START):]
    assert run_neutral(shown) == run_neutral(built), (
        "docs/pr-comment-example.md shows another comment than tiergate builds: run the "
        "example's fast tier and python scripts/gen_comment_example.py RESULTS_DIR")
