"""Posting to GitHub: the REST client (the only module that does network I/O), the event context,
and one module per thing posted (sticky comment, check run, nightly issue, known findings)."""
