"""With the network guard and the leak watch both on, a test process has one audit hook: the
leak watch's dirty marks ride on the guard's hook (each Python hook is a call on every audited
event, about twenty per test, and cannot be removed). Each still works on its own terms."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_CODE = """
import json, socket, sys
added = []
_add = sys.addaudithook
sys.addaudithook = lambda hook: (added.append(hook), _add(hook))[1]
from tiergate.plugin import netguard
from tiergate.plugin.leaks import audit
if GUARD:
    netguard.install_guard("loopback", tier_name="fast")
audit.watch({"socket.__new__": ("fds",)})
audit.DIRTY.clear()
sock = socket.socket()  # a loopback socket: allowed, and marks the fd probe
sock.close()
refused = False
probe = socket.socket()
try:  # the audit event a connect raises, raised by hand: nothing is sent, whatever the guard does
    sys.audit("socket.connect", probe, ("192.0.2.1", 9))
except OSError:
    refused = True
probe.close()
print(json.dumps({"hooks": len(added), "dirty": sorted(audit.DIRTY), "refused": refused}))
"""


def _run(guard: bool) -> dict[str, object]:
    code = textwrap.dedent(_CODE).replace("GUARD", repr(guard))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_guard_and_leak_watch_share_one_hook() -> None:
    out = _run(guard=True)
    assert out == {"hooks": 1, "dirty": ["fds"], "refused": True}


def test_the_leak_watch_alone_has_its_own_hook() -> None:
    out = _run(guard=False)
    assert out["hooks"] == 1 and out["dirty"] == ["fds"]
