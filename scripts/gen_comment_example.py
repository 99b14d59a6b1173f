"""Rewrite the example comment in docs/pr-comment-example.md (everything from the tier's hidden
marker on) with the body `tiergate post` writes today for a run of the example's fast tier:

    tiergate run --tier fast --project examples/startup-service --results-dir /tmp/ex
    python scripts/gen_comment_example.py /tmp/ex

tests/test_comment_layout.py fails when the doc drifts from what the builder produces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "pr-comment-example.md"
START = "<!-- tiergate:tier=fast -->"


def replace_example(doc: str, comment: str) -> str:
    return doc[: doc.index(START)] + comment


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: gen_comment_example.py RESULTS_DIR (of the example's fast tier)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO / "scripts"))
    from render_comment import comment_of

    results = Path(argv[0]).resolve()
    os.chdir(REPO / "examples" / "startup-service")  # the action's working-directory
    os.environ["GITHUB_WORKSPACE"] = str(REPO)
    DOC.write_text(replace_example(DOC.read_text(encoding="utf-8"), comment_of(results)),
                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
