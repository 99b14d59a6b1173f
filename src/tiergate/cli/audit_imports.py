"""``tiergate audit-imports PACKAGE``: import every module of a package, each in a fresh interpreter
under the network guard, and report what importing it did.

Import-time work is the failure the brief opens with: a module that starts threads or connects to a
database when imported hangs the first test that imports it, and every test after. Each module is
imported alone (``tiergate/plugin/leaks/import_probe.py`` runs in the child), so an effect is
charged to the module that has it, not to whichever imported it first. A module that hangs past the
timeout gets a ``timeout`` finding with the process-tree dump of the child
(``tiergate.diagnose.dump``), or, if that cannot be taken, the child's own faulthandler stacks.

One root cause is one finding, however many imports it hits: importing ``pkg.a`` runs
``pkg/__init__.py`` first, so a package that connects to a database when imported shows that
effect in the import of every one of its modules. Each effect is charged to the module whose body
ran it (the probe's ``origin``), and the finding lists every module whose import it hit. The
modules of a package whose import hangs or kills the interpreter are not imported (each would
import the package first, and wait out the timeout again): its finding lists them. An import that
raises is no finding; its reason is printed for every module, and each distinct error once with
the modules it hit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.machinery
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tiergate.errors import ConfigError, UsageError
from tiergate.plugin.netguard import CORE_PATH, encode_policy
from tiergate.protocol import environ, layout
from tiergate.protocol.findings import (
    SCHEMA,
    Culprit,
    Finding,
    Location,
    write_findings,
)
from tiergate.settings.config import parse_duration

DEFAULT_TIMEOUT = 30.0
DEFAULT_RESULTS_DIR = Path(layout.RESULTS_ROOT) / "audit-imports"
# Run as a script in each child (it executes on import, so it is read, never imported here).
PROBE = Path(__file__).resolve().parents[1] / "plugin" / "leaks" / "import_probe.py"


def add_parser(sub: Any, name: str) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help="import every module of a package in a fresh interpreter and report side effects",
        description="Import each module of PACKAGE alone, under the tier's network guard, and "
        "report modules whose import starts threads, spawns processes, connects to the network, "
        "writes files or hangs.",
    )
    parser.add_argument("package", metavar="PACKAGE", help="importable package name, e.g. myapp")
    parser.add_argument("--timeout", metavar="DURATION", default=None,
                        help=f"per-module import limit (default {DEFAULT_TIMEOUT:g}s)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where findings.json goes (default {DEFAULT_RESULTS_DIR})")
    parser.add_argument("--tier", default="fast",
                        help="the tier whose network policy applies (default fast)")
    parser.add_argument("--network", metavar="POLICY", default=None,
                        help="override the policy: any, loopback, none or comma-separated hosts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    timeout = _timeout(args.timeout)
    tier_name, network = _network(args.tier, args.network)
    results_dir = Path(args.results_dir or DEFAULT_RESULTS_DIR)
    modules = discover(args.package)
    root = _package_root(args.package)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / layout.DUMPS_DIR).mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    stopped: dict[str, tuple[Finding, list[str]]] = {}  # package -> its finding, modules it hit
    for module in modules:
        package = next((p for p in _packages_of(module) if p in stopped), None)
        if package is not None:  # its import would run the package's first: hang or die again
            finding, hit = stopped[package]
            hit.append(module)
            rows.append({"module": module, "seconds": 0.0, "result": "not imported",
                         "error": f"not imported: importing {package} "
                         + ("did not finish" if finding.kind == "timeout" else "crashed"),
                         "effects": []})
            continue
        row, found = audit_module(module, timeout=timeout, network=network, tier=tier_name,
                                  root=root, results_dir=results_dir)
        rows.append(row)
        for finding in found:
            stopped[module] = (finding, [module])
    findings = [*_side_effect_findings(rows), *(_with_modules(f, hit)
                                                for f, hit in stopped.values())]
    order = {module: index for index, module in enumerate(modules)}
    findings.sort(key=lambda f: order.get(str(f.details.get("module")), len(order)))
    errors = _import_errors(rows)
    write_findings(results_dir / layout.FINDINGS_FILE, {
        "schema": SCHEMA,
        "tier": tier_name,
        "command": "audit-imports",
        "package": args.package,
        "outcome": "failed" if findings else "passed",
        "counts": {"modules": len(rows), "findings": len(findings),
                   "errors": sum(len(e["modules"]) for e in errors)},
        "findings": [f.to_json() for f in findings],
        "errors": errors,
        "modules": rows,
    })
    _print_table(rows, findings, errors, results_dir)
    return 1 if findings else 0


# -- finding the modules, without importing anything ----------------------------------------------

def _search_path() -> list[str]:
    # The child runs `python -c`, whose sys.path starts with the working directory.
    return [os.getcwd(), *(p for p in sys.path if p)]


def _spec(package: str) -> importlib.machinery.ModuleSpec:
    if not package or not all(part.isidentifier() for part in package.split(".")):
        raise UsageError(f"audit-imports: {package!r} is not a module name")
    path: list[str] | None = _search_path()
    spec = None
    parts = package.split(".")
    for depth in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: depth + 1]), path)
        if spec is None:
            raise UsageError(f"audit-imports: cannot find {package!r} from {os.getcwd()}")
        path = list(spec.submodule_search_locations or [])
    assert spec is not None
    return spec


def discover(package: str) -> list[str]:
    """The package and all its modules and subpackages (not ``__main__``), by name. Read from
    the file system: ``pkgutil.walk_packages`` imports each subpackage to find its modules, which
    would run here the very import-time work being audited (and hang with it)."""
    spec = _spec(package)
    modules = [package]
    if spec.submodule_search_locations:
        modules += _walk(list(spec.submodule_search_locations), package + ".")
    return sorted(set(modules))


def _walk(paths: list[str], prefix: str) -> list[str]:
    found = []
    for info in pkgutil.iter_modules(paths, prefix):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        found.append(info.name)
        folder = getattr(info.module_finder, "path", None)
        if info.ispkg and isinstance(folder, str):
            found += _walk([os.path.join(folder, info.name.rsplit(".", 1)[-1])], info.name + ".")
    return found


def _package_root(package: str) -> str:
    spec = _spec(package)
    if spec.submodule_search_locations:
        return str(next(iter(spec.submodule_search_locations)))
    return str(Path(spec.origin or ".").parent)


# -- one module ---------------------------------------------------------------------------------

def audit_module(module: str, *, timeout: float, network: str, tier: str, root: str,
                 results_dir: Path) -> tuple[dict[str, Any], list[Finding]]:
    from tiergate.child import boot_env

    with tempfile.TemporaryDirectory(prefix="tiergate-audit-") as scratch:
        result_path = Path(scratch) / "result.json"
        fallback_dump = Path(scratch) / "stacks.txt"
        run_dir = Path(scratch) / "run"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **boot_env(run_dir, os.environ)}
        for name in (environ.NETWORK, environ.EVENTS):
            env.pop(name, None)  # the probe installs the guard itself and keeps what it sees
        argv = [sys.executable, "-c", PROBE.read_text(), module,
                str(result_path), str(CORE_PATH), network, tier, root, str(timeout),
                str(fallback_dump)]
        began = time.monotonic()
        # stderr to a file, not a pipe: a process the import spawned would hold a pipe open.
        with open(Path(scratch) / "stderr.txt", "w+b") as stderr_file:
            child = subprocess.Popen(argv, env=env, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=stderr_file)
        try:
            child.wait(timeout=timeout + 0.5)
        except subprocess.TimeoutExpired:
            found = _timed_out(module, child.pid, timeout, run_dir, fallback_dump, results_dir)
            _kill_group(child)
            row = {"module": module, "seconds": round(time.monotonic() - began, 3),
                   "result": "timeout", "effects": []}
            return row, [found]
        finally:
            _kill_group(child)
        stderr = (Path(scratch) / "stderr.txt").read_bytes()
        if not result_path.exists():
            row = {"module": module, "seconds": round(time.monotonic() - began, 3),
                   "result": "crashed", "error": stderr.decode("utf-8", "replace")[-2000:],
                   "effects": []}
            return row, [Finding(
                kind="crash", test=None, severity="error",
                message=f"importing {module} killed the interpreter "
                        f"(exit code {child.returncode})",
                details={"module": module, "stderr": row["error"]},
            )]
        data = json.loads(result_path.read_text())
    effects = data["effects"]
    row = {"module": module, "seconds": round(data["seconds"], 4),
           "result": "side effects" if effects else ("error" if data["error"] else "clean"),
           "error": data["error"], "effects": effects}
    if data["error"]:
        row["error_site"] = data.get("error_site")
        row["error_origin"] = data.get("error_origin")
    return row, []


def _packages_of(module: str) -> list[str]:
    """The packages importing *module* imports first: ``a.b.c`` → ``a``, ``a.b``."""
    parts = module.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts))]


def _cause(module: str, effect: dict[str, Any]) -> tuple[str, ...]:
    """What one effect is charged to: the module whose body ran it, else the line that made it,
    else the module being imported."""
    if effect.get("origin"):
        return ("module", str(effect["origin"]))
    site = effect.get("site")
    if site:
        return ("site", str(site["path"]), str(site["line"]))
    return ("import", module)


def _side_effect_findings(rows: list[dict[str, Any]]) -> list[Finding]:
    """One finding per root cause, in the order the modules were audited (a package before its
    modules), naming every module whose import it hit."""
    causes: dict[tuple[str, ...], list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for row in rows:
        mine: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for effect in row["effects"]:
            mine.setdefault(_cause(row["module"], effect), []).append(effect)
        for cause, effects in mine.items():
            causes.setdefault(cause, []).append((row, effects))
    return [_side_effect(cause, hits) for cause, hits in causes.items()]


def _side_effect(cause: tuple[str, ...],
                 hits: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> Finding:
    modules = [row["module"] for row, _ in hits]
    # The module the effect belongs to: its origin when that was audited, else the first hit.
    row, effects = next(((r, e) for r, e in hits if cause == ("module", r["module"])), hits[0])
    module = row["module"]
    texts = []
    for effect in effects[:6]:
        site = effect.get("site")
        where = f" at {_rel(site['path'])}:{site['line']}" if site else ""
        texts.append(effect["what"] + where)
    more = f" (and {len(effects) - 6} more)" if len(effects) > 6 else ""
    site = next((e["site"] for e in effects if e.get("site")), None)
    kinds = sorted({e["kind"] for e in effects})
    also = [m for m in modules if m != module]
    hit = f"; the same on importing {_names(also)}" if also else ""
    return Finding(
        kind="import-side-effect",
        test=None,
        severity="error",
        message=f"importing {module} {', '.join(kinds)}: {'; '.join(texts)}{more}{hit}",
        location=Location(_rel(site["path"]), site["line"]) if site else None,
        culprit=Culprit(_rel(site["path"]), site["line"], site["function"]) if site else None,
        details={"module": module, "modules": modules, "effects": effects,
                 "seconds": row["seconds"], "error": row["error"]},
    )


def _with_modules(finding: Finding, modules: list[str]) -> Finding:
    """A package's timeout or crash finding, naming the modules that were not imported for it."""
    if len(modules) == 1:
        return dataclasses.replace(finding, details={**finding.details, "modules": modules})
    rest = modules[1:]
    return dataclasses.replace(
        finding,
        message=f"{finding.message}; {len(rest)} module{'s' if len(rest) > 1 else ''} under it "
        f"not imported, as each imports it first: {_names(rest)}",
        details={**finding.details, "modules": modules},
    )


def _import_errors(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct import error once (the same exception raised at the same line), with the
    modules whose import raised it."""
    errors: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        if not row.get("error") or row["result"] not in ("error", "side effects"):
            continue
        site = row.get("error_site")
        location = {"path": _rel(site["path"]), "line": site["line"]} if site else None
        key = (row["error"], location and location["path"], location and location["line"])
        entry = errors.setdefault(key, {"error": row["error"], "location": location,
                                        "module": row.get("error_origin") or row["module"],
                                        "modules": []})
        entry["modules"].append(row["module"])
    return list(errors.values())


def _names(modules: list[str], shown: int = 10) -> str:
    more = len(modules) - shown
    return ", ".join(modules[:shown]) + (f" and {more} more" if more > 0 else "")


def _reason(error: str) -> str:
    """An import error on one line, short enough for a table."""
    line = error.strip().splitlines()[0] if error.strip() else error
    return line if len(line) <= 200 else line[:199] + "…"


def _timed_out(module: str, pid: int, timeout: float, run_dir: Path, fallback: Path,
               results_dir: Path) -> Finding:
    from tiergate.diagnose.treedumps import dump_tree

    name = "import-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in module)
    saved = dump_tree(pid, results_dir=results_dir, run_dir=run_dir, project_root=Path.cwd(),
                      name=name, reason=f"importing {module} ran past {timeout:g}s")
    dump, culprit = saved.path, saved.culprit
    if dump is None:
        # No process-tree dump: keep the child's own faulthandler stacks instead.
        text = fallback.read_text(errors="replace") if fallback.exists() else ""
        if text:
            dump = layout.dump_file(name)
            (results_dir / dump).write_text(text)
            culprit = _faulthandler_culprit(text)
    where = f"; stuck in {culprit.function} at {culprit.path}:{culprit.line}" if culprit else ""
    return Finding(
        kind="timeout", test=None, severity="error",
        message=f"importing {module} did not finish in {timeout:g}s{where}",
        location=Location(culprit.path, culprit.line) if culprit else None,
        culprit=culprit, dump=dump,
        details={"module": module, "timeout": timeout,
                 **({"dump_problem": saved.problem} if saved.problem else {})},
    )


def _faulthandler_culprit(text: str) -> Culprit | None:
    """The innermost frame of the main thread in a faulthandler dump."""
    import re

    block = text.split("Current thread", 1)[-1] if "Current thread" in text else text
    for match in re.finditer(r'File "([^"]+)", line (\d+) in (\S+)', block):
        path = match.group(1)
        if "import_probe" not in path and "<frozen" not in path and path != "<string>":
            return Culprit(_rel(path), int(match.group(2)), match.group(3))
    return None


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """The child leads its own session: whatever the import spawned dies with it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


# -- the edges ---------------------------------------------------------------------------------

def _timeout(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise UsageError(
            f"audit-imports: --timeout {raw!r} is not a duration such as 10s") from None
    if seconds <= 0:
        raise UsageError("audit-imports: --timeout must be more than zero")
    return seconds


def _network(tier_name: str, override: str | None) -> tuple[str, str]:
    if override is not None:
        try:
            return tier_name, encode_policy(override)
        except ValueError:
            raise UsageError(f"audit-imports: --network {override!r} is not a policy: use any, "
                             "loopback, none or comma-separated hosts") from None
    from tiergate.settings.config import load_config

    try:
        tier = load_config(Path.cwd()).tier(tier_name)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return tier.name, encode_policy(tier.network)


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _print_table(rows: list[dict[str, Any]], findings: list[Finding],
                 errors: list[dict[str, Any]], results_dir: Path) -> None:
    width = max([len("module"), *(len(r["module"]) for r in rows)])
    print(f"{'module':<{width}}  {'import':>8}  result")
    for row in rows:
        result = row["result"]
        origins = {effect.get("origin") for effect in row["effects"]}
        if result == "side effects" and None not in origins and row["module"] not in origins:
            result = f"side effects of importing {', '.join(sorted(map(str, origins)))}"
        if row.get("error") and result.startswith("side effects"):
            result = f"{result}, then {_reason(row['error'])}"
        elif row.get("error") and result == "error":
            result = f"error: {_reason(row['error'])}"
        elif row.get("error") and result == "not imported":
            result = row["error"]
        print(f"{row['module']:<{width}}  {row['seconds']:>7.3f}s  {result}")
    for finding in findings:
        print(f"{finding.kind}: {finding.message}")
    for error in errors:
        where = error["location"]
        at = f" at {where['path']}:{where['line']}" if where else ""
        hit = error["modules"]
        print(f"import error{at}: {_reason(error['error'])} (importing {_names(hit)})")
    findings_path = results_dir / layout.FINDINGS_FILE
    print(f"{len(findings)} finding(s) in {len(rows)} module(s); {findings_path}")
