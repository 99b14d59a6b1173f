"""Secrets never leave the run: one redaction step that every byte passes before it is written or
shown (the event log and so every report rebuilt from it, dumps, command lines, pytest's own
output under the supervisor, comments).

What counts as a secret, from the environment of the process:

- the value of a variable whose name looks secret (``is_secret_name``),
  of the variables GitHub passes (``GITHUB_SECRETS``), and of every variable the user names
  (``[tool.tiergate] redact = [...]``, env ``TIERGATE_REDACT=NAME,NAME``);
- the credentials inside a URL in any variable (``postgres://app:PASSWORD@host``).

A value is matched in the forms it takes on its way to a report: as is, JSON-escaped, repr-escaped,
URL-encoded (``quote``, ``quote_plus``), HTML-escaped, and one more JSON or repr layer over each;
and a piece of 8 or more characters at its start or end next to pytest's ``...`` elision or at
the edge of the text (a cut). A value under 8 characters or a common word (``COMMON_VALUES``) is
masked only as a whole token where it is clearly a value (after ``=`` or ``:`` of a secret-looking
key, in URL credentials), never inside words, node ids or paths, and the run warns about it
(``weak_secret_warnings``).

Matching, in time linear in the text for any size: one compiled regular expression of literal
anchors (the first 8 characters of every form as a trie, the short values as tokens), whose
alternatives all start with a literal character so that the engine skips to candidates with a
character-set scan; ``str.find`` for each ``...`` (a row of progress dots is one look); each
candidate is then checked in Python against the forms (how far it matches, what follows).

An event line (``Redactor.line``, what ``EventWriter`` calls for every line when the environment
holds a secret) costs one ``search`` of a regex of the same anchors in their JSON spelling, each
starting at its rarest character; only on a hit (or a line long enough to hold a cut field) is
the line decoded, each string redacted as above, and the line encoded again, so it stays JSON.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring as _encode_utf8
from json.encoder import encode_basestring_ascii as _encode_ascii
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus, unquote

from tiergate.protocol.environ import PREFIX as ENV_PREFIX
from tiergate.protocol.environ import REDACT as REDACT_ENV

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASS|PWD|API_?KEY|PRIVATE|_KEY$|^KEY$|CREDENTIAL|AUTH(?!OR)|COOKIE|SESSION|DSN",
    re.IGNORECASE,
)
# Names that match SECRET_NAME but hold no secret: the shell's working directories, sockets,
# desktop sessions, askpass programs, paths, switches and our own settings.
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK", "SESSION_MANAGER",
                               "DESKTOP_SESSION"})
_NOT_SECRET_NAME = (
    r"^(?:XDG_\w*|\w*DBUS\w*|\w*ASKPASS|" + ENV_PREFIX + r"\w*)$"
    r"|_(?:FILE|PATH|DIR|SOCK|SOCKET|HOST|PORT"
    r"|URL|URI|TIMEOUT|TTL|ENABLED|DISABLED|MODE|TYPE|LEVEL|METHOD|PROVIDER|BACKEND|ENGINE"
    r"|ALGORITHM|VERSION|REGION|NAME)$"
)
# What GitHub Actions passes to a job or an action: secrets whatever the name rules say.
GITHUB_SECRETS = frozenset({
    "GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN",
    "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "INPUT_GITHUB-TOKEN",
    "INPUT_GITHUB_TOKEN", "INPUT_TOKEN",
})
MASK = "***"
MIN_STRONG = 8  # a shorter value is masked only where it is clearly a value
_MIN_USER = 16  # a URL's user name alone (no password) is a secret only when token-long
_WINDOW = 8  # atoms: the shortest piece of a secret masked at an elision or a cut
_MAX_WINDOWS = 1024  # per end of a very long value (a key of kilobytes): its first and last
_LONG_LINE = 16 * 1024  # an event line this long may hold a cut field: always checked in full
# Too common to mask inside other text: masked only as a whole value (see the module's doc).
COMMON_VALUES = frozenset({
    "test", "tests", "testing", "tester", "testuser", "testpass", "testpassword", "postgres",
    "postgresql", "mysql", "mariadb", "redis", "mongo", "mongodb", "sqlite", "admin",
    "administrator", "password", "passw0rd", "passwd", "secret", "secrets", "root", "user",
    "username", "guest", "default", "changeme", "example", "sample", "demo", "dev", "devel",
    "development", "local", "localhost", "production", "staging", "token", "qwerty", "letmein",
    "welcome", "master", "main", "docker", "ubuntu", "runner", "github", "public", "private",
    "django", "flask", "app", "application", "service", "server", "client", "database",
    "12345678", "123456789", "1234567890", "abcdefgh",
})
_NOT_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "nil",
                         "undefined"})
# Compiled when first needed (the writer of every pytest process imports this module).
_PLAIN = r"[A-Za-z0-9_.~-]*"  # characters no encoding below changes
_URL_CREDENTIALS = (
    r"[A-Za-z][A-Za-z0-9+.-]{0,30}://([^\s:/@?#]{1,256})(?::([^\s/@?#]{0,256}))?@")
_URL_SEGMENT_STOP = r"[\s/@?#]"
_URL_PASSWORD_AFTER = r":[^\s/@?#]{0,256}@"

# Generic patterns for reports, whatever the environment: secrets written inline (--password=x,
# token: x, --api-key x, https://user:pw@host). Every quantifier is bounded so the scan stays
# linear on 64 KiB failure texts.
_WORD = r"(?:token|secret|password|passwd|passphrase|api[_-]?key|credential)"
# What every _WORD starts with; "passw"/"passp", not "pass": nearly every summary says "passed"
_WORD_STEMS = ("token", "secret", "passw", "passp", "api", "credential")
# The only characters above ASCII that IGNORECASE matches to an ASCII letter (dotted capital I,
# dotless i, long s, the Kelvin sign): every other character of a text leaves its ASCII words
# as they are, so a text without these four holds a _WORD only where its lowered form does.
_FOLDS_TO_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
_INLINE = rf"(?P<key>{_WORD}[\w-]{{0,40}}(?:=|:\s{{0,3}}))(?P<value>[^\s&'\"]+)"
_OPTION = rf"(?P<key>(?<![\w-])--?[\w-]{{0,40}}?{_WORD}[\w-]{{0,40}}\s+)(?P<value>[^\s-][^\s]*)"
_URL_PASSWORD = (
    r"(?P<head>[a-z][a-z0-9+.-]{0,30}://[^:/@\s]{1,200}:)(?P<value>[^@\s]{1,200})(?=@)")


@functools.cache
def _re(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def is_secret_name(name: str) -> bool:
    """Does the name of an environment variable say that its value is a secret?"""
    if name in GITHUB_SECRETS:
        return True
    return (SECRET_NAME.search(name) is not None and name not in _NOT_SECRET_NAMES
            and _re(_NOT_SECRET_NAME, re.IGNORECASE).search(name) is None)


# -- the forms a value takes -----------------------------------------------------------------


def _json_ascii(text: str) -> str:
    return _encode_ascii(text)[1:-1]


def _json_utf8(text: str) -> str:
    return _encode_utf8(text)[1:-1]


def _repr_char(char: str) -> str:
    if char == "'":
        return "\\'"
    if char == "\\":
        return "\\\\"
    return repr(char)[1:-1]


def _repr(text: str) -> str:  # inside '...', as repr() writes a str
    return "".join(_repr_char(c) for c in text)


def _repr_dq(text: str) -> str:  # inside "...": repr() of a str that holds ' and no "
    return "".join("'" if c == "'" else _repr_char(c) for c in text)


def _same(text: str) -> str:
    return text


def _quote(text: str) -> str:
    return quote(text, safe="/")


def _quote_all(text: str) -> str:
    return quote(text, safe="")


def _quote_plus(text: str) -> str:
    return quote_plus(text, safe="")


def _html(text: str) -> str:
    import html  # only for a secret's forms: not on the supervisor's way to starting pytest

    return html.escape(text)


_Encoder = Callable[[str], str]
_INNER: tuple[_Encoder, ...] = (_same, _json_ascii, _json_utf8, _repr, _repr_dq, _quote,
                                _quote_all, _quote_plus, _html)
_OUTER: tuple[_Encoder, ...] = (_same, _json_ascii, _json_utf8, _repr)
_OUTER2: tuple[_Encoder, ...] = (_same, _json_ascii)
_COMBINATIONS = len(_INNER) * len(_OUTER) * len(_OUTER2)


@functools.lru_cache(maxsize=512)
def _char_forms(char: str) -> tuple[str | None, ...]:
    """What one character becomes under each combination of encodings (None: it cannot be
    encoded so: a lone surrogate is no URL)."""
    if _re(_PLAIN).fullmatch(char):
        return (char,) * _COMBINATIONS
    out: list[str | None] = []
    for outer2 in _OUTER2:
        for outer in _OUTER:
            for inner in _INNER:
                try:
                    out.append(outer2(outer(inner(char))))
                except (UnicodeError, ValueError):
                    out.append(None)
    return tuple(out)


def _forms(value: str) -> list[tuple[str, ...]]:
    """Every form of *value*, each as its atoms: what one character of the value became (``"``
    is ``\\"`` in JSON), so that a piece of a form starts and ends on a whole escape."""
    plain = _re(_PLAIN).fullmatch
    specials = sorted({c for c in value if not plain(c)})
    if not specials:
        return [tuple(value)]
    each = [_char_forms(c) for c in specials]
    combinations: dict[tuple[str | None, ...], None] = {}
    for combination in range(_COMBINATIONS):
        combinations.setdefault(tuple(forms[combination] for forms in each), None)
    found = []
    for key in combinations:
        if None not in key:
            spelled = {c: f for c, f in zip(specials, key, strict=True) if f is not None}
            found.append(tuple(spelled.get(c, c) for c in value))
    return found


def _weak_forms(value: str) -> list[str]:
    forms = {value: None}
    try:
        forms.setdefault(quote(value, safe=""), None)
    except (UnicodeError, ValueError):
        pass
    return list(forms)


# -- which values ------------------------------------------------------------------------------


class _Found(NamedTuple):
    strong: tuple[str, ...]
    weak: tuple[str, ...]
    warnings: tuple[str, ...]


def _names(text: str) -> set[str]:
    return {n for n in re.split(r"[\s,]+", text) if n}


def _classify(value: str) -> str | None:
    """"strong" (masked everywhere), "weak" (only as a value), None (no secret: a switch)."""
    if not value or value.lower() in _NOT_VALUES or (value.isdigit() and len(value) < 4):
        return None
    if len(value) < MIN_STRONG or value.lower() in COMMON_VALUES:
        return "weak"
    return "strong"


def _find(items: Iterable[tuple[str, str]], listed: Iterable[str]) -> _Found:
    env = dict(items)
    named = set(listed) | _names(env.get(REDACT_ENV, ""))
    strong: set[str] = set()
    weak: set[str] = set()
    warnings: dict[str, str] = {}

    def add(value: str, what: str, name: str) -> None:
        value = value.strip()
        kind = _classify(value)
        if kind == "strong":
            strong.add(value)
            for line in value.splitlines():  # a key of many lines, shown line by line
                if _classify(line.strip()) == "strong":
                    strong.add(line.strip())
        elif kind == "weak":
            weak.add(value)
            warnings.setdefault(name, f"tiergate: warning: {what} is too short or too common "
                                "to mask everywhere, so it is masked only where it is clearly "
                                "a value (KEY=value, URL credentials); rotate it for a long "
                                "random one")

    for name in sorted(env):
        value = env[name]
        if name in named or is_secret_name(name):
            add(value, f"the value of {name}", name)
        if "://" not in value:
            continue
        for match in _re(_URL_CREDENTIALS).finditer(value):
            user, password = match.group(1), match.group(2)
            if password:
                for form in {password, unquote(password)}:
                    add(form, f"the password in {name}", name)
            elif len(user) >= _MIN_USER and user.lower() not in COMMON_VALUES:
                strong.update({user, unquote(user)})
    return _Found(tuple(sorted(strong, key=len, reverse=True)), tuple(sorted(weak)),
                  tuple(warnings[n] for n in sorted(warnings)))


# -- the matcher -------------------------------------------------------------------------------


class _Form(NamedTuple):
    atoms: tuple[str, ...]
    text: str
    offsets: tuple[int, ...]  # where each atom starts in text, and its end


def _form(atoms: tuple[str, ...]) -> _Form:
    offsets = [0]
    for atom in atoms:
        offsets.append(offsets[-1] + len(atom))
    return _Form(atoms, "".join(atoms), tuple(offsets))


def _window_starts(count: int) -> Iterable[int]:
    last = count - _WINDOW
    if last + 1 <= 2 * _MAX_WINDOWS:
        return range(last + 1)
    return [*range(_MAX_WINDOWS), *range(last + 1 - _MAX_WINDOWS, last + 1)]


def _trie(words: Iterable[str]) -> list[str]:
    """Alternatives matching any of *words*, as a trie: each starts with a literal character (so
    the engine scans for the set of first characters), and a node with many children first
    checks the next character against their set."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = None

    def below(node: dict[str, Any]) -> str:
        kids = sorted(c for c in node if c)
        if not kids:
            return ""
        parts = [re.escape(c) + below(node[c]) for c in kids]
        if "" in node:
            return f"(?:{'|'.join(parts)})?"
        if len(parts) == 1:
            return parts[0]
        look = f"(?=[{''.join(re.escape(c) for c in kids)}])" if len(kids) > 3 else ""
        return f"{look}(?:{'|'.join(parts)})"

    return [re.escape(c) + below(root[c]) for c in sorted(c for c in root if c)]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _token(value: str) -> str:
    """A short value as a regex alternative: a whole token, first character literal."""
    first, rest = re.escape(value[0]), re.escape(value[1:])
    before = after = ""
    if _is_word(value[0]):
        before = rf"(?<!\w{first})"
    if _is_word(value[-1]):
        after = r"(?!\w)"
    return first + before + rest + after


# How often a character shows in an event line (keys, node ids, paths, timestamps): a line
# regex alternative starts at the rarest character of its word, so that the character-set scan
# stops at few places.
_OFTEN = dict.fromkeys('0123456789eatoinsrhldcup"{}:,./_-[]', 3) | dict.fromkeys("fmgkvywbxjqz", 1)


def _anchored(word: str, *, token: bool = False) -> str:
    """*word* (or, with *token*, *word* as a whole token; after a JSON escape such as ``\\n``
    counts as a token start) as a regex alternative that starts at its rarest character and
    checks what comes before it with a look-behind. For the event line regex, which only says
    whether a line holds anything to look at, so where the match starts does not matter."""
    at = min(range(len(word)), key=lambda i: (_OFTEN.get(word[i], 0), i))
    start = ""
    if token and _is_word(word[0]):
        start = r"(?:(?<!\w)|(?<=\\[nrtbf]))"
    before = f"(?<={start}{re.escape(word[: at + 1])})" if at or start else ""
    after = r"(?!\w)" if token and _is_word(word[-1]) else ""
    return re.escape(word[at]) + before + re.escape(word[at + 1:]) + after


def _after_elision(firsts: set[str], dotted: Iterable[str]) -> list[str]:
    """One alternative for a piece of a secret after "...": the set of characters a piece starts
    with (the piece is then looked up in Python), and the pieces that start with "." spelled out,
    so that a row of progress dots is not a candidate at every dot."""
    chars = "".join(re.escape(c) for c in sorted(firsts - {"."}))
    options = [f"(?=[{chars}])"] if chars else []
    options += _trie(dotted)
    if not options:
        return []
    return [r"\.\.\." + (options[0] if len(options) == 1 else f"(?:{'|'.join(options)})")]


def _compile(alternatives: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(alternatives)) if alternatives else None


class Redactor:
    """The secrets of one environment and the matchers for them. ``text`` redacts any text;
    ``line`` one event line (JSON), with one regex search when there is nothing to hide."""

    def __init__(self, found: _Found) -> None:
        self.values = found.strong  # longest first
        self.weak = found.weak
        self.warnings = found.warnings
        self.active = bool(found.strong or found.weak)
        forms = [_form(atoms) for value in found.strong for atoms in _forms(value)]
        self._forms = forms
        heads: dict[str, list[int]] = {}
        windows: dict[str, list[tuple[int, int]]] = {}
        line_heads: set[str] = set()
        line_firsts: set[str] = set()  # what a piece of a secret after "..." starts with
        line_dotted: set[str] = set()  # the pieces that start with "."
        for index, form in enumerate(forms):
            heads.setdefault(form.text[: form.offsets[_WINDOW]], []).append(index)
            line_heads.add("".join(_json_ascii(a) for a in form.atoms[:_WINDOW]))
            for start in _window_starts(len(form.atoms)):
                window = form.text[form.offsets[start]: form.offsets[start + _WINDOW]]
                windows.setdefault(window, []).append((index, start))
                line_first = _json_ascii(form.atoms[start])
                line_firsts.add(line_first[0])
                if line_first.startswith("."):
                    line_dotted.add("".join(
                        _json_ascii(a) for a in form.atoms[start: start + _WINDOW]))
        self._heads = _by_length(heads)
        self._windows = _by_length(windows)
        self._weak_forms = sorted({f for value in found.weak for f in _weak_forms(value)},
                                  key=len, reverse=True)
        # Pieces after "..." are looked for apart (_after_elisions), with str.find.
        self._leading_dots = max((len(w) - len(w.lstrip(".")) for w in windows), default=0)
        self._text_words = list(heads)  # the text regex is compiled when first needed
        line_weak = sorted({_json_ascii(f) for f in self._weak_forms})
        self._line_re = _compile(
            [_anchored(w) for w in sorted(line_heads)]
            + _after_elision(line_firsts, line_dotted)
            + [_anchored(f, token=True) for f in line_weak])

    # -- text ---------------------------------------------------------------------------------

    @functools.cached_property
    def _text_re(self) -> re.Pattern[str] | None:
        return _compile(_trie(self._text_words) + [_token(f) for f in self._weak_forms])

    def text(self, text: str) -> str:
        """*text* with every secret masked; the same object when there is none."""
        if not self.active or not text:
            return text
        spans: list[tuple[int, int]] = []
        edge = self._from_edge(text, 0)  # a cut: the text starts inside a secret
        if edge:
            spans.append((0, edge))
        if self._windows and "..." in text:
            self._after_elisions(text, spans)
        pattern = self._text_re
        if pattern is not None:
            search, pos = pattern.search, 0
            while (match := search(text, pos)) is not None:
                span = self._resolve(text, match.start())
                if span is None:
                    pos = match.start() + 1
                    continue
                spans.append(span)
                pos = span[1]
        if not spans:
            return text
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out: list[str] = []
        last = 0
        for start, end in merged:
            out += (text[last:start], MASK)
            last = end
        out.append(text[last:])
        return "".join(out)

    def _after_elisions(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Pieces of secrets right after each "..." (a row of dots is one elision: a long row of
        progress dots costs one look, not one per dot)."""
        find, dots = text.find, _re(r"\.+").match
        at = find("...")
        while at >= 0:
            run = dots(text, at)
            run_end = run.end() if run else at + 3
            for start in range(max(at + 3, run_end - self._leading_dots), run_end + 1):
                end = self._from_edge(text, start)
                if end:
                    spans.append((start, end))
                    run_end = end
                    break
            at = find("...", run_end)

    def _resolve(self, text: str, at: int) -> tuple[int, int] | None:
        """What to mask at a candidate position: (start, end), or None."""
        best = 0
        for size, table in self._heads:
            for index in table.get(text[at: at + size], ()):
                end, whole = self._extend(text, at + size, index, _WINDOW)
                if (whole or _right_edge(text, end)) and end > best:
                    best = end
        if best:
            return at, best
        for value in self._weak_forms:
            if text.startswith(value, at) and _clearly_a_value(text, at, at + len(value)):
                return at, at + len(value)
        return None

    def _from_edge(self, text: str, at: int) -> int:
        """After an elision or a cut: the end of a piece of a secret that starts at *at* and
        runs to the secret's end or to another edge; 0 for none."""
        best = 0
        for size, table in self._windows:
            for index, start in table.get(text[at: at + size], ()):
                end, whole = self._extend(text, at + size, index, start + _WINDOW)
                if (whole or _right_edge(text, end)) and end > best:
                    best = end
        return best

    def _extend(self, text: str, at: int, index: int, atom: int) -> tuple[int, bool]:
        """How far the text goes on matching form *index* from its atom *atom*; and whether it
        reached the form's end."""
        form = self._forms[index]
        rest = form.text[form.offsets[atom]:]
        if text.startswith(rest, at):
            return at + len(rest), True
        atoms = form.atoms
        while atom < len(atoms) and text.startswith(atoms[atom], at):
            at += len(atoms[atom])
            atom += 1
        return at, atom == len(atoms)

    # -- event lines --------------------------------------------------------------------------

    def line(self, line: str) -> str:
        """One JSON event line: one search when it holds nothing to hide; on a hit (or a line
        long enough to hold a cut field) each string is redacted as text and the line encoded
        again, so it stays valid JSON whatever was masked."""
        pattern = self._line_re
        if pattern is None:
            return line
        if len(line) < _LONG_LINE and pattern.search(line) is None:
            return line
        try:
            record = json.loads(line)
        except ValueError:  # not JSON (no writer of ours makes such a line)
            return self.text(line)
        cleaned = self.record(record)
        if cleaned is record:
            return line
        return json.dumps(cleaned, separators=(",", ":"), default=str) + "\n"

    def record(self, value: Any) -> Any:
        """A decoded event record (or any JSON value) with its strings redacted, as ``line``
        does to each line: for what is made in memory and written without the event writer
        (the supervisor's own findings). The same object when nothing changed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            items = [self.record(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            pairs = [(self.record(k), self.record(v)) for k, v in value.items()]
            if all(k is a and v is b for (k, v), (a, b) in zip(pairs, value.items(),
                                                               strict=True)):
                return value
            return dict(pairs)
        return value


def _by_length(table: Mapping[str, list[Any]]) -> list[tuple[int, dict[str, list[Any]]]]:
    sizes: dict[int, dict[str, list[Any]]] = {}
    for key, entries in table.items():
        sizes.setdefault(len(key), {})[key] = entries
    return sorted(sizes.items(), reverse=True)


def _right_edge(text: str, at: int) -> bool:
    return at >= len(text) or text.startswith("...", at)


def _clearly_a_value(text: str, start: int, end: int) -> bool:
    """A short or common value at text[start:end] is masked only as a whole token right after
    ``KEY=`` / ``KEY:`` of a secret-looking key, or as a URL's user or password."""
    if start > 0 and _is_word(text[start - 1]) and _is_word(text[start]):
        return False
    if end < len(text) and _is_word(text[end]) and _is_word(text[end - 1]):
        return False
    return _after_secret_key(text, start) or _in_url_credentials(text, start, end)


def _skip_back(text: str, at: int, chars: str, most: int) -> int:
    stop = max(0, at - most)
    while at > stop and text[at - 1] in chars:
        at -= 1
    return at


def _after_secret_key(text: str, at: int) -> bool:
    at = _skip_back(text, at, "\"'\\", 4)
    at = _skip_back(text, at, " \t", 3)
    if at == 0 or text[at - 1] not in "=:":
        return False
    at = _skip_back(text, at - 1, " \t", 3)
    at = _skip_back(text, at, "\"'\\", 4)
    start = at
    while start > 0 and at - start < 80 and (_is_word(text[start - 1])
                                             or text[start - 1] in "-."):
        start -= 1
    return start < at and SECRET_NAME.search(text[start:at]) is not None


def _in_url_credentials(text: str, start: int, end: int) -> bool:
    scheme = text.rfind("://", max(0, start - 300), start)
    if scheme <= 0 or not text[scheme - 1].isalnum():
        return False
    segment = text[scheme + 3: start]
    if _re(_URL_SEGMENT_STOP).search(segment):
        return False
    if not segment:  # the user name
        return text.startswith("@", end) or bool(_re(_URL_PASSWORD_AFTER).match(text, end))
    return segment.count(":") == 1 and segment.endswith(":") and text.startswith("@", end)


# -- the redactor of this process ------------------------------------------------------------

_configured: tuple[str, ...] = ()  # [tool.tiergate] redact, set when the config is read


def use_names(names: Iterable[str]) -> None:
    """The variables the project's config names as secrets (``[tool.tiergate] redact``)."""
    global _configured
    _configured = tuple(sorted(set(names)))


def export_names(env: dict[str, str]) -> dict[str, str]:
    """*env* for a child process, with the configured names added to ``TIERGATE_REDACT`` so that
    the child redacts the same values."""
    names = _names(env.get(REDACT_ENV, "")) | set(_configured)
    if names:
        env[REDACT_ENV] = ",".join(sorted(names))
    return env


def current(environ: Mapping[str, str] | None = None) -> Redactor:
    """The redactor for *environ* (default: this process's environment, as it is now)."""
    if environ is None or environ is os.environ:
        data = getattr(os.environ, "_data", None)
        if isinstance(data, dict):  # its raw bytes: no decoding of every variable per call
            return _raw_redactor(tuple(data.items()), _configured)
    env = os.environ if environ is None else environ
    return _redactor(_relevant(env.items(), _configured), _configured)


@functools.lru_cache(maxsize=8)
def _raw_redactor(items: tuple[tuple[bytes, bytes], ...], names: tuple[str, ...]) -> Redactor:
    pairs = ((os.fsdecode(k), os.fsdecode(v)) for k, v in items)
    return _redactor(_relevant(pairs, names), names)


def _relevant(items: Iterable[tuple[str, str]], names: tuple[str, ...]) -> frozenset[
        tuple[str, str]]:
    """The variables that can hold a secret: a variable set or changed anywhere else (pytest's
    own, the run's) costs this look, not a new redactor."""
    pairs = list(items)
    named = set(names) | {n for k, v in pairs if k == REDACT_ENV for n in _names(v)}
    return frozenset((k, v) for k, v in pairs
                     if k == REDACT_ENV or k in named or "://" in v or is_secret_name(k))


@functools.lru_cache(maxsize=8)
def _redactor(items: frozenset[tuple[str, str]], names: tuple[str, ...]) -> Redactor:
    return Redactor(_find(items, names))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values masked everywhere, longest first."""
    return list(current(environ).values)


def weak_secret_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per variable whose value is too short or too common to mask everywhere (named,
    never shown), so that the user can rotate it."""
    return list(current(environ).warnings)


def redact_secrets(text: str, environ: Mapping[str, str] | None = None) -> str:
    """The secrets of the environment masked (what the event log and pytest's output get)."""
    return current(environ).text(text)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """For a report: the environment's secrets and secrets written inline (``--password=x``,
    ``token: x``, URL passwords) masked."""
    text = current(environ).text(text)
    # A pattern that cannot match is neither compiled nor run: most texts of a report (test
    # names, one-line messages, a summary's heading with its icon) hold no key word and no URL.
    # A text is judged by its lowered words unless it holds one of the four letters that
    # IGNORECASE matches to an ASCII letter (_FOLDS_TO_ASCII): then the patterns run.
    lowered = text.lower()
    if (any(stem in lowered for stem in _WORD_STEMS)
            or (not text.isascii() and any(letter in text for letter in _FOLDS_TO_ASCII))):
        text = _re(_INLINE, re.IGNORECASE).sub(lambda m: m.group("key") + MASK, text)
        text = _re(_OPTION, re.IGNORECASE).sub(lambda m: m.group("key") + MASK, text)
    if "://" not in text or "@" not in text:
        return text
    return _re(_URL_PASSWORD, re.IGNORECASE).sub(lambda m: m.group("head") + MASK, text)


def command_line(words: Iterable[str]) -> str:
    """A process's command line for a report: secrets masked (before the escaping, so a secret
    with a newline still matches), then on one line, as a finding's message must be."""
    return redact(" ".join(words)).replace("\n", "\\n")
