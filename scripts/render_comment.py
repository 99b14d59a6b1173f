"""Render a PR comment as GitHub shows it and measure it: cmark-gfm (GitHub's Markdown engine,
with the extensions github.com enables) into HTML styled by github-markdown-css, laid out by
headless Chromium at the PR timeline's width. Prints the height, where the verdict and the first
failing/hanging/leaking test (its name, reason and path:line link) are and whether they are on
the first screen, every visible Markdown escape and every broken link.

    python scripts/render_comment.py RESULTS_DIR_OR_COMMENT.md [--png out.png]

A results dir is turned into the body `tiergate post` writes (sample links to a fake
repository, no base commit); run it from the project folder, as the action does. Needs
``chromium`` (apt) and github-markdown-css (``npm pack github-markdown-css``, unpacked; --css).
A tool for docs/reporting.md: never run by the test suite (CI does not depend on apt)."""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

WIDTH = 800  # the PR timeline's comment column
SCREEN = 900  # what a reviewer sees before scrolling
PADDING = 16  # a comment body's padding on github.com
EXTENSIONS = ("table", "strikethrough", "autolink", "tagfilter", "tasklist")  # github.com's
CSS_DEFAULT = Path("/tmp/ghcss/package/github-markdown-light.css")
SHA = "0123456789abcdef0123456789abcdef01234567"
# A Markdown escape that cmark-gfm left as text, or an entity escaped twice.
_ESCAPE = re.compile(r"\\[_*\[\]`#|<>()!{}~]|&amp;|&#\d+;|&[a-z]+;|%5C", re.IGNORECASE)


class _Text(HTMLParser):
    """The text a reader sees (every toggle open), and every href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def escapes_shown(page: str) -> list[str]:
    """Each piece of visible text that looks like a Markdown escape or a doubly escaped entity,
    with a little context."""
    text = "".join(_parse(page).text)
    return [text[max(0, m.start() - 20): m.end() + 20].replace("\n", " ")
            for m in _ESCAPE.finditer(text)]


def broken_links(page: str, blob_prefix: str | None = None) -> list[str]:
    """Each href a reader could not follow: empty, with a backslash, %5C or an entity escaped
    twice, or not an absolute http(s) URL (a relative path GitHub would resolve against the
    PR page); with *blob_prefix*, a blob link that is not under it."""
    bad = []
    for href in _parse(page).hrefs:
        parts = urlsplit(href)
        if (not href or "\\" in href or "%5c" in href.lower() or "&amp;" in href
                or parts.scheme not in ("http", "https") or not parts.netloc
                or (blob_prefix and "/blob/" in href and not href.startswith(blob_prefix))):
            bad.append(href or "(empty)")
    return bad


def render_markdown(text: str, *, hardbreaks: bool = False) -> str:
    """HTML as github.com renders Markdown (cmark-gfm, raw HTML kept and then tag-filtered).
    *hardbreaks*: a newline inside a paragraph breaks the line, as comments on github.com
    show it; without, it is a space, as in the plain GFM spec (a file, a check run)."""
    import cmarkgfm  # type: ignore[import-untyped]
    from cmarkgfm.cmark import Options  # type: ignore[import-untyped]

    options = Options.CMARK_OPT_UNSAFE | (Options.CMARK_OPT_HARDBREAKS if hardbreaks else 0)
    return str(cmarkgfm.markdown_to_html_with_extensions(
        text, options=options, extensions=list(EXTENSIONS)))


# Runs in the page: positions relative to the top of the comment, written into the DOM for
# --dump-dom to carry out. The first item of the first findings list is the first failing,
# hanging or leaking test; its own text ends where its first toggle starts.
_MEASURE = r"""
<script>
(() => {
  const body = document.querySelector('.markdown-body');
  const top = body.getBoundingClientRect().top;
  const y = r => r ? Math.round(r.top - top) : null;
  const yEnd = r => r ? Math.round(r.bottom - top) : null;
  const out = {height: Math.round(body.getBoundingClientRect().height)};
  const verdict = body.querySelector('h1,h2,h3,h4');
  out.verdict = verdict ? {y: y(verdict.getBoundingClientRect()),
                           text: verdict.textContent.trim()} : null;
  const item = body.querySelector('ul > li');
  if (item) {
    const range = document.createRange();
    range.setStart(item, 0);
    const toggle = item.querySelector('details');
    if (toggle) range.setEndBefore(toggle); else range.setEndAfter(item.lastChild);
    const rects = [...range.getClientRects()].filter(r => r.height > 0);
    const name = item.querySelector('code');
    const link = item.querySelector('a[href*="/blob/"]');
    out.item = {
      text: range.toString().trim().slice(0, 300),
      name: name ? {y: y(name.getBoundingClientRect()), text: name.textContent} : null,
      link: link ? {y: y(link.getBoundingClientRect()), text: link.textContent} : null,
      reason_end: rects.length ? yEnd(rects[rects.length - 1]) : null,
    };
  }
  const pre = document.createElement('pre');
  pre.id = 'tiergate-measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def page_html(body: str, css: str, *, measure: bool = True) -> str:
    """A page with one comment box: the timeline's width, a comment body's padding."""
    style = (f"body{{margin:0;background:#fff}}.markdown-body{{box-sizing:border-box;"
             f"width:{WIDTH}px;padding:{PADDING}px}}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>{css}</style>"
            f"<style>{style}</style></head><body><article class='markdown-body'>{body}"
            f"</article>{_MEASURE if measure else ''}</body></html>")


def _chromium(binary: str, page: Path, *extra: str) -> str:
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WIDTH},{SCREEN}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise SystemExit(f"render_comment: chromium failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def measure(body: str, css: str, binary: str, png: Path | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="render-comment-") as tmp:
        page = Path(tmp) / "comment.html"
        page.write_text(page_html(body, css), encoding="utf-8")
        dom = _chromium(binary, page, "--dump-dom")
        found = re.search(r'<pre id="tiergate-measure">(.*?)</pre>', dom, re.S)
        if not found:
            raise SystemExit("render_comment: the page did not report its layout")
        layout: dict[str, object] = json.loads(html.unescape(found.group(1)))
        if png is not None:
            page.write_text(page_html(body, css, measure=False), encoding="utf-8")
            height = int(str(layout["height"]))
            _chromium(binary, page, f"--screenshot={png.resolve()}",
                      f"--window-size={WIDTH},{height}")
    return layout


def comment_of(results: Path) -> str:
    """The body `tiergate post` writes for *results* (see cli/post.py), with sample links."""
    from tiergate.github.comment import fit_body, marker
    from tiergate.report.links import Links
    from tiergate.report.summary import COMMENT_LIMIT, render_summary
    from tiergate.results.inputs import load_run

    run = load_run([results], [])
    links = Links("https://github.com", "octo/app", SHA,
                  run_url="https://github.com/octo/app/actions/runs/42",
                  check_url="https://github.com/octo/app/runs/7")
    tier = run.tier or "default"
    body = render_summary(run, title=f"tiergate · tier {tier}", details_url=links.run_url,
                          budget=COMMENT_LIMIT - 500, known=set(), links=links,
                          diagnostics=False)
    return fit_body(f"{marker(tier)}\n{body}")


def report(layout: dict[str, object], page: str) -> list[str]:
    lines = [f"height: {layout['height']} px (at {WIDTH} px wide)"]
    verdict = layout.get("verdict")
    if isinstance(verdict, dict):
        lines.append(f"verdict: y={verdict['y']} {_screen(verdict['y'])}  {verdict['text']}")
    item = layout.get("item")
    if isinstance(item, dict):
        for key in ("name", "link"):
            part = item.get(key)
            if isinstance(part, dict):
                lines.append(f"first item {key}: y={part['y']} {_screen(part['y'])}  "
                             f"{part['text']}")
        lines.append(f"first item reason ends: y={item['reason_end']} "
                     f"{_screen(item['reason_end'])}")
        lines.append(f"first item: {item['text']}")
    escapes, broken = escapes_shown(page), broken_links(page, f"https://github.com/octo/app/"
                                                             f"blob/{SHA}/")
    lines.append(f"visible escapes: {len(escapes)}" + "".join(f"\n  {e!r}" for e in escapes))
    lines.append(f"broken links: {len(broken)}" + "".join(f"\n  {b!r}" for b in broken))
    return lines


def _screen(y: object) -> str:
    return "(first screen)" if isinstance(y, int) and y < SCREEN else "(BELOW the first screen)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a comment (.md) or a results dir")
    parser.add_argument("--png", type=Path, help="write a screenshot of the whole comment")
    parser.add_argument("--css", type=Path, default=CSS_DEFAULT,
                        help="github-markdown-css's github-markdown-light.css")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--hardbreaks", action="store_true",
                        help="a newline in a paragraph breaks the line (comments on github.com)")
    parser.add_argument("--markdown-out", type=Path, help="write the comment's Markdown here")
    args = parser.parse_args(argv)
    if not args.css.is_file():
        print(f"render_comment: no stylesheet at {args.css}: run `npm pack github-markdown-css`"
              " and unpack it, or pass --css", file=sys.stderr)
        return 2
    if not shutil.which(args.chromium):
        print(f"render_comment: no {args.chromium}: `apt-get install chromium`", file=sys.stderr)
        return 2
    text = (comment_of(args.source) if args.source.is_dir()
            else args.source.read_text(encoding="utf-8"))
    if args.markdown_out:
        args.markdown_out.write_text(text, encoding="utf-8")
    page = render_markdown(text, hardbreaks=args.hardbreaks)
    layout = measure(page, args.css.read_text(encoding="utf-8"), args.chromium, args.png)
    print("\n".join(report(layout, page)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
