"""The ``TIERGATE_*`` environment variables of a run: each name spelled here once.

They are how a run reaches processes it does not talk to: pytest's children, their children,
anything started by a test. Each constant says who sets it, who reads it and what it means.

``child/`` cannot import this module (its start-up hook runs in interpreters that may not have
tiergate installed), so it keeps its own copies of the names it needs;
``tests/test_protocol_names.py`` checks that they equal these.

The ``TIERGATE_*`` variables in ``action.yml`` are the composite action's inputs handed to its
own shell steps; no Python process reads them.
"""

from __future__ import annotations

PREFIX = "TIERGATE_"  # every name below starts with it (the last will drops them all)

# Set by child.boot_env (supervisor, plugin under `pytest --tier`, audit-imports) to the run's
# private dir. Read by child/site/sitecustomize.py (switches the dump hook on) and by
# supervisor/lastwill.py (a process whose environment carries it is one the run started).
RUN_DIR = "TIERGATE_RUN_DIR"

# Set by the supervisor and the plugin to the event log writers append to. Read by
# child/site/_tiergate_netguard.py: a child records its refused network use there.
EVENTS = "TIERGATE_EVENTS"

# Set by the supervisor and plugin/netguard.guard_env to the tier's name. Read by
# child/site/_tiergate_netguard.py, which names the tier in a refusal's message.
TIER = "TIERGATE_TIER"

# Set by plugin/netguard.guard_env to the tier's network policy (any, loopback, none or a JSON
# list). Read by child/site/sitecustomize.py and _tiergate_netguard.py: guard this child too.
NETWORK = "TIERGATE_NETWORK"

# Set by plugin/netguard.install_guard: JSON {name: [address, ...]}, the allow-list's names as
# the test process resolved them. Read by _tiergate_netguard.py, so children never look them up.
NETWORK_ADDRESSES = "TIERGATE_NETWORK_ADDRESSES"

# Set by plugin/netguard.override to "marker" while a test's @pytest.mark.network policy is in
# TIERGATE_NETWORK instead of the tier's. Read by _tiergate_netguard.py: its refusals say so.
NETWORK_FROM = "TIERGATE_NETWORK_FROM"

# Set by the user, and by protocol/redact.export_names for the supervisor's children: more
# variable names (comma-separated) whose values are secrets. Read by protocol/redact.py.
REDACT = "TIERGATE_REDACT"

# Set by the user: "0" lets pytest's output through unredacted (the supervisor then does not
# pump it). Read by supervisor/outpump.py.
REDACT_OUTPUT = "TIERGATE_REDACT_OUTPUT"

# Set by the user, and by `tiergate run --debug` for the run's processes: "1" makes the
# supervisor and the plugin log their decisions (stderr and debug.log). Read by
# protocol/debuglog.py.
DEBUG = "TIERGATE_DEBUG"

# Set by the user's workflow for `tiergate post`: the deployment environment the run tested (a
# step has no variable naming its job's environment). Read by github/context.py.
ENVIRONMENT = "TIERGATE_ENVIRONMENT"

# Set by the user's workflow on the merge step of a sharded tier (the nightly template): how many
# shards must report. Read by cli/report.py, as the default of --expect-shards.
EXPECT_SHARDS = "TIERGATE_EXPECT_SHARDS"

# Every variable a run sets for its processes or reads from the user.
ALL = (RUN_DIR, EVENTS, TIER, NETWORK, NETWORK_ADDRESSES, NETWORK_FROM, REDACT, REDACT_OUTPUT,
       DEBUG, ENVIRONMENT, EXPECT_SHARDS)
