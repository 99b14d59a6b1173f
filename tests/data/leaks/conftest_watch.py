# Registers tiergate's LeakWatch and network guard directly (as the tiergate plugin does for a
# tier), writing findings as JSON lines to $LEAK_FINDINGS. Used by tests/test_leaks.py.
import json
import os

from tiergate.config import Tier
from tiergate.leaks import LeakWatch, WatchEveryTest
from tiergate.netguard import install_guard


def pytest_configure(config):
    out = os.environ["LEAK_FINDINGS"]

    def emit(finding):
        line = json.dumps(finding.to_json()) + "\n"
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    thresholds = json.loads(os.environ.get("LEAK_THRESHOLDS", "{}"))
    tier = Tier(name="fast", leaks=os.environ.get("LEAK_POLICY", "fail"),
                network=("127.0.0.1", "127.0.0.2"), leak_thresholds=thresholds)
    watch = LeakWatch(tier=tier, emit=emit)
    config.pluginmanager.register(watch, "tiergate-leaks")
    config.pluginmanager.register(WatchEveryTest(watch), "tiergate-leak-tests")
    install_guard(tier.network, tier_name=tier.name, emit=emit)
