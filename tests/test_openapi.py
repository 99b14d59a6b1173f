"""Every request tiergate sends is one GitHub accepts: each is checked against GitHub's REST
description (the operations the client calls, shipped as tests/data/github-openapi-subset.json by
scripts/openapi_subset.py) and against the limits GitHub documents in prose or enforces in bytes,
which the description's ``maxLength`` (characters) does not say.

The requests are the real ones: test_post.py runs with the stand-in API (tests/ghapi.py) writing
every request it receives to a folder, and each is validated here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ghapi import RECORD

from tiergate.github.checks import to_api
from tiergate.github.comment import fit_body
from tiergate.report.annotations import Annotation

REPO = Path(__file__).resolve().parent.parent
SUBSET = json.loads((REPO / "tests" / "data" / "github-openapi-subset.json").read_text("utf-8"))
OPERATIONS: dict[str, dict[str, Any]] = SUBSET["operations"]
CHECK_RUNS = ("checks/create", "checks/update")
ANNOTATION = ("output", "annotations", "*")
# Tests of test_post.py that probe the stand-in with requests GitHub refuses: each of their
# requests must be refused by the description too, every other request must conform.
PROBES = ("test_check_run_stand_in_rejects_what_github_rejects",
          "test_the_stand_in_refuses_annotation_fields_over_their_limits")


@dataclass(frozen=True)
class Limit:
    """A field's documented maximum, measured as GitHub measures it."""

    operations: tuple[str, ...]
    field: tuple[str, ...]  # the path into the body; "*" is every item of an array
    maximum: int
    unit: str  # "bytes" (UTF-8) or "characters" (code points, as Ruby counts them)
    stated: str | None  # the description's words for it, or "maxLength" (None: not in it)
    why: str


LIMITS = (
    Limit(CHECK_RUNS, ("output", "summary"), 65_535, "bytes", "maxLength",
          "GitHub counts bytes: 'summary exceeds a maximum bytesize of 65535' (github/docs#35252)"),
    Limit(CHECK_RUNS, ("output", "text"), 65_535, "bytes", "maxLength",
          "as summary"),
    Limit(CHECK_RUNS, (*ANNOTATION, "title"), 255, "characters",
          "The maximum size is 255 characters.", "the description"),
    Limit(CHECK_RUNS, (*ANNOTATION, "message"), 65_535, "bytes", "The maximum size is 64 KB.",
          "64 KB read as the 65,535 bytes of a TEXT column: the stricter reading"),
    Limit(CHECK_RUNS, (*ANNOTATION, "raw_details"), 65_535, "bytes", "The maximum size is 64 KB.",
          "as message"),
    Limit(("issues/create-comment", "issues/update-comment", "issues/create", "issues/update"),
          ("body",), 65_536, "characters", None,
          "GitHub's 422: 'Body is too long (maximum is 65536 characters)'; not in the description"),
)


# -- the validator ------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """The schema with undeclared properties refused: GitHub ignores a misspelt field, which
    would silently drop what tiergate meant to send."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out and out.get("type") == "object":
        out["additionalProperties"] = False
    return out


def _template(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


def _operation(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for operation_id, op in OPERATIONS.items():
        match = _template(op["path"]).match(path)
        if op["method"] == method and match:
            return operation_id, match.groupdict()
    return None


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A path or query value as the schema's type (they arrive as text)."""
    if schema.get("type") == "integer" and value.lstrip("-").isdigit():
        return int(value)
    return value


def _schema_errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(_strict(schema))
    return [f"{where}{''.join(f'.{p}' for p in error.absolute_path)}: {error.message[:200]}"
            for error in validator.iter_errors(value)]


def _values(body: Any, field: tuple[str, ...]) -> Iterator[Any]:
    if not field:
        yield body
    elif field[0] == "*" and isinstance(body, list):
        for item in body:
            yield from _values(item, field[1:])
    elif isinstance(body, dict) and field[0] in body:
        yield from _values(body[field[0]], field[1:])


def _size(text: str, unit: str) -> int:
    return len(text.encode("utf-8")) if unit == "bytes" else len(text)


def _limit_errors(operation_id: str, body: Any) -> list[str]:
    return [f"{'.'.join(limit.field)}: {_size(value, limit.unit)} {limit.unit} > {limit.maximum}"
            for limit in LIMITS if operation_id in limit.operations
            for value in _values(body, limit.field)
            if isinstance(value, str) and _size(value, limit.unit) > limit.maximum]


def violations(method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
    """What GitHub's REST description refuses in this request (empty: nothing)."""
    found = _operation(method, path)
    if found is None:
        return [f"{method} {path}: no such operation (or not in the subset: see the script)"]
    operation_id, path_values = found
    op = OPERATIONS[operation_id]
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    errors = []
    for name, value in path_values.items():
        errors += _schema_errors(_typed(value, params["path", name]["schema"]),
                                 params["path", name]["schema"], f"path {name}")
    for name, value in query.items():
        param = params.get(("query", name))
        if param is None:
            errors.append(f"query {name}: not a parameter of {operation_id}")
        else:
            errors += _schema_errors(_typed(value, param["schema"]), param["schema"],
                                     f"query {name}")
    schema = op["requestBody"]
    if schema is None and body is not None:
        errors.append(f"{operation_id} takes no body")
    elif schema is not None:
        errors += _schema_errors(body, schema, "body") + _limit_errors(operation_id, body)
    return [f"{operation_id}: {error}" for error in errors]


# -- the real requests --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every request test_post.py's tests send to the stand-in API, with the test that sent it."""
    folder = tmp_path_factory.mktemp("ghapi-requests")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERGATE_", "GITHUB_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_post.py"],
        cwd=REPO, env={**env, RECORD: str(folder)}, capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text("utf-8").splitlines()]


def test_every_request_of_the_post_tests_is_one_github_accepts(
        recorded: list[dict[str, Any]]) -> None:
    refused = {}
    for n, request in enumerate(recorded):
        found = violations(request["method"], request["path"], request["query"], request["body"])
        test = request["test"].rsplit("::", 1)[-1]
        if test in PROBES:
            assert found, f"a probe GitHub refuses passes the description: {request}"[:2000]
        elif found:
            refused[f"{n} {test}"] = found
    assert refused == {}
    # every kind of request the post modes make was seen (PR, push, nightly issue, fork)
    found = [_operation(r["method"], r["path"]) for r in recorded]
    seen = {op[0] for op in found if op}
    assert set(OPERATIONS) - seen <= {"users/get-authenticated"}, set(OPERATIONS) - seen


# -- each limit, and that the validator can fail ------------------------------------------------


def _body(operation_id: str) -> dict[str, Any]:
    """A smallest valid body of the operation."""
    if operation_id in CHECK_RUNS:
        note = {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "failure",
                "message": "m"}
        output = {"title": "t", "summary": "s", "text": "x", "annotations": [note]}
        if operation_id == "checks/update":
            return {"output": output}
        return {"name": "tiergate (fast)", "head_sha": "a" * 40, "status": "completed",
                "conclusion": "failure", "output": output}
    if operation_id == "issues/create":
        return {"title": "t", "body": "b"}
    return {"body": "b"}


def _with(body: dict[str, Any], field: tuple[str, ...], value: str) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    target = out
    for key in field[:-1]:
        target = target[0] if key == "*" else target[key]
    target[field[-1]] = value
    return out


def _request(operation_id: str, body: Any) -> list[str]:
    path = OPERATIONS[operation_id]["path"].replace("{owner}", "o").replace("{repo}", "r")
    return violations(OPERATIONS[operation_id]["method"], re.sub(r"\{\w+\}", "1", path), {}, body)


@pytest.mark.parametrize(("limit", "operation_id"),
                         [(limit, op) for limit in LIMITS for op in limit.operations],
                         ids=lambda v: v if isinstance(v, str) else ".".join(v.field))
def test_a_field_at_its_limit_passes_and_one_unit_more_is_refused(
        limit: Limit, operation_id: str) -> None:
    body = _body(operation_id)
    at_limit = "x" * limit.maximum
    # one unit over: in bytes, one more byte but no more characters; in characters, one more
    wide = "x" * (limit.maximum - 1) + "é" if limit.unit == "bytes" else "x" * (limit.maximum + 1)
    assert _request(operation_id, _with(body, limit.field, at_limit)) == []
    assert _request(operation_id, _with(body, limit.field, wide))
    if limit.unit == "characters":  # counted in characters: wide ones fit as well
        assert _request(operation_id, _with(body, limit.field, "名" * limit.maximum)) == []


@pytest.mark.parametrize("operation_id", CHECK_RUNS)
def test_fifty_annotations_per_request_and_not_one_more(operation_id: str) -> None:
    assert OPERATIONS["checks/create"]["requestBody"]["properties"]["output"]["properties"][
        "annotations"]["maxItems"] == 50
    body = _body(operation_id)
    notes = body["output"]["annotations"]

    def with_notes(count: int) -> dict[str, Any]:
        return {**body, "output": {**body["output"], "annotations": notes * count}}

    assert _request(operation_id, with_notes(50)) == []
    assert _request(operation_id, with_notes(51))


def _schema_of(operation_id: str, field: tuple[str, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = OPERATIONS[operation_id]["requestBody"]
    for key in field:
        schema = schema["items"] if key == "*" else schema["properties"][key]
    return schema


@pytest.mark.parametrize("limit", [lim for lim in LIMITS if lim.stated],
                         ids=lambda lim: ".".join(lim.field))
def test_each_limit_is_the_one_the_description_states(limit: Limit) -> None:
    # Regenerating the subset from a newer description that changed a limit fails here.
    for operation_id in limit.operations:
        schema = _schema_of(operation_id, limit.field)
        if limit.stated == "maxLength":
            assert schema["maxLength"] == limit.maximum
        else:
            assert str(limit.stated) in schema["description"]


def test_undeclared_fields_and_unknown_endpoints_are_refused() -> None:
    assert _request("issues/create-comment", {"body": "b", "bdy": "b"})
    assert _request("checks/create", {"name": "x"})  # head_sha is required
    assert violations("GET", "/repos/o/r/issues", {"per_page": "100", "page": "2"}, None) == []
    assert violations("GET", "/repos/o/r/issues", {"perpage": "100"}, None)
    assert violations("POST", "/repos/o/r/statuses/abc", {}, {"state": "success"})


# -- tiergate's own cuts stay inside the limits -------------------------------------------------


def test_an_annotation_of_any_size_in_any_script_is_within_every_limit() -> None:
    huge = "失敗した 🧨 " * 40_000  # ~600 KB of CJK and emoji
    note = Annotation(level="error", title=huge, message=huge, path="a.py", line=3,
                      fingerprint="f", details=huge)
    body = _body("checks/create")
    body["output"]["annotations"] = [to_api(note)]
    assert _request("checks/create", body) == []


def test_a_comment_of_any_size_is_within_the_body_limit() -> None:
    assert _request("issues/create-comment", {"body": fit_body("名🧨" * 70_000)}) == []


# -- the subset covers what the client calls ----------------------------------------------------

_CALLS = {"get": "GET", "paginate": "GET", "post": "POST", "patch": "PATCH", "delete": "DELETE"}


def _called_paths() -> Iterator[tuple[str, str, str]]:
    """(module, method, path) of each client call with a literal path; placeholders filled in."""
    sources = [*sorted((REPO / "src" / "tiergate" / "github").glob("*.py")),
               REPO / "src" / "tiergate" / "cli" / "post.py"]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _CALLS and node.args):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                path = arg.value
            elif isinstance(arg, ast.JoinedStr):
                path = "".join(
                    part.value if isinstance(part, ast.Constant) else
                    ("o/r" if "repository" in ast.unparse(part.value) else "1")
                    for part in arg.values)
            else:
                continue
            if path.startswith("/"):
                yield source.name, _CALLS[node.func.attr], path


def test_the_subset_has_every_operation_the_client_calls() -> None:
    calls = list(_called_paths())
    assert len(calls) >= 10, calls
    missing = [call for call in calls if _operation(call[1], call[2]) is None]
    assert missing == [], "add the operation to OPERATIONS in scripts/openapi_subset.py"
