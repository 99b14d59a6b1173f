"""Regenerate tests/data/github-openapi-subset.json: the operations of GitHub's REST description
that tiergate's client calls, each with its parameters and request-body schema, as test data for
tests/test_openapi.py.

    python scripts/openapi_subset.py                     # npm pack @octokit/openapi@VERSION
    python scripts/openapi_subset.py --tarball octokit-openapi-23.0.2.tgz

The description is GitHub's own (github/rest-api-description), as published on npm by octokit.
Only what the tests need is kept (a few KB out of 13 MB): ``$ref`` resolved, and OpenAPI 3.0's
``nullable`` turned into JSON Schema (``"type": [T, "null"]``) so that ``jsonschema`` reads it.
Add an operation here when the client starts calling a new endpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "github-openapi-subset.json"

# operationId -> the tiergate module that calls it (github/ and cli/post.py)
OPERATIONS = {
    "checks/create": "github/checks.py",
    "checks/update": "github/checks.py",
    "checks/list-for-ref": "github/known.py",
    "issues/list-comments": "github/comment.py",
    "issues/create-comment": "github/comment.py, github/issue.py",
    "issues/update-comment": "github/comment.py",
    "issues/delete-comment": "github/comment.py",
    "issues/list-for-repo": "github/issue.py",
    "issues/create": "github/issue.py",
    "issues/update": "github/issue.py",
    "pulls/list": "cli/post.py",
    "users/get-authenticated": "github/comment.py",
}


def _tarball(path: Path | None, workdir: Path) -> Path:
    if path is not None:
        return path
    subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    return next(workdir.glob("*.tgz"))


def _description(tarball: Path) -> dict[str, Any]:
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise SystemExit(f"{tarball}: no {MEMBER}")
        loaded: dict[str, Any] = json.load(member)
        return loaded


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """*node* with every ``$ref`` inlined and ``nullable`` made JSON Schema."""
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(target, root)
    out = {key: _resolve(value, root) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "oneOf" in out:
            out["oneOf"] = [*out["oneOf"], {"type": "null"}]
    return out


def _operation(description: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for path, methods in description["paths"].items():
        for method, op in methods.items():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
                parameters = [_resolve(p, description) for p in op.get("parameters", [])]
                return {
                    "method": method.upper(),
                    "path": path,
                    "parameters": [{k: p[k] for k in ("name", "in", "required", "schema") if k in p}
                                   for p in parameters],
                    "requestBody": _resolve(body["schema"], description) if body else None,
                }
    raise SystemExit(f"{operation_id}: not in the description")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help=f"a local `npm pack {PACKAGE}` tarball")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        description = _description(_tarball(args.tarball, Path(workdir)))
    subset = {
        "source": f"npm {PACKAGE}@{VERSION}, {MEMBER.removeprefix('package/')}",
        "description_version": description["info"]["version"],
        "regenerate": "python scripts/openapi_subset.py",
        "operations": {oid: {"called_by": caller, **_operation(description, oid)}
                       for oid, caller in OPERATIONS.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(subset['operations'])} operations from {subset['source']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
