"""A local stand-in for the GitHub REST API, on 127.0.0.1, that behaves like the real one where
tiergate depends on it: issue comments (paginated with Link headers; 201 / 200 / 204), check runs
(422 past 50 annotations, 65,535 bytes of output text or an annotation field
over its limit; a PATCH replaces the output but appends annotations), issues with labels, /user, 403
"Resource not accessible by integration" for a fork's token, and 502s on demand.

In tests: the ``ghapi`` fixture in conftest.py. Standalone (for act end-to-end runs):

    python tests/ghapi.py --port 0 --state-file /tmp/ghapi.json [--fork] [--fail-writes N]

prints the port on the first line of stdout, serves until SIGTERM/SIGINT, and rewrites the state
file (everything created plus every request seen) after each request. Point GITHUB_API_URL at
http://127.0.0.1:PORT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TEXT_LIMIT = 65_535
ANNOTATION_TEXT_BYTES = 64 * 1024 - 1  # "The maximum size is 64 KB": the stricter reading
TITLE_LIMIT = 255
COMMENT_LIMIT = 65_536
ANNOTATIONS_PER_REQUEST = 50
NOT_ACCESSIBLE = "Resource not accessible by integration"
RECORD = "GHAPI_RECORD"  # a folder: every request is also written there (see _record)


@dataclass
class Config:
    fork: bool = False  # every write answers 403, as with a fork PR's read-only token
    fail_writes: int = 0  # the first N writes answer 502
    page_size: int = 30  # default per_page, as GitHub's
    token_user: str | None = None  # a user token's login; None: GITHUB_TOKEN (GET /user is 403)


@dataclass
class State:
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)  # seeded by tests
    requests: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class GhApi:
    def __init__(self, config: Config | None = None, state_file: Path | None = None) -> None:
        self.config = config or Config()
        self.state = State()
        self.state_file = state_file
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> GhApi:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="ghapi")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- helpers for tests ---------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.state.requests if r["method"] != "GET"]

    def add_comment(self, number: int, body: str, login: str = "github-actions[bot]",
                    type_: str = "Bot") -> dict[str, Any]:
        with self.lock:
            return self._new_comment(number, body, login, type_)

    def add_check_run(self, sha: str, name: str, text: str) -> dict[str, Any]:
        with self.lock:
            run_id = self.state.new_id()
            run = {"id": run_id, "name": name, "head_sha": sha, "status": "completed",
                   "output": {"title": "", "summary": "", "text": text, "annotations": []}}
            self.state.check_runs[run_id] = run
            return run

    def dump(self) -> dict[str, Any]:
        return {"port": self.port, "comments": list(self.state.comments.values()),
                "issues": list(self.state.issues.values()),
                "check_runs": list(self.state.check_runs.values()),
                "requests": self.state.requests}

    def _new_comment(self, number: int, body: str, login: str, type_: str) -> dict[str, Any]:
        cid = self.state.new_id()
        comment = {"id": cid, "issue_number": number, "body": body,
                   "user": {"login": login, "type": type_},
                   "html_url": f"https://github.invalid/c/{cid}"}
        self.state.comments[cid] = comment
        return comment

    def _identity(self) -> dict[str, str]:
        if self.config.token_user:
            return {"login": self.config.token_user, "type": "User"}
        return {"login": "github-actions[bot]", "type": "Bot"}

    # -- routing -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               base: str) -> tuple[int, Any, dict[str, str]]:
        cfg, st = self.config, self.state
        if method != "GET":
            if cfg.fork:
                return 403, {"message": NOT_ACCESSIBLE}, {}
            if cfg.fail_writes > 0:
                cfg.fail_writes -= 1
                return 502, {"message": "Server Error"}, {}
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/pulls", path)
        if m and method == "GET":
            wanted = query.get("head")
            return 200, [p for p in st.pulls if wanted in (None, p["head"]["label"])], {}
        if path == "/user" and method == "GET":
            if cfg.token_user is None:
                return 403, {"message": NOT_ACCESSIBLE}, {}
            return 200, self._identity(), {}

        m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+)/comments", path)
        if m:
            number = int(m.group(1))
            if method == "GET":
                items = [c for c in st.comments.values() if c["issue_number"] == number]
                return self._page(items, query, base, path)
            if method == "POST":
                text = str((body or {}).get("body", ""))
                if len(text) > COMMENT_LIMIT:
                    return 422, _invalid("body is too long (maximum is 65536 characters)"), {}
                ident = self._identity()
                return 201, self._new_comment(number, text, ident["login"], ident["type"]), {}
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/comments/(\d+)", path)
        if m:
            comment = st.comments.get(int(m.group(1)))
            if comment is None:
                return 404, {"message": "Not Found"}, {}
            if method == "PATCH":
                text = str((body or {}).get("body", ""))
                if len(text) > COMMENT_LIMIT:
                    return 422, _invalid("body is too long (maximum is 65536 characters)"), {}
                comment["body"] = text
                return 200, comment, {}
            if method == "DELETE":
                del st.comments[comment["id"]]
                return 204, None, {}
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/check-runs(?:/(\d+))?", path)
        if m:
            return self._check_runs(method, m.group(1), body)
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/commits/([^/]+)/check-runs", path)
        if m and method == "GET":
            runs = [r for r in st.check_runs.values() if r["head_sha"] == m.group(1)
                    and (not query.get("check_name") or r["name"] == query["check_name"])]
            runs.sort(key=lambda r: -int(r["id"]))
            return 200, {"total_count": len(runs), "check_runs": runs}, {}
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues(?:/(\d+))?", path)
        if m:
            return self._issues(method, m.group(1), query, body, base, path)
        if path == "/search/issues" and method == "GET":
            words = query.get("q", "").split()
            labels = [w.split(":", 1)[1].strip('"') for w in words if w.startswith("label:")]
            items = [i for i in st.issues.values()
                     if all(lbl in [x["name"] for x in i["labels"]] for lbl in labels)
                     and ("is:open" not in words or i["state"] == "open")]
            return 200, {"total_count": len(items), "items": items}, {}
        return 404, {"message": "Not Found"}, {}

    def _page(self, items: list[dict[str, Any]], query: dict[str, str], base: str,
              path: str) -> tuple[int, Any, dict[str, str]]:
        per_page = min(100, int(query.get("per_page") or self.config.page_size))
        page = int(query.get("page") or 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        last = max(1, -(-len(items) // per_page))
        if page < last:
            rest = {k: v for k, v in query.items() if k not in ("page", "per_page")}
            extra = "".join(f"&{k}={v}" for k, v in rest.items())
            link = f"{base}{path}?per_page={per_page}{extra}&page="
            headers["Link"] = f'<{link}{page + 1}>; rel="next", <{link}{last}>; rel="last"'
        return 200, chunk, headers

    def _check_runs(self, method: str, run_id: str | None, body: Any
                    ) -> tuple[int, Any, dict[str, str]]:
        output = (body or {}).get("output") or {}
        if len(output.get("annotations") or []) > ANNOTATIONS_PER_REQUEST:
            return 422, _invalid("Only 50 annotations may be sent per request"), {}
        refused = _refused_output(output)
        if refused:
            return 422, _invalid(refused), {}
        if method == "POST" and run_id is None:
            new_id = self.state.new_id()
            run = {"id": new_id, "name": body.get("name"), "head_sha": body.get("head_sha"),
                   "status": body.get("status"), "conclusion": body.get("conclusion"),
                   "output": {"title": output.get("title"), "summary": output.get("summary"),
                              "text": output.get("text"),
                              "annotations": list(output.get("annotations") or [])}}
            self.state.check_runs[new_id] = run
            return 201, run, {}
        if method == "PATCH" and run_id is not None:
            run = self.state.check_runs.get(int(run_id))
            if run is None:
                return 404, {"message": "Not Found"}, {}
            if output:  # the output is replaced as a whole (text too: absent is gone), while
                # annotations are appended, as GitHub documents for them; the stricter reading
                for key in ("title", "summary", "text"):
                    run["output"][key] = output.get(key)
            run["output"]["annotations"].extend(output.get("annotations") or [])
            for key in ("status", "conclusion"):
                if key in body:
                    run[key] = body[key]
            return 200, run, {}
        return 404, {"message": "Not Found"}, {}

    def _issues(self, method: str, number: str | None, query: dict[str, str], body: Any,
                base: str, path: str) -> tuple[int, Any, dict[str, str]]:
        st = self.state
        if number is None and method == "GET":
            wanted = [x for x in (query.get("labels") or "").split(",") if x]
            state = query.get("state", "open")
            items = [i for i in st.issues.values()
                     if (state == "all" or i["state"] == state)
                     and all(w in [lbl["name"] for lbl in i["labels"]] for w in wanted)]
            return self._page(items, query, base, path)
        if number is None and method == "POST":
            issue_number = len(st.issues) + 1
            issue = {"id": st.new_id(), "number": issue_number, "title": body.get("title"),
                     "body": body.get("body"), "state": "open", "state_reason": None,
                     "labels": [{"name": n} for n in body.get("labels") or []],
                     "user": self._identity()}
            st.issues[issue_number] = issue
            return 201, issue, {}
        issue = st.issues.get(int(number or 0))
        if issue is None:
            return 404, {"message": "Not Found"}, {}
        if method == "GET":
            return 200, issue, {}
        if method == "PATCH":
            for key in ("title", "body", "state", "state_reason"):
                if key in body:
                    issue[key] = body[key]
            if "labels" in body:
                issue["labels"] = [{"name": n} for n in body["labels"]]
            return 200, issue, {}
        return 404, {"message": "Not Found"}, {}


def _bytes(value: Any) -> int:
    return len(str(value or "").encode("utf-8"))


def _refused_output(output: dict[str, Any]) -> str | None:
    """What GitHub would refuse in a check run's output, measured as GitHub measures it: the
    texts in UTF-8 bytes ("summary exceeds a maximum bytesize of 65535"), each annotation's
    message and raw_details at 64 KB, its title at 255 (bytes here: the stricter reading)."""
    for key in ("summary", "text"):
        if _bytes(output.get(key)) > TEXT_LIMIT:
            return f"{key} exceeds a maximum bytesize of {TEXT_LIMIT}"
    for note in output.get("annotations") or []:
        if not note.get("message"):
            return "annotation message is missing"
        for key, limit in (("message", ANNOTATION_TEXT_BYTES),
                           ("raw_details", ANNOTATION_TEXT_BYTES), ("title", TITLE_LIMIT)):
            if _bytes(note.get(key)) > limit:
                return f"annotation {key} exceeds a maximum bytesize of {limit}"
    return None


def _record(request: dict[str, Any]) -> None:
    """With GHAPI_RECORD=DIR, every request also goes to DIR/ghapi-PID.jsonl with the test that
    sent it: tests/test_openapi.py validates each against GitHub's REST description."""
    folder = os.environ.get(RECORD)
    if folder:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(Path(folder) / f"ghapi-{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps({**request, "test": test}) + "\n")


def _invalid(message: str) -> dict[str, Any]:
    return {"message": "Validation Failed", "errors": [{"message": message}]}


def _handler(api: GhApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            host = self.headers.get("Host") or f"127.0.0.1:{api.port}"
            with api.lock:
                auth = self.headers.get("Authorization") or ""
                status, data, headers = (401, {"message": "Bad credentials"}, {}) \
                    if not auth.startswith(("Bearer ", "token ")) else \
                    api.handle(self.command, parts.path, query, body, f"http://{host}")
                api.state.requests.append({
                    "method": self.command, "path": parts.path, "query": query, "body": body,
                    "status": status, "authorized": bool(auth)})
                _record(api.state.requests[-1])
                if api.state_file is not None:
                    tmp = api.state_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(api.dump(), indent=1))
                    tmp.replace(api.state_file)
            payload = b"" if data is None else json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--fork", action="store_true", help="answer every write with 403")
    parser.add_argument("--fail-writes", type=int, default=0, help="answer the first N writes 502")
    parser.add_argument("--token-user", default=None, help="GET /user login (default: 403)")
    args = parser.parse_args(argv)
    api = GhApi(Config(fork=args.fork, fail_writes=args.fail_writes, token_user=args.token_user),
                state_file=args.state_file)
    if args.port:  # a fixed port: rebind
        api.server.server_close()
        api.server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(api))
        api.port = args.port
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    api.start()
    print(api.port, flush=True)
    stop.wait()
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
