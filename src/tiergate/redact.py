"""Secrets never leave the machine in a report: values of environment variables whose names look
secret are replaced wherever they appear (dumps, command lines, messages, comments)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|PRIVATE_?KEY|_KEY$|^KEY$|CREDENTIAL|AUTH(?!OR)|COOKIE",
    re.IGNORECASE,
)
MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words ("1", "yes")
# Secrets written inline: --password=x, token: x, --api-key x, https://user:pw@host. Every
# quantifier is bounded so the scan stays linear on 64 KiB failure texts.
_WORD = r"(?:token|secret|password|passwd|passphrase|api[_-]?key|credential)"
_INLINE = re.compile(
    rf"(?P<key>{_WORD}[\w-]{{0,40}}(?:=|:\s{{0,3}}))(?P<value>[^\s&'\"]+)", re.IGNORECASE
)
_OPTION = re.compile(
    rf"(?P<key>(?<![\w-])--?[\w-]{{0,40}}?{_WORD}[\w-]{{0,40}}\s+)(?P<value>[^\s-][^\s]*)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]{0,30}://[^:/@\s]{1,200}:)(?P<value>[^@\s]{1,200})(?=@)", re.I
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values to hide, longest first so a secret that contains another is masked whole."""
    if environ is None or environ is os.environ:
        data = getattr(os.environ, "_data", None)
        if isinstance(data, dict):  # its raw bytes: no decoding of every variable per call
            return list(_secret_raw_values(tuple(data.items())))
    env = os.environ if environ is None else environ
    return list(_secret_values(frozenset(env.items())))


@functools.lru_cache(maxsize=8)
def _secret_raw_values(items: tuple[tuple[bytes, bytes], ...]) -> tuple[str, ...]:
    return _secret_values(frozenset((os.fsdecode(k), os.fsdecode(v)) for k, v in items))


@functools.lru_cache(maxsize=8)
def _secret_values(items: frozenset[tuple[str, str]]) -> tuple[str, ...]:
    values = {v for k, v in items if SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _INLINE.sub(lambda m: m.group("key") + MASK, text)
    text = _OPTION.sub(lambda m: m.group("key") + MASK, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def command_line(words: Iterable[str]) -> str:
    """A process's command line for a report: secrets masked (before the escaping, so a secret
    with a newline still matches), then on one line, as a finding's message must be."""
    return redact(" ".join(words)).replace("\n", "\\n")
