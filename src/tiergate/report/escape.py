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
# URLs as GFM's autolinker finds them: a scheme it knows, or "www." after a space or "*_~(".
_URL = re.compile(r"(?:(?:https?|ftp)://|(?<![^\s*_~(])www\.)[^\s<>\[\]`\"']+", re.IGNORECASE)
_URL_TRAILING = frozenset("?!.,:;*_~'\"")
# An HTML entity cut short at the end of a text ("&am", "&#12"): cutting drops it whole.
_PARTIAL_ENTITY = re.compile(r"&#?[A-Za-z0-9]{0,32}$")


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


def md_text(text: str, limit: int | None = None, *, links: bool = True) -> str:
    """Inline Markdown text (paragraphs, list items, table cells): one line, no HTML of its own,
    no Markdown structure, no mentions, no table breaking. A URL in it becomes an explicit link
    (with *links*) or plain text: never raw text that GitHub's autolinker would scan."""
    line = one_line(text, limit)
    parts: list[str] = []
    done = 0
    for match in _URL.finditer(line):
        url = _url_end(match.group())
        parts += [_md_plain(line[done:match.start()]), _md_url(url, links)]
        done = match.start() + len(url)
    parts.append(_md_plain(line[done:]))
    return "".join(parts)


def _md_plain(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = html.escape(text, quote=False)  # after: the entities it writes hold no Markdown
    return _MENTION.sub("@" + ZWSP, text)


def _url_end(url: str) -> str:
    """Where a URL in prose ends: trailing punctuation and an unbalanced ")" are the sentence's,
    as GFM's autolinker decides."""
    while url and (url[-1] in _URL_TRAILING
                   or (url[-1] == ")" and url.count(")") > url.count("("))):
        url = url[:-1]
    return url


def _md_url(url: str, link: bool) -> str:
    """GFM's autolinker works on the raw source, before escapes and entities are decoded: an
    escaped URL left to it shows its backslashes and a double-escaped "&amp;amp;", and its href
    gets "%5C". So the URL's text is escaped like any text, with its scheme's ":" (or its first
    "w") as an entity, which the autolinker does not see; with *link* it goes inside an
    explicit <a> whose href is the URL itself, attribute-escaped (verified with cmark-gfm)."""
    shown = _md_plain(url)  # "www.…" when it has no "://"
    shown = shown.replace("://", "&#58;//", 1) if "://" in shown else "&#119;" + shown[1:]
    if not link:
        return shown
    href = url if "://" in url else "http://" + url
    href = html.escape(href, quote=True).replace("|", "&#124;")  # "|" would split a table row
    return f'<a href="{href}">{shown}</a>'


def html_text(text: str, limit: int | None = None) -> str:
    """Text inside raw HTML (``<summary>``): one line, HTML-escaped only. GitHub does not read
    Markdown inside an HTML block, so a Markdown escape there would show as a backslash; nor
    does its autolinker run there. Mentions are still linked, so they get the zero-width space."""
    return _MENTION.sub("@" + ZWSP, html.escape(one_line(text, limit), quote=False))


def md_code(text: str, limit: int | None = None) -> str:
    """Inline code-looking text (a test id, a path) that is safe in a table cell."""
    return f"<code>{md_text(text, limit, links=False)}</code>"


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


def cut_bytes(text: str, limit: int, *, markup: bool = False) -> str:
    """*text* in at most *limit* bytes of UTF-8 (how GitHub measures most of its limits), never
    half a character; with *markup* (Markdown/HTML), never half an entity either."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    cut = data[: max(0, limit)].decode("utf-8", "ignore")
    return _PARTIAL_ENTITY.sub("", cut) if markup else cut


def cut_middle_bytes(text: str, limit: int) -> str:
    """:func:`cut_middle` measured in UTF-8 bytes: the start, a note, and the longer end, in at
    most *limit* bytes, never splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    head = data[: limit // 3].decode("utf-8", "ignore")
    used = len(head.encode("utf-8"))
    room = limit - used - 60  # the note takes at most 60 bytes
    tail = data[len(data) - room:].decode("utf-8", "ignore") if room > 0 else ""
    skipped = len(data) - used - len(tail.encode("utf-8"))
    return f"{head}\n… {skipped:,} bytes cut …\n{tail}"


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
