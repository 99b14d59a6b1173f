"""Untrusted text stays text. Test names, messages, tracebacks and dumps come from the code under
test; before they reach Markdown, HTML or a workflow command they pass through one of these.

Every function here redacts secrets first (:func:`tiergate.protocol.redact.redact`), so a
caller cannot forget to."""

from __future__ import annotations

import html
import re

from tiergate.protocol.redact import redact

ZWSP = "\u200b"
# ANSI escapes and C0/C1 controls but tab and newline: terminals act on them, GitHub shows junk.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# "@name" or "@org/team" pings people; a zero-width space after the "@" keeps it text.
_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
# Backslash-escaped wherever Markdown could make them structure (emphasis, links, tables, code).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()|~!#{}])")
_LINE_START_COLONS = re.compile(r"(?m)^(\s*):")


def _newlines(text: str) -> str:
    """Every line break as "\n": CR LF, CR, and the Unicode separators that some readers split
    lines on (U+2028, U+2029; NEL and the C0 separators are controls, dropped below)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    return text


def clean(text: str) -> str:
    """Secrets redacted, terminal escapes and control characters dropped (newlines kept)."""
    text = redact(_newlines(text))
    return _CONTROL.sub("", _ANSI.sub("", text))


def one_line(text: str, limit: int | None = None) -> str:
    """Clean text on one line (newlines become " ⏎ "), cut to *limit* characters."""
    text = " ⏎ ".join(part.strip() for part in clean(text).strip().split("\n") if part.strip())
    text = text.replace("\t", " ")
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def md_text(text: str, limit: int | None = None) -> str:
    """Inline Markdown text (paragraphs, list items, table cells, <summary>): one line, no HTML,
    no Markdown structure, no mentions, no table breaking."""
    text = _MD_SPECIAL.sub(r"\\\1", one_line(text, limit))
    text = html.escape(text, quote=False)  # after: the entities it writes hold no Markdown
    return _MENTION.sub("@" + ZWSP, text)


def md_code(text: str, limit: int | None = None) -> str:
    """Inline code-looking text (a test id, a path) that is safe in a table cell."""
    return f"<code>{md_text(text, limit)}</code>"


def html_pre(text: str, limit: int | None = None) -> str:
    """A block of text (traceback, dump) as ``<pre>``: starts an HTML block that only ``</pre>``
    ends, and the text cannot contain one, so blank lines and fences inside it are harmless. GitHub
    does not look for mentions inside <pre>; the zero-width space is a second guard."""
    text = clean(text).expandtabs(4).rstrip()
    if limit is not None and len(text) > limit:
        text = cut_middle(text, limit)
    text = html.escape(text, quote=False)
    text = _MENTION.sub("@" + ZWSP, text)
    # A line starting with "::" is harmless in a file, but never give a log scraper a command.
    text = _LINE_START_COLONS.sub(lambda m: m.group(1) + "&#58;", text)
    return f"<pre>{text}</pre>"


def code_fence(text: str, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside it, so the content
    cannot close it."""
    text = clean(text).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    text = _MENTION.sub("@" + ZWSP, text)
    return f"{fence}{lang}\n{text}\n{fence}"


def cut_middle(text: str, limit: int) -> str:
    """Keep the start and, longer, the end (where a traceback says what went wrong)."""
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head - 60
    skipped = len(text) - head - max(tail, 0)
    return f"{text[:head]}\n… {skipped} characters cut …\n{text[-tail:] if tail > 0 else ''}"


def terminal_text(text: str, limit: int | None = None) -> str:
    """One line for the terminal. A CI job's log is a workflow-command channel: the runner reads a
    line whose first non-blank characters are "::" as a command, and "##[" anywhere in a line as
    an old-style one. So the text stays on one line, and neither reaches the runner intact."""
    text = one_line(text, limit).replace("##[", "#\u2060#[")
    return "» " + text if text.lstrip().startswith("::") else text


# Workflow commands (https://docs.github.com/actions/reference/workflow-commands-for-github-actions)
# are escaped as @actions/core does: data escapes % CR LF; property values also escape : and ,.
def command_data(text: str) -> str:
    text = _newlines(redact(text))
    text = _CONTROL.sub("", _ANSI.sub("", text)).replace("##[", "#\u2060#[")  # old-style command
    return text.replace("%", "%25").replace("\n", "%0A")


def command_property(text: str) -> str:
    return command_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: str | int | None) -> str:
    """``::command key=value,...::message`` with every part escaped."""
    props = ",".join(
        f"{key}={command_property(str(value))}"
        for key, value in properties.items()
        if value is not None and value != ""
    )
    return f"::{command}{' ' + props if props else ''}::{command_data(message)}"
