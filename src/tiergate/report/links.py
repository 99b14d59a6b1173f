"""Where a report points: the commit, the run, the check run, the results artifact, and the
blob of a file at the tested commit. Built from the Actions context by the caller (report/
never reads the environment of a post), so the same summary renders with or without them."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import quote

from tiergate.report.escape import md_text

SHORT_SHA = 7


class Links:
    """Where a report's links point. A plain class, not a dataclass: the summary imports this
    on every run, and making a dataclass costs more than the rest of the module."""

    __slots__ = ("base_sha", "check_url", "repository", "run_url", "server", "sha")

    def __init__(self, server: str, repository: str, sha: str, run_url: str | None = None,
                 check_url: str | None = None, base_sha: str | None = None) -> None:
        self.server = server  # https://github.com
        self.repository = repository  # owner/name
        self.sha = sha  # the tested commit (a PR's head)
        self.run_url = run_url
        self.check_url = check_url
        self.base_sha = base_sha

    def with_check(self, check_url: str) -> Links:
        """The same links, with the check run's (known once it is created)."""
        return Links(self.server, self.repository, self.sha, run_url=self.run_url,
                     check_url=check_url, base_sha=self.base_sha)

    def _fields(self) -> tuple[str | None, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Links) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Links{self._fields()!r}"

    @property
    def commit_url(self) -> str:
        return f"{self.server}/{self.repository}/commit/{self.sha}"

    @property
    def artifact_url(self) -> str | None:
        # The run page's artifacts section: an artifact's own URL needs its id, which only the
        # upload step knows.
        return f"{self.run_url}#artifacts" if self.run_url else None

    def blob_url(self, path: str, line: int | None) -> str:
        anchor = f"#L{line}" if line else ""
        return f"{self.server}/{self.repository}/blob/{self.sha}/{quote(path)}{anchor}"

    def commit_link(self, sha: str | None = None) -> str:
        sha = sha or self.sha
        return link(f"<code>{html.escape(sha[:SHORT_SHA])}</code>",
                    f"{self.server}/{self.repository}/commit/{sha}")


def link(shown_html: str, url: str) -> str:
    """An explicit inline link: *shown_html* is HTML already escaped; the href is the URL
    attribute-escaped, so no autolinker or Markdown escape ever touches it."""
    href = html.escape(url, quote=True).replace("|", "&#124;")
    return f'<a href="{href}">{shown_html}</a>'


def repo_path(path: str, root: Path | None = None, project: Path | None = None) -> str | None:
    # Imported on first use: a green run's summary shows no path and need not load annotations.
    from tiergate.report.annotations import repo_path as in_repo

    return in_repo(path, root, project)


def shown_path(path: str, root: Path | None = None, project: Path | None = None) -> str:
    """A path as a person reads it: relative to *root* (the repository, see
    :func:`tiergate.report.annotations.repo_path`) where it is inside it, else its last three
    parts (a runner's /home/runner/… or site-packages prefix says nothing)."""
    inside = repo_path(path, root, project)
    if inside:
        return inside
    parts = path.replace("\\", "/").split("/")
    return path if len(parts) <= 3 or not path.startswith("/") else "…/" + "/".join(parts[-3:])


def where(path: str | None, line: int | None, links: Links | None) -> str:
    """``path:line`` as inline code, linked to the blob at the tested commit when the file is
    in the repository and there is a commit to link to."""
    if not path:
        return ""
    shown = shown_path(path)
    label = f"{shown}:{line}" if line else shown
    code = f"<code>{md_text(label, 200, links=False)}</code>"
    inside = repo_path(path)
    if links is None or not inside:
        return code
    return link(code, links.blob_url(inside, line))


# A place in a probe's message: "…, started at /home/runner/…/x.py:9 in start", "; top allocation
# x.py:44 in _load", ", created at x.py:3 (open)". The probes write it for a terminal; an item of
# the summary shows it as its link already.
_PLACE = (  # compiled (and cached by re) where a message is first edited
    r"(?:[,;]\s*|\s+|^)(?:(?:started|created|allocated) at|top allocation|at)\s+"
    r"(?P<path>[^\s:;,()]+\.py):(?P<line>\d+)(?:\s+in\s+[\w.<>]+|\s+\([\w.<>]+\))?")


def without_place(message: str, path: str | None, line: int | None,
                  root: Path | None = None, project: Path | None = None) -> str:
    """*message* without its own words for *path*:*line* (the place the item links to, or the
    terminal's culprit line shows), and with every other place in it shortened as
    :func:`shown_path` shows a path relative to *root*."""
    def edit(match: re.Match[str]) -> str:
        if path and line is not None and int(match["line"]) == line \
                and _same_file(match["path"], path):
            return ""
        shown = shown_path(match["path"], root, project)
        return match.group(0).replace(match["path"], shown, 1)

    return re.sub(_PLACE, edit, message).strip() or message  # a message that is only the place


def _same_file(one: str, other: str) -> bool:
    """The probes write absolute paths, the findings' columns paths relative to the project."""
    a, b = one.replace("\\", "/"), other.replace("\\", "/")
    a, b = a.removeprefix("./"), b.removeprefix("./")
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)
