"""``--debug``: the decisions of a run, told with the standard ``logging`` module.

``tiergate run --debug`` (or ``TIERGATE_DEBUG=1`` in the environment of any tiergate process)
makes the supervisor and the plugin (the controller and each xdist worker) log what they decide:
the tier resolved, each pytest attempt and why it ended, hard timeouts, collect timeouts, exit
hangs, the budget, a cancel, resume's selection, the leak watch's confirmation runs, network
refusals. Every process appends its lines to ``debug.log`` in the results dir and writes them to
its stderr; every line passes ``redact.redact`` first, like every other byte a run writes.

The loggers are ``tiergate.<room>`` (``tiergate.supervisor``, ``tiergate.plugin``, ...), under
one ``tiergate`` logger cut off from the root logger: a user's logging setup neither sees our
lines nor decides whether we write them, and pytest's capture (``caplog``, the report's
"Captured log", which it attaches to the root and to every logger that does not propagate)
never holds them, so ``--debug`` changes no test's outcome. Off, that logger's level is above
every level we log at: a call costs one cached level check, and the per-test path has none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from tiergate.protocol import environ, layout, redact
from tiergate.protocol.findings import Culprit

ROOT_LOGGER = "tiergate"
_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"
_OFF = logging.CRITICAL + 1  # above anything we log: the level check says no at once
_ON_VALUES = frozenset({"1", "true", "yes", "on"})


def logger(room: str) -> logging.Logger:
    """The logger of one room of the package, e.g. ``logger("supervisor")``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{room}")


def _cut_off() -> logging.Logger:
    """Our top logger, propagating to nothing: ``propagate`` stays True (pytest skips it) and
    there is no parent to propagate to (the root's handlers never get our records)."""
    top = logging.getLogger(ROOT_LOGGER)
    top.parent = None
    top.propagate = True
    if top.level == logging.NOTSET:  # off until start() says otherwise
        top.setLevel(_OFF)
    return top


_cut_off()


def asked(env: Mapping[str, str] | None = None) -> bool:
    """Whether *env* (default: this process's environment) asks for the debug log."""
    value = (os.environ if env is None else env).get(environ.DEBUG, "")
    return value.strip().lower() in _ON_VALUES


class _Redacting(logging.Formatter):
    """The whole formatted line redacted: arguments, exception text and all."""

    def format(self, record: logging.LogRecord) -> str:
        return redact.redact(super().format(record))


def start(results_dir: Path, *, stderr_fd: int = 2) -> bool:
    """Set up this process's debug log when the environment asks for it: lines to *stderr_fd*
    (duplicated now: pytest later captures fd 2 around each test, and our lines are not the
    test's output) and appended to ``debug.log`` in *results_dir*, which must exist and be
    claimed already (claiming clears it). Off, our loggers are silenced. Returns whether on."""
    root = _cut_off()
    stop()
    if not asked():
        root.setLevel(_OFF)
        return False
    formatter = _Redacting(_FORMAT)
    stream = os.fdopen(os.dup(stderr_fd), "w", buffering=1, encoding="utf-8",
                       errors="backslashreplace")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(stream),
        logging.FileHandler(results_dir / layout.DEBUG_LOG_FILE, encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_ours)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return True


def _ours(record: logging.LogRecord) -> bool:
    """A filter that lets every line through: it marks the handlers ``start`` installed, so a
    second start (a nested or in-process run) replaces them instead of doubling every line."""
    return True


def stop() -> None:
    """Close the handlers ``start`` installed (the end of an in-process run)."""
    root = logging.getLogger(ROOT_LOGGER)
    for handler in list(root.handlers):
        if _ours in handler.filters:
            root.removeHandler(handler)
            handler.close()
            if type(handler) is logging.StreamHandler:  # our dup of stderr: close() keeps it
                handler.stream.close()
    root.setLevel(_OFF)


def where(culprit: Culprit | None) -> str:
    """A dump's culprit as one phrase of a line: ``function (path:line)``."""
    if culprit is None:
        return "no culprit found"
    return f"{culprit.function or '?'} ({culprit.path}:{culprit.line})"
