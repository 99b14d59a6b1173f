"""Secrets never leave the machine in a report: values of environment variables whose names look
secret are replaced wherever they appear (dumps, command lines, messages, comments)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|PRIVATE_?KEY|_KEY$|^KEY$|CREDENTIAL|AUTH(?!OR)|COOKIE",
    re.IGNORECASE,
)
MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words ("1", "yes")
# Secrets written inline in a command line or URL: --password=x, token=x, https://user:pw@host
_INLINE = re.compile(
    r"(?P<key>(?:--?|\b)[\w-]*(?:token|secret|password|passwd|api[_-]?key|credential)[\w-]*[=:\s]\s*)"
    r"(?P<value>[^\s&'\"]+)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<value>[^@\s]+)(?=@)", re.I)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values to hide, longest first so a secret that contains another is masked whole."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _INLINE.sub(lambda m: m.group("key") + MASK, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
