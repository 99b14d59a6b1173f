"""tiergate: tiered pytest runs on CI that cannot hang silently, leak silently, or fail without
saying where and why."""

__version__ = "0.1.0"
