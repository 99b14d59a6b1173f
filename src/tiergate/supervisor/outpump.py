"""pytest's stdout and stderr under the supervisor: read from pipes, redacted, passed on to the
supervisor's own stdout and stderr, so the step log of a CI job never shows a secret.

No threads: the supervisor's loop waits on the pipes with ``select`` instead of sleeping
(:meth:`OutputPump.wait`). What is read goes out at once, line by line; only an incomplete last
line is held back, until its newline comes or for at most ``HOLD_SECONDS`` (a progress line of
dots still shows while it grows). Each piece is redacted as one text, whose edges count as cuts:
a secret split by a hold is masked on both sides as long as each side has 8 characters or more.

``TIERGATE_REDACT_OUTPUT=0`` turns it off: pytest then writes to the supervisor's stdout and
stderr directly, as it did before.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Mapping

from tiergate.protocol import redact
from tiergate.protocol.environ import REDACT_OUTPUT as SWITCH_ENV

HOLD_SECONDS = 0.2
# After a read, the pipes fill this long before the next one: pytest writes a dot per test, and a
# wake-up per dot cost the supervisor as much per test as the plugin costs pytest. The step log
# shows output at most this much later; the 1 MiB pipe holds what comes meanwhile.
GATHER_SECONDS = 0.02
_READ = 1 << 16
_MOST_PER_WAKE = 1 << 22  # read at most this much per stream before the loop gets its turn
_PIPE_SIZE = 1 << 20  # room for pytest's output while the supervisor is busy (a tree dump)
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ on Linux


def wait_for(fds: list[int], seconds: float) -> bool:
    """Sleep *seconds*, or until one of *fds* is readable (then True)."""
    if seconds <= 0:
        return False
    if not fds:
        time.sleep(seconds)
        return False
    return bool(select.select(fds, [], [], seconds)[0])


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(SWITCH_ENV, "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


class _Stream:
    def __init__(self, source: int, target: int) -> None:
        self.source = source
        self.target = target
        self.held = b""  # an incomplete last line
        self.held_since = 0.0
        self.open = True
        self.broken = False  # the target is gone (a closed pipe): drop, keep draining
        self.line_open = False  # what went out last did not end its line (pytest's dots)

    def read_available(self, pump: OutputPump) -> None:
        """Everything the pipe holds now (non-blocking), passed on; at EOF the stream closes."""
        got = 0
        while got < _MOST_PER_WAKE:
            try:
                chunk = os.read(self.source, _READ)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.finish(pump)
                return
            got += len(chunk)
            self.take(pump, chunk)

    def take(self, pump: OutputPump, chunk: bytes) -> None:
        data = self.held + chunk if self.held else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            self.send(pump, data[:cut])
        rest = data[cut:]
        if rest and (cut or not self.held):  # a new incomplete line: its wait starts now
            self.held_since = time.monotonic()
        self.held = rest
        if len(rest) >= _READ:  # a very long line without a newline: out it goes, cut
            self.release(pump)

    def release(self, pump: OutputPump) -> None:
        held, self.held = self.held, b""
        if held:
            self.send(pump, held)

    def finish(self, pump: OutputPump) -> None:
        if not self.open:
            return
        self.open = False
        self.release(pump)
        with contextlib.suppress(OSError):
            os.close(self.source)

    def send(self, pump: OutputPump, data: bytes) -> None:
        if self.broken:
            return
        data = pump.clean(data)
        if data:
            self.line_open = not data.endswith(b"\n")
        while data:
            try:
                written = os.write(self.target, data)
            except BlockingIOError:  # our own stdout is non-blocking and full: wait for room
                select.select([], [self.target], [], 1.0)
                continue
            except OSError:  # a closed stdout (EPIPE) or a dead terminal: keep pytest going
                self.broken = True
                return
            data = data[written:]


class OutputPump:
    """Pipes for pytest's stdout and stderr, pumped to *stdout* and *stderr* (file
    descriptors, default the supervisor's own 1 and 2) through the redactor of this
    environment."""

    def __init__(self, stdout: int = 1, stderr: int = 2) -> None:
        self._targets = (stdout, stderr)
        self._redactor = redact.current()
        self._streams: list[_Stream] = []
        self.child_fds: tuple[int, int] | None = None

    def open(self) -> tuple[int, int]:
        """The write ends for the child's stdout and stderr (the caller closes them once the
        child has them)."""
        ends = []
        for target in self._targets:
            read_end, write_end = os.pipe()
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(read_end, _F_SETPIPE_SZ, _PIPE_SIZE)
            os.set_blocking(read_end, False)
            self._streams.append(_Stream(read_end, target))
            ends.append(write_end)
        self.child_fds = (ends[0], ends[1])
        return self.child_fds

    def started(self) -> None:
        """The child has its ends: ours go, so that the pipes end when the child's tree ends."""
        for fd in self.child_fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_fds = None

    def clean(self, data: bytes) -> bytes:
        if not self._redactor.active:
            return data
        text = data.decode("utf-8", "surrogateescape")
        cleaned = self._redactor.text(text)
        return data if cleaned is text else cleaned.encode("utf-8", "surrogateescape")

    def break_line(self) -> str:
        """``"\\n"`` when pytest's output left a line open (a supervisor's line must not end up
        in the middle of pytest's dots), else ``""``; either way the next line starts anew."""
        open_line = any(s.line_open for s in self._streams)
        for stream in self._streams:
            stream.line_open = False
        return "\n" if open_line else ""

    def wait(self, seconds: float, until: int | None = None) -> None:
        """Pump for *seconds* (instead of sleeping them): output goes on as it comes, and an
        incomplete line goes out once it has waited ``HOLD_SECONDS``. Returns early when
        *until* (a descriptor: pytest's pidfd) becomes readable, so the end of pytest is seen
        when it happens rather than at the next poll."""
        deadline = time.monotonic() + seconds
        stop = [until] if until is not None else []
        while True:
            now = time.monotonic()
            for stream in self._streams:
                if stream.held and now - stream.held_since >= HOLD_SECONDS:
                    stream.release(self)
            open_streams = [s for s in self._streams if s.open]
            left = deadline - now
            if left <= 0:
                return
            if not open_streams:
                wait_for(stop, left)
                return
            holds = [s.held_since + HOLD_SECONDS - now for s in open_streams if s.held]
            timeout = max(0.0, min([left, *holds]))
            try:
                ready, _, _ = select.select([s.source for s in open_streams] + stop, [], [],
                                            timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                continue
            for stream in open_streams:
                if stream.source in ready:
                    stream.read_available(self)
            if until is not None and until in ready:
                return
            if ready and wait_for(stop, min(GATHER_SECONDS, deadline - time.monotonic())):
                return

    def close(self) -> None:
        """pytest is gone: what its pipes still hold is passed on, without waiting for anything
        that still holds them open (a leftover daemon), and the pipes are closed."""
        self.started()
        for stream in self._streams:
            if stream.open:
                stream.read_available(self)
            stream.finish(self)
