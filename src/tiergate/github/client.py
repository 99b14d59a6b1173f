"""A small GitHub REST v3 client on urllib: a timeout on every request, retries with backoff on
5xx and rate limits (``Retry-After``, ``x-ratelimit-reset``), pagination through ``Link``. It
sends the token only to the configured API host."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

API_VERSION = "2022-11-28"
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class GitHubError(Exception):
    def __init__(self, status: int, message: str, method: str, url: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{method} {url}: {status} {message}".strip())
        self.status = status
        self.message = message
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}

    @property
    def not_accessible(self) -> bool:
        """The token may not do this: a fork's pull request, or permissions left out of the
        workflow. Not worth failing a job over."""
        return self.status == 403 and "not accessible" in self.message.lower()


@dataclasses.dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    data: Any


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: float = 15.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._origin = urllib.parse.urlsplit(self.api_url)[:2]
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).data

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, body=body).data

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, body=body).data

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None,
                 key: str | None = None, max_pages: int = 100) -> Iterator[Any]:
        """Every item of a list endpoint, following ``Link: <…>; rel="next"``. *key* names the
        list in endpoints that wrap it (check-runs: ``check_runs``)."""
        query = {"per_page": 100, **(params or {})}
        response = self.request("GET", path, params=query)
        for _ in range(max_pages):
            items = response.data.get(key, []) if key else response.data
            yield from items or []
            match = _NEXT.search(response.headers.get("Link") or response.headers.get("link")
                                 or "")
            if not match:
                return
            response = self.request("GET", match.group(1))

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        if urllib.parse.urlsplit(url)[:2] != self._origin:
            raise GitHubError(0, "refusing to send the token to another host", "GET", url)
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        return url

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Mapping[str, Any] | None = None) -> Response:
        url = self.url(path, params)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(method, url, data)
            except GitHubError as exc:
                wait = self._retry_wait(exc, attempt)
                if wait is None:
                    raise
            self._sleep(wait)

    def _send(self, method: str, url: str, data: bytes | None) -> Response:
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "tiergate",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                raw = reply.read()
                headers = dict(reply.headers.items())
                return Response(reply.status, headers, json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            headers = dict(exc.headers.items()) if exc.headers else {}
            raise GitHubError(exc.code, _message(raw), method, url, headers) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitHubError(0, f"no response ({reason})", method, url) from None

    def _retry_wait(self, exc: GitHubError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None when this error is final."""
        if attempt > self.retries:
            return None
        lower = exc.headers
        limited = exc.status == 429 or (exc.status == 403 and (
            lower.get("x-ratelimit-remaining") == "0" or "rate limit" in exc.message.lower()))
        if not (limited or exc.status == 0 or exc.status >= 500):
            return None
        wait = self.backoff * 2 ** (attempt - 1)
        if limited:
            if (after := lower.get("retry-after", "")).isdigit():
                wait = float(after)
            elif (reset := lower.get("x-ratelimit-reset", "")).isdigit():
                wait = max(0.0, float(reset) - self._clock()) + 1
        return wait if wait <= self.max_wait else None


def _message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        message = str(data.get("message", ""))
        errors = data.get("errors")
        return f"{message} {json.dumps(errors)[:300]}" if errors else message
    return str(data)[:200]
