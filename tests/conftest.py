from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ghapi import GhApi


@pytest.fixture
def ghapi() -> Iterator[GhApi]:
    """A local stand-in for the GitHub REST API (tests/ghapi.py) on 127.0.0.1, stopped after."""
    api = GhApi().start()
    try:
        yield api
    finally:
        api.stop()
