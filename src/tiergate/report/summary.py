"""The Markdown summary: what a person in a hurry reads in the job summary, the PR comment and the
check run. Most important first; everything long is collapsed; everything that repeats is counted.

The summary is rendered at the richest level of detail that fits the size budget; each poorer
level cuts the least important parts first (the chart and the slowest tests, then dump and
traceback lengths, then rows), and then says what was cut and links to the full job summary."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from tiergate.protocol.findings import LEAK_KINDS, TIMEOUT_KINDS, Finding
from tiergate.protocol.layout import DUMP_LIMIT
from tiergate.report.chart import memory_chart
from tiergate.report.escape import html_pre, html_text, md_code, md_text
from tiergate.report.flaky import flaky_sections
from tiergate.report.links import Links, link, where, without_place
from tiergate.report.lost import LostTests, lost_section, lost_tests
from tiergate.report.trace import trace_hint
from tiergate.results.model import RunResult, TestResult

_PEAK_RSS = attrgetter("peak_rss")  # scans of every test, in C
_REPRODUCES = attrgetter("reproduces")

STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step summary over 1 MiB
COMMENT_LIMIT = 65_536  # characters in an issue or PR comment body
CHECK_RUN_LIMIT = 65_535  # characters in a check run's output.summary / output.text
LEAK_CHECKS_SHOWN = 10  # tests named in the leak-checks line, the longest first

DumpLoader = Callable[[str], str | None]


class _Detail(NamedTuple):  # not a dataclass: cheaper to create at the end of every run
    dump_chars: int  # per dump shown
    dumps: int  # timeouts shown with their dump
    longrepr_chars: int
    failure_details: int  # failures shown with their traceback
    failure_rows: int  # failures listed at all
    finding_rows: int  # rows per findings table, in view
    finding_more: int  # further rows, collapsed
    slowest: int
    chart: bool
    not_run: int
    cut: str  # what this level leaves out, in words ("" for the richest)


_LEVELS = (
    _Detail(50_000, 20, 20_000, 50, 500, 25, 1000, 10, True, 500, ""),
    _Detail(20_000, 10, 5_000, 20, 200, 25, 300, 10, True, 100, "long dumps and tracebacks"),
    _Detail(6_000, 5, 2_000, 10, 100, 20, 100, 5, False, 30,
            "the memory chart, most dumps and tracebacks, and long lists"),
    _Detail(2_000, 3, 800, 5, 30, 15, 0, 5, False, 0,
            "the memory chart, most dumps and tracebacks, and most rows"),
    _Detail(0, 0, 0, 0, 10, 10, 0, 0, False, 0,
            "every dump, traceback and chart, and most rows"),
    _Detail(0, 0, 0, 0, 3, 3, 0, 0, False, 0, "almost everything but the status"),
)


def render_summary(
    run: RunResult,
    *,
    title: str | None = None,
    details_url: str | None = None,
    budget: int = STEP_SUMMARY_LIMIT,
    dump_loader: DumpLoader | None = None,
    known: Collection[str] | None = None,
    links: Links | None = None,
    diagnostics: bool = True,
    base_tests: Collection[str] | None = None,
    timeline: bool = True,
) -> str:
    """Markdown of at most *budget* bytes (UTF-8). *known* holds fingerprints of findings that
    were already present on the base commit: those are marked and listed after the new ones.
    *links* (the Actions context) adds the commit, run, check run and artifact to the header and
    links each location to its blob. *diagnostics* (slowest, heaviest, memory chart: nobody acts
    on them in a review) are for the job summary; the PR comment and check run leave them out.
    *base_tests*: the tests that ran on the base commit, to list those that no longer run.
    *timeline*: trace.json is with the results (else the summary says how to write it)."""
    loader = dump_loader or dump_loader_for(run)
    view = _View(run, known, links, diagnostics, timeline)
    view.lost = lost_tests(run, base_tests)
    for detail in _LEVELS:
        text = _render(view, detail, title, details_url, loader)
        if len(text.encode("utf-8")) <= budget:
            return text
    return _hard_cut(text, budget, details_url)


def dump_loader_for(run: RunResult) -> DumpLoader:
    """Reads a dump (a results-dir-relative path) from whichever source dir of *run* has it,
    never from outside that dir."""
    roots = [Path(s) for s in run.sources if Path(s).is_dir()]

    def load(relative: str) -> str | None:
        for root in roots:
            try:
                path = (root / relative).resolve()
                if path.is_relative_to(root.resolve()) and path.is_file():
                    return read_dump(path)
            except (OSError, ValueError):  # a NUL in the name, a loop of links, unreadable
                continue
        return None

    return load


def read_dump(path: Path, limit: int = DUMP_LIMIT) -> str:
    """A dump file, at most *limit* bytes of it: past that, its start and its end (where the
    culprit and the last thread are) with a line saying how much was cut."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
        if len(data) <= limit:
            return data.decode("utf-8", errors="replace")
        size = os.fstat(handle.fileno()).st_size
        half = limit // 2
        handle.seek(max(half, size - half))
        tail = handle.read(half)
    cut = max(0, size - half - len(tail))
    return (f"[cut: this dump is {size:,} bytes and a report reads at most {limit:,}; "
            f"{cut:,} bytes from its middle are left out]\n"
            + data[:half].decode("utf-8", errors="replace")
            + f"\n… {cut:,} bytes cut …\n" + tail.decode("utf-8", errors="replace"))


class _View:
    """The run sorted and grouped once for every level of detail."""

    def __init__(self, run: RunResult, known: Collection[str] | None,
                 links: Links | None = None, diagnostics: bool = True,
                 timeline: bool = True) -> None:
        self.run = run
        self.links = links
        self.diagnostics = diagnostics
        self.known = set(known or ())
        self.compare = known is not None
        findings = sorted(run.findings, key=lambda f: (self.is_known(f), f.rank))
        self.timeouts = [f for f in findings if f.kind in TIMEOUT_KINDS]
        self.leaks = [f for f in findings if f.kind in LEAK_KINDS]
        self.others = [f for f in findings if f.kind not in TIMEOUT_KINDS | LEAK_KINDS]
        explained = {f.test for f in self.timeouts if f.test}
        self.counts = counts = run.counts()  # (in C: most runs have no failure to list)
        self.bare_timeouts = [t for t in run.tests.values()
                              if t.outcome == "timeout" and t.nodeid not in explained
                              ] if counts["timeout"] else []
        self.failures = sorted(
            (t for t in run.tests.values() if t.outcome in ("failed", "error")),
            key=lambda t: (self.is_known(t), t.nodeid),
        ) if counts["failed"] or counts["error"] else []
        self.lost = LostTests([], [])  # tests that ran on the base and do not now
        self.timeline = timeline  # trace.json is with the results

    def is_known(self, item: Finding | TestResult) -> bool:
        if not self.known:
            return False
        from tiergate.report import fingerprint  # only when comparing with a base commit

        if isinstance(item, Finding):
            return fingerprint.of_finding(item) in self.known
        return fingerprint.of_failure(item) in self.known

    def mark(self, item: Finding | TestResult) -> str:
        return " *(known)*" if self.is_known(item) else (" **new**" if self.compare else "")

    def group_mark(self, group: list[TestResult]) -> str:
        """A group's mark, as its items' would be: new when all are, "N new" when some are."""
        if not self.compare:
            return ""
        new = sum(1 for test in group if not self.is_known(test))
        if new == len(group):
            return " **new**"
        return f" **{new:,} new**" if new else " *(known)*"

    @staticmethod
    def failing_place(test: TestResult) -> tuple[str | None, int | None]:
        """Where a failure's link points: the line that failed (the deepest frame of its
        traceback in the repository, where its annotation sits), else the test's own line."""
        from tiergate.report.annotations import failing_line  # only for a run with failures

        return failing_line(test) or (test.path, test.line)


def _render(view: _View, d: _Detail, title: str | None, url: str | None, load: DumpLoader) -> str:
    parts = [_header(view, title), _input_notes(view), lost_section(view.lost)]
    parts += _timeouts(view, d, load)
    parts += _failures(view, d)
    parts += flaky_sections(view.run)
    parts += _findings_list("💧 Leaks", view.leaks, view, d)
    parts.append(_leak_checks(view, d))
    parts += _findings_list("🔎 Other findings", view.others, view, d)
    parts += _reproductions(view)
    parts.append(_own_network(view))
    parts += _not_run(view, d)
    parts.append(_diagnostics(view, d))
    parts.append(trace_hint(view.run, written=view.timeline))  # the timeline (report/trace.py)
    if d.cut:
        where = f"[the full job summary]({url})" if url else "the full job summary"
        parts.append(f"> ✂️ This summary was shortened to fit: it leaves out {d.cut}. "
                     f"See {where} and the results artifact.")
    return "\n\n".join(p for p in parts if p) + "\n"


def _input_notes(view: _View) -> str:
    """What reading the inputs skipped or cut (report/inputs.py has the limits), and a tier
    name the files gave that --tier overrode: one line."""
    notes = view.run.input_notes
    if not notes:
        return ""
    shown = "; ".join(md_text(note, 600) for note in notes[:10])
    more = f"; and {len(notes) - 10:,} more inputs" if len(notes) > 10 else ""
    return f"> ⚠️ **Input:** {shown}{more}."


def verdict_icon(run: RunResult) -> str:
    """✅ only for a green verdict; ⚠️ for no tests where that is allowed; 🛑 for a cancel."""
    outcome = run.outcome  # each asking scans every test
    if outcome == "cancelled":
        return "🛑"
    if outcome == "no-tests":
        return "⚠️" if run.allow_no_tests else "❌"
    return "✅" if outcome == "passed" else "❌"


def verdict_words(run: RunResult, quote: Callable[[str], str] = str) -> str:
    """The run's outcome in words: "passed", "failed", "no tests ran", "cancelled (SIGTERM)".
    *quote* escapes the one part that comes from the event log, the signal's name."""
    outcome = run.outcome  # each asking scans every test
    if outcome == "no-tests":
        return "no tests ran"
    if outcome == "cancelled":
        return f"cancelled ({quote(run.cancelled)})" if run.cancelled else "cancelled"
    return outcome


def _header(view: _View, title: str | None) -> str:
    """At most five lines: the verdict, why in one sentence, the counts, the change against
    the base commit, and which commit and run this is (a stale comment must look stale)."""
    lines = [_status(view), _counts(view), _delta(view), _about(view)]
    # One paragraph with a hard break (a backslash at the line's end) after each line: Markdown
    # joins a paragraph's lines with a space (measured with cmark-gfm, scripts/render_comment.py)
    # and only some of GitHub's views break them; an explicit break holds in every view.
    return _heading(view, title) + "\n" + "\\\n".join(line for line in lines if line)


def _delta(view: _View) -> str:
    if not view.compare:
        return ""
    from tiergate.report import fingerprint

    delta = fingerprint.compare(view.run, view.known)
    if not delta.any:
        return "No failures or findings here or on the base commit."
    parts = [_n(delta.new_failures, "new failure"), _n(delta.new_findings, "new finding"),
             f"{delta.fixed:,} fixed", f"{delta.still:,} still failing"]
    base = view.links.base_sha if view.links else None
    against = f" vs base {view.links.commit_link(base)}" if view.links and base else \
        " vs the base commit"
    return f"**Changes{against}:** " + " · ".join(parts)


def _about(view: _View) -> str:
    links = view.links
    if links is None:
        return ""
    parts = [f"Commit {links.commit_link()}"]  # the duration is in the status line
    if links.run_url:
        parts.append(link("run", links.run_url))
    if links.check_url:
        parts.append(link("check run", links.check_url))
    if links.artifact_url:
        parts.append(link("results artifact", links.artifact_url))
    return " · ".join(parts)


def _heading(view: _View, title: str | None) -> str:
    name = title or ("tiergate · tier " + (view.run.tier or "default"))
    words = verdict_words(view.run, lambda text: md_text(text, 20))
    return f"### {verdict_icon(view.run)} {md_text(name, 200)}: {words}"


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _status(view: _View) -> str:
    run, c = view.run, view.counts
    total = len(run.tests)
    took = _duration(run.duration)
    warned = len(run.findings)
    extra = f", with {_n(warned, 'warning')} below" if warned else ""
    if run.outcome == "passed":
        return f"**All {_n(total - c['skipped'], 'test')} passed** in {took}{extra}."
    if run.outcome == "no-tests":
        if run.ok:
            return f"**No tests ran**{extra}: the tier allows that (allow-no-tests)."
        return (f"**No tests ran**{extra}: nothing was selected or collected, which is a "
                "failure. Check the tier's markers and paths, or set allow-no-tests where that "
                "is expected.")
    reasons: list[str] = []
    if run.budget_expired:
        reasons.append("the tier's time budget ran out")
    if c["timeout"]:
        reasons.append(f"{_n(c['timeout'], 'test')} timed out")
    if c["failed"]:
        reasons.append(f"{_n(c['failed'], 'test')} failed")
    if c["error"]:
        reasons.append(f"{_n(c['error'], 'test')} had errors")
    crashes = sum(1 for f in run.findings if f.kind == "crash")
    if crashes:
        reasons.append(f"{_n(crashes, 'worker')} crashed")
    leaks = [f for f in view.leaks if f.severity == "error"]
    if leaks:
        reasons.append(f"{_n(len(leaks), 'leak')} found")
    other = [f for f in view.others if f.severity == "error" and f.kind != "crash"]
    if other:
        reasons.append(f"{_n(len(other), 'other finding')}")
    if run.not_run and not run.stopped_early:  # max-fail's own line says how many
        reasons.append(f"{_n(len(run.not_run), 'test')} never ran")
    if run.outcome == "cancelled":
        by = f" by {md_text(run.cancelled, 20)}" if run.cancelled else ""
        line = f"**Cancelled{by}**" + (f": {_join(reasons)}" if reasons else "")
        line += f" — {_n(total, 'test')} in {took}."
    else:
        text = _join(reasons) or "it failed"
        line = f"**Failed: {text}** — {_n(total, 'test')} in {took}."
    if run.stopped_early:
        line += f" The tier {md_text(run.stopped_early, 200)}."
    return line


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _counts(view: _View) -> str:
    labels = (("passed", "✅ passed"), ("failed", "❌ failed"), ("timeout", "⏱️ timed out"),
              ("error", "💥 errors"), ("skipped", "⏭️ skipped"), ("xfailed", "xfailed"),
              ("xpassed", "xpassed"), ("not_run", "🚫 not run"))
    shown = [f"{view.counts[key]:,} {label}" for key, label in labels if view.counts.get(key)]
    findings = len(view.run.findings)
    if findings:
        shown.append(f"🔎 {_n(findings, 'finding')}")
    return " · ".join(shown)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _where(path: str | None, line: int | None, links: Links | None = None) -> str:
    return where(path, line, links)


def _details(summary: str, body: str) -> str:
    """A toggle. *summary* is raw HTML (untrusted text in it goes through html_text): GitHub
    reads no Markdown inside an HTML block, so Markdown escapes there would show."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _timeouts(view: _View, d: _Detail, load: DumpLoader) -> list[str]:
    items: list[Finding | TestResult] = [*view.timeouts, *view.bare_timeouts]
    if not items:
        return []
    out = [f"#### ⏱️ Timeouts ({len(items):,})"]
    shown_rows = max(d.finding_rows, d.dumps)
    for index, item in enumerate(items[:shown_rows]):
        detailed = index < d.dumps and bool(d.dump_chars)
        out.append(_timeout_item(view, item, d, load if detailed else None))
    if len(items) > shown_rows:
        out.append(f"… and {len(items) - shown_rows:,} more timeouts.")
    return out


def _timeout_item(view: _View, item: Finding | TestResult, d: _Detail,
                  load: DumpLoader | None) -> str:
    """One line: the test, where it was stuck (once: the message's own "stuck in" is cut), and
    why; the dump in a toggle under it."""
    if isinstance(item, TestResult):
        line = (f"- ⏱️ {md_code(item.nodeid, 300)}{view.mark(item)}: "
                f"{md_text(_reason(item.message or 'timed out'), 300)}")
        if item.dump:
            return line + _dump_toggle(item.dump, d, load)
        if load and item.longrepr:
            return line + _toggle("Details", html_pre(item.longrepr, d.dump_chars))
        return line
    test = md_code(item.test, 300) if item.test else "the tier"
    line = f"- ⏱️ {test}{view.mark(item)}: {md_text(_reason(item.message), 300)}"
    c = item.culprit
    if c is not None:
        line += (f"; stuck in {md_code(c.function, 100)} at {_where(c.path, c.line, view.links)}"
                 + (f": {md_text(c.reason, 300)}" if c.reason else ""))
        progress = slow_or_stuck(view.run, item, view.links)
        if progress:
            line += f"; {progress}"
    return line + (_dump_toggle(item.dump, d, load) if item.dump else "")


def _reason(message: str) -> str:
    """A timeout's message without its kind and without the place, which the item shows."""
    text = message.removeprefix("timeout: ")
    for cut in ("; stuck in ", ", stuck in "):
        text = text.split(cut, 1)[0]
    return text


def _dump_toggle(dump: str, d: _Detail, load: DumpLoader | None) -> str:
    text = load(dump) if load else None
    if not text:
        return ""
    label = f"Process-tree dump ({html_text(dump, 100)}, {len(text):,} characters)"
    return _toggle(label, html_pre(text, d.dump_chars))


def _toggle(summary: str, body: str) -> str:
    """A toggle under a list item: indented so that it belongs to the item."""
    return "\n\n" + "\n".join("  " + line if line else line
                                for line in _details(summary, body).split("\n"))


def slow_or_stuck(run: RunResult, timeout: Finding, links: Links | None = None) -> str | None:
    """Compare where a timed-out test was at half its limit (the `slow` note) with where it was
    stuck at the end: the same frame means stuck all along; another means slow but moving."""
    end = timeout.culprit
    notes = [n for n in run.slow_notes if n.get("nodeid") == timeout.test and n.get("culprit")]
    if end is None or not notes:
        return None
    half = notes[-1]
    was = half["culprit"]
    at = f"{half.get('elapsed', 0):.1f}s"
    if (was.get("path"), was.get("line"), was.get("function")) == (end.path, end.line,
                                                                    end.function):
        return f"stuck in the same frame since {at} (half its limit): a hang, not slowness"
    where = _where(str(was.get("path", "?")), was.get("line"), links)
    return (f"at {at} (half its limit) it was in {md_code(str(was.get('function', '?')), 100)} "
            f"at {where}: it was still moving, so it may be slow rather than stuck")


def _failures(view: _View, d: _Detail) -> list[str]:
    """Grouped by test function and message: 120 parametrized cases failing the same way are one
    item, their ids in a toggle."""
    items = view.failures
    if not items:
        return []
    out = [f"#### ❌ Failures ({len(items):,})"]
    groups = sorted(_failure_groups(items),
                    key=lambda g: (all(view.is_known(t) for t in g), -len(g)))
    for index, group in enumerate(groups[: d.failure_rows]):
        detailed = index < d.failure_details and bool(d.longrepr_chars)
        out.append(_failure_group(view, group, d if detailed else None))
    if len(groups) > d.failure_rows:
        rest = sum(len(g) for g in groups[d.failure_rows:])
        out.append(f"… and {_n(rest, 'more failure')}.")
    return out


def _failure_groups(items: list[TestResult]) -> list[list[TestResult]]:
    groups: dict[tuple[str, str, str], list[TestResult]] = {}
    for test in items:
        key = (test.nodeid.split("[", 1)[0], test.phase or "", test.message or test.outcome)
        groups.setdefault(key, []).append(test)
    return list(groups.values())


def _failure_group(view: _View, group: list[TestResult], d: _Detail | None) -> str:
    first = group[0]
    phase = f" (in {md_text(first.phase, 20)})" if first.phase and first.phase != "call" else ""
    path, number = view.failing_place(first)
    at = f" at {_where(path, number, view.links)}" if path else ""
    message = md_text(first.message or first.outcome, 300)
    if len(group) == 1:
        line = f"- ❌ {md_code(first.nodeid, 300)}{phase}{at}{view.mark(first)}: {message}"
    else:
        function = first.nodeid.split("[", 1)[0] + "[…]"
        line = (f"- ❌ {len(group):,} {_TIMES} {md_code(function, 300)}{phase}{at}"
                f"{view.group_mark(group)}: {message}")
        ids = "\n".join(html_text(t.nodeid, 300) + html_text(_mark_word(view, t))
                        for t in group[:_IDS_SHOWN])
        more = f"\n… and {len(group) - _IDS_SHOWN:,} more" if len(group) > _IDS_SHOWN else ""
        line += _toggle(f"{len(group):,} tests", f"<pre>{ids}{more}</pre>")
    if d is not None and first.longrepr:
        label = "Traceback" if len(group) == 1 else "Traceback (the first)"
        line += _toggle(label, html_pre(first.longrepr, d.longrepr_chars))
    return line


_TIMES = "\N{MULTIPLICATION SIGN}"
_IDS_SHOWN = 200  # test ids listed in a group's toggle


def _mark_word(view: _View, test: TestResult) -> str:
    return " (known)" if view.is_known(test) else (" (new)" if view.compare else "")


def _finding_item(f: Finding, view: _View) -> str:
    """One line: kind, test, where, why; where the leaked thing was created, when the probe
    says so in words, in a toggle under it."""
    test = f" {md_code(f.test, 200)}" if f.test else ""
    at = _finding_where(f, view.links)
    line = (f"- **{md_text(f.kind, 40)}**{test}{view.mark(f)}{' at ' + at if at else ''}: "
            f"{md_text(_finding_message(f), 300)}")
    created = _created(f)
    if created:
        line += _toggle("Where created", html_pre(created, 4000))
    return line


def _finding_message(f: Finding) -> str:
    """The probe's message without the place the item already links to (its culprit, else its
    location), which probes repeat in their words ("started at …:100 in start")."""
    shown = f.culprit or f.location
    return without_place(f.message, shown.path, shown.line) if shown else f.message


def _finding_where(f: Finding, links: Links | None) -> str:
    if f.culprit is not None:
        return (_where(f.culprit.path, f.culprit.line, links)
                + f" in {md_code(f.culprit.function, 80)}")
    if f.location is not None:
        return _where(f.location.path, f.location.line, links)
    return ""


def _created(f: Finding) -> str | None:
    """Where the leaked thing was created, in the probe's own words, if it has any."""
    for key in ("created", "created_at", "where", "origin"):
        value = f.details.get(key) if f.details else None
        if isinstance(value, str) and value:
            return value
    return None


def _findings_list(heading: str, items: list[Finding], view: _View, d: _Detail) -> list[str]:
    if not items:
        return []
    out = [f"#### {heading} ({len(items):,})"]
    if len(items) > d.finding_rows:
        kinds = Counter(f.kind for f in items)
        out.append("By kind: " + ", ".join(f"{n:,} {md_text(k, 40)}" for k, n in
                                           kinds.most_common()))
    out += [_finding_item(f, view) for f in items[: d.finding_rows]]
    rest = items[d.finding_rows:]
    if rest:
        more = rest[: d.finding_more]
        if more:
            label = f"{len(rest):,} more" + (f" ({len(more):,} shown)" if len(more) < len(rest)
                                             else "")
            out.append(_details(label, "\n".join(_finding_item(f, view) for f in more)))
        else:
            out.append(f"… and {len(rest):,} more.")
    return out


def _leak_checks(view: _View, d: _Detail) -> str:
    """One line: the tests run again to confirm a leak, what that cost and what each came to
    (the repeats are part of the run's time, so the run says where it went)."""
    if not view.run.leak_checks:  # most runs confirm no leak: the module is not even loaded
        return ""
    from tiergate.report.leakchecks import leak_checks

    checks = leak_checks(view.run)
    if checks is None:
        return ""
    shown = checks.tests[: min(LEAK_CHECKS_SHOWN, d.finding_rows)]
    items = [f"{md_code(t.nodeid, 200)} ({_n(t.repeats, 'repeat')}, {_duration(t.seconds)}, "
             f"{md_text(t.verdict, 40)})" for t in shown]
    rest = checks.tests[len(shown):]
    if rest:
        items.append(f"and {len(rest):,} more ({_duration(sum(t.seconds for t in rest))})")
    return (f"🔁 **Leak checks:** {_n(len(checks.tests), 'test')} run again to confirm leaks "
            f"({_n(checks.repeats, 'repeat')}, {_duration(checks.seconds)} of the run's "
            f"{_duration(view.run.duration)}): " + ", ".join(items) + ".")


def _table(head: str, rows: Iterable[str]) -> str:
    return head + "\n" + "\n".join(rows)


def _diagnostics(view: _View, d: _Detail) -> str:
    """Slowest and heaviest tests and the memory chart: useful when tuning, acted on by nobody in
    a review. Job summary only, collapsed."""
    if not view.diagnostics:
        return ""
    parts = [*_slowest(view, d), *_heaviest(view, d)]
    if d.chart and (chart := memory_chart(view.run.samples)):
        parts += ["#### 📈 Memory", chart]
    if not parts:
        return ""
    return _details("📊 Diagnostics: slowest tests, heaviest tests, memory", "\n\n".join(parts))


def _slowest(view: _View, d: _Detail) -> list[str]:
    if not d.slowest or not view.run.tests:
        return []
    rows = [f"| {md_code(t.nodeid, 200)} | {_duration(t.duration)} | {md_text(t.outcome, 20)} |"
            for t in view.run.slowest(d.slowest) if t.duration > 0]
    if not rows:
        return []
    return ["#### 🐢 Slowest tests", _table("| Test | Duration | Outcome |\n|---|--:|---|", rows)]


def _heaviest(view: _View, d: _Detail) -> list[str]:
    """The tests with the highest peak memory of the process tree, where the run sampled it."""
    weighed = list(filter(_PEAK_RSS, view.run.tests.values()))
    if not d.slowest or not weighed:
        return []
    weighed.sort(key=_PEAK_RSS, reverse=True)
    rows = [f"| {md_code(t.nodeid, 200)} | {(t.peak_rss or 0) / 2**20:,.0f} MiB | "
            f"{_duration(t.duration)} |" for t in weighed[: d.slowest]]
    return ["#### 🐘 Heaviest tests", _table("| Test | Peak memory | Duration |\n|---|--:|--:|",
                                             rows)]


def _reproductions(view: _View) -> list[str]:
    """Tests marked as reproducing a known bug: still failing as they should, or fixed."""
    marked = list(filter(_REPRODUCES, view.run.tests.values()))
    if not marked:
        return []
    rows = [f"| {md_code(t.nodeid, 200)} | {md_text(str(t.reproduces), 60)} | "
            + ("still reproduces" if t.outcome == "xfailed" else f"**{md_text(t.outcome, 20)}**")
            + " |" for t in marked[:50]]
    more = [f"… and {len(marked) - 50:,} more."] if len(marked) > 50 else []
    return ["#### 🐞 Reproduction tests",
            _table("| Test | Bug | Now |\n|---|---|---|", rows), *more]


def _own_network(view: _View) -> str:
    """Tests run under their own @pytest.mark.network policy, not the tier's."""
    own = view.run.network_policies
    if not own:
        return ""
    shown = ", ".join(f"{md_code(nodeid, 200)} ({md_text(policy, 60)})"
                      for nodeid, policy in list(own.items())[:20])
    more = f" and {len(own) - 20:,} more" if len(own) > 20 else ""
    return (f"🌐 {_n(len(own), 'test')} ran with a network policy other than the tier's "
            f"(@pytest.mark.network): {shown}{more}.")


def _not_run(view: _View, d: _Detail) -> list[str]:
    missing = view.run.not_run
    if not missing:
        return []
    if not d.not_run:
        return [f"🚫 {_n(len(missing), 'test')} did not run."]
    body = "\n".join(f"- {md_code(n, 200)}" for n in missing[: d.not_run])
    if len(missing) > d.not_run:
        body += f"\n- … and {len(missing) - d.not_run:,} more"
    return [_details(f"🚫 {_n(len(missing), 'test')} did not run", body)]


def _hard_cut(text: str, budget: int, url: str | None) -> str:
    """The last resort: whole lines up to the budget, then the note."""
    where = f"[the full job summary]({url})" if url else "the full job summary"
    note = f"\n\n> ✂️ Cut to fit; see {where}.\n"
    room = budget - len(note.encode("utf-8"))
    data = text.encode("utf-8")[: max(0, room)].decode("utf-8", "ignore")
    return data[: data.rfind("\n") + 1] + note if "\n" in data else note.lstrip()
