"""How the service starts its own modules as child processes (``python -m startup_service.X``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The folder that holds the package, so children import the same code from a plain checkout too.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def module_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run ``python -m <module> <args>`` with this interpreter."""
    env = dict(os.environ)
    paths = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return [sys.executable, "-m", module, *args], env
