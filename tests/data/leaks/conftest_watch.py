# Registers tiergate's LeakWatch and network guard directly (as the tiergate plugin does for a
# tier), writing findings as JSON lines to $LEAK_FINDINGS and its confirmation runs (leak-check
# events) next to it, in checks.jsonl. Used by tests/test_leaks.py.
import json
import os

from tiergate.settings.config import Tier
from tiergate.plugin.leaks import LeakWatch
from tiergate.plugin.netguard import install_guard
from tiergate.plugin.pertest import PerTest


def _append(path, record):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def pytest_configure(config):
    out = os.environ["LEAK_FINDINGS"]
    checks = os.path.join(os.path.dirname(out), "checks.jsonl")

    def emit(finding):
        _append(out, finding.to_json())

    def record(fields):
        _append(checks, fields)

    thresholds = json.loads(os.environ.get("LEAK_THRESHOLDS", "{}"))
    tier = Tier(name="fast", leaks=os.environ.get("LEAK_POLICY", "fail"),
                network=("127.0.0.1", "127.0.0.2"), leak_thresholds=thresholds)
    watch = LeakWatch(tier=tier, emit=emit, record=record)
    config.pluginmanager.register(watch, "tiergate-leaks")
    per_test = PerTest()  # the per-test pipeline, with the watch as its only step
    per_test.add(watch)
    config.pluginmanager.register(per_test, "tiergate-per-test")
    install_guard(tier.network, tier_name=tier.name, emit=emit)
