"""tiergate's start-up hook, run by every Python process started under a tiergate run.

``tiergate.child.boot_env`` puts this directory first on PYTHONPATH, so ``site`` imports this file
in every Python process of the run however it was started (subprocess, multiprocessing
spawn/forkserver, a shell script that runs python); forked children are covered by an at-fork
hook. Like coverage.py's ``process_startup`` it is switched on by an environment variable
(``TIERGATE_RUN_DIR``) and does nothing else without it, except handing over to the user's own
``sitecustomize``, which this file would otherwise hide.

What it does: registers a faulthandler dump of all threads on a dedicated signal, writing into
``$TIERGATE_RUN_DIR/stacks/<pid>.txt``, chained to a Python-level handler that appends the tasks of
every running asyncio event loop (``_tiergate_tasks``): faulthandler's C handler answers even
while C code holds the GIL, but only Python code can read a coroutine's await chain. The file's
first line records the pid and the process start time, so the dumper can tell this process from a
later one that reuses the pid; the dumper signals only processes whose file matches AND whose
kernel signal mask shows the handler (an unregistered process would be killed by the signal's
default action).

Stdlib only, no ``signal`` import (it pulls in ``enum``): this runs in every process and must cost
next to nothing.
"""

import _signal  # type: ignore[import-not-found]  # no stubs; cheaper than signal
import os
import sys

# Keep in sync with tiergate.child.DUMP_SIGNAL (a test checks). Not SIGUSR1/2: users take those.
DUMP_SIGNAL = _signal.SIGRTMIN + 3
# Copies of tiergate.protocol.environ's and .layout's names (this file cannot import tiergate);
# tests/test_protocol_names.py checks that they are equal.
_RUN_DIR_ENV = "TIERGATE_RUN_DIR"
_NETWORK_ENV = "TIERGATE_NETWORK"
_STACKS_DIR = "stacks"
_HEADER = "tiergate-stacks pid=%d start=%d signal=%d\n"

_stacks_fd = -1
_chained = False  # faulthandler hands the signal on to _on_dump_signal


def _on_dump_signal(signum: int, frame: object) -> None:
    """The Python half of a dump, after faulthandler wrote the threads: asyncio's tasks, and who
    waits for whom (a deadlock's cycle). It runs in the main thread at its next bytecode (a
    thread asleep in epoll or a lock is woken by the signal); a process with one thread and no
    asyncio does nothing, so other processes pay nothing."""
    current = sys._current_frames()
    if _stacks_fd < 0 or ("asyncio" not in sys.modules and len(current) < 2):
        return
    bootstrap = sys.modules.get("_frozen_importlib")
    table = getattr(bootstrap, "_blocking_on", None)
    me = _thread_ident()
    # Before Python 3.12 an import of ours overwrites, then deletes, this thread's entry: the
    # import it interrupted would raise KeyError when it ends. Put it back.
    before = table.get(me) if type(table) is dict else None
    try:
        waits = dict(table.items()) if table is not None else {}
        import _tiergate_waits  # type: ignore[import-not-found]  # beside this file, on sys.path

        text = _tiergate_waits.describe(current, waits)
        if "asyncio" in sys.modules:
            import _tiergate_tasks  # type: ignore[import-not-found]

            text += _tiergate_tasks.describe(current)
        if text:
            os.write(_stacks_fd, text.encode("utf-8", "replace"))
    except Exception:
        pass  # a dump must never raise into the code it interrupted
    finally:
        if before is not None and table is not None:
            table[me] = before


def _thread_ident() -> int:
    import _thread  # built in: no import lock, no file

    return int(_thread.get_ident())


def _start_ticks() -> int:
    """This process's start time in clock ticks since boot (field 22 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _register() -> None:
    global _stacks_fd
    run_dir = os.environ.get(_RUN_DIR_ENV)
    if not run_dir:
        return
    import faulthandler

    directory = os.path.join(run_dir, _STACKS_DIR)
    pid = os.getpid()
    final = os.path.join(directory, f"{pid}.txt")
    staging = final + ".new"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(staging, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(staging, flags, 0o644)
    os.write(fd, (_HEADER % (pid, _start_ticks(), DUMP_SIGNAL)).encode())
    _chain_to_python_handler()
    faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True, chain=_chained)
    # The file appears under its final name only once the handler writes into it: a forked child
    # inherits its parent's handler (and file) until this point, and must not be signalled before.
    os.rename(staging, final)
    previous, _stacks_fd = _stacks_fd, fd
    if previous >= 0:
        os.close(previous)  # after a fork: this process's copy of the parent's descriptor


def _chain_to_python_handler() -> None:
    """Install _on_dump_signal under faulthandler, once: faulthandler keeps the handler it found
    at its first registration and re-raises the signal to it. Chaining only onto our own handler:
    chained onto the default action, the signal would kill the process after the dump."""
    global _chained
    if _chained:
        return  # a forked child keeps its parent's handlers; faulthandler still chains to ours
    try:
        _signal.signal(DUMP_SIGNAL, _on_dump_signal)
    except (ValueError, OSError):
        return  # not the main thread: the threads' dump alone
    _chained = True


def _register_quietly() -> None:
    try:
        _register()
    except Exception:
        pass  # the hook must never break the user's process


def _chain_to_next_sitecustomize() -> None:
    """Import the ``sitecustomize`` this one shadows, as ddtrace's bootstrap does."""
    here = os.path.dirname(os.path.abspath(__file__))
    positions = [i for i, entry in enumerate(sys.path) if os.path.abspath(entry or ".") == here]
    if not positions:
        return
    ours = sys.modules.get("sitecustomize")
    for i in reversed(positions):
        del sys.path[i]
    sys.modules.pop("sitecustomize", None)
    try:
        __import__("sitecustomize")  # the next one on sys.path, if any
    except Exception as exc:  # report it as site.py does, and go on
        if not (isinstance(exc, ImportError) and exc.name == "sitecustomize"):
            sys.stderr.write("Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                             f"{type(exc).__name__}: {exc}\n")
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    finally:
        # Back in place (once) so later imports from this directory (the network guard) work.
        sys.path.insert(positions[0], here)


_register_quietly()
if os.environ.get(_RUN_DIR_ENV):
    os.register_at_fork(after_in_child=_register_quietly)
_chain_to_next_sitecustomize()

# --- extension point: the network guard (tiergate.child.site._tiergate_netguard) ---------------
if os.environ.get(_NETWORK_ENV):
    try:
        __import__("_tiergate_netguard").install_from_env()
    except ImportError:
        pass
