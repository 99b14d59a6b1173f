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
never holds them, so ``--debug`` changes no test's outcome. Off, a call costs one check of a
flag (the per-test path has none), and ``logging`` is not even imported: the supervisor imports
this before it starts pytest, and every millisecond there is one the run waits for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiergate.protocol import environ, layout, redact

if TYPE_CHECKING:
    import logging

    from tiergate.protocol.findings import Culprit

ROOT_LOGGER = "tiergate"
_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"
_ON_VALUES = frozenset({"1", "true", "yes", "on"})
_on = False  # start() set the log up in this process


class Room:
    """The logger of one room of the package, ``tiergate.<room>``: its lines go to the standard
    ``logging`` module only while the debug log is on."""

    def __init__(self, name: str) -> None:
        self.name = name

    def info(self, message: str, *args: Any) -> None:
        if _on:
            import logging

            logging.getLogger(self.name).info(message, *args)


def logger(room: str) -> Room:
    """The logger of one room of the package, e.g. ``logger("supervisor")``."""
    return Room(f"{ROOT_LOGGER}.{room}")


def _cut_off() -> logging.Logger:
    """Our top logger, propagating to nothing: ``propagate`` stays True (pytest skips it) and
    there is no parent to propagate to (the root's handlers never get our records)."""
    import logging

    top = logging.getLogger(ROOT_LOGGER)
    top.parent = None
    top.propagate = True
    return top


def asked(env: Mapping[str, str] | None = None) -> bool:
    """Whether *env* (default: this process's environment) asks for the debug log."""
    value = (os.environ if env is None else env).get(environ.DEBUG, "")
    return value.strip().lower() in _ON_VALUES


def start(results_dir: Path, *, stderr_fd: int = 2) -> bool:
    """Set up this process's debug log when the environment asks for it: lines to *stderr_fd*
    (duplicated now: pytest later captures fd 2 around each test, and our lines are not the
    test's output) and appended to ``debug.log`` in *results_dir*, which must exist and be
    claimed already (claiming clears it). Off, our loggers are silenced. Returns whether on."""
    global _on
    stop()
    if not asked():
        return False
    import logging

    class Redacting(logging.Formatter):
        """The whole formatted line redacted: arguments, exception text and all."""

        def format(self, record: logging.LogRecord) -> str:
            return redact.redact(super().format(record))

    root = _cut_off()
    formatter = Redacting(_FORMAT)
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
    _on = True
    return True


def _ours(record: logging.LogRecord) -> bool:
    """A filter that lets every line through: it marks the handlers ``start`` installed, so a
    second start (a nested or in-process run) replaces them instead of doubling every line."""
    return True


def stop() -> None:
    """Close the handlers ``start`` installed (the end of an in-process run)."""
    global _on
    if not _on:
        return
    _on = False
    import logging

    root = logging.getLogger(ROOT_LOGGER)
    for handler in list(root.handlers):
        if _ours in handler.filters:
            root.removeHandler(handler)
            handler.close()
            if type(handler) is logging.StreamHandler:  # our dup of stderr: close() keeps it
                handler.stream.close()


def where(culprit: Culprit | None) -> str:
    """A dump's culprit as one phrase of a line: ``function (path:line)``."""
    if culprit is None:
        return "no culprit found"
    return f"{culprit.function or '?'} ({culprit.path}:{culprit.line})"
