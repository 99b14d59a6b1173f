"""Each cross-process name is spelled once: the ``TIERGATE_*`` environment variables in
``protocol/environ.py``, the results dir's files and folders in ``protocol/layout.py``.

``child/`` is standard library only (its hook runs in interpreters without tiergate), so it keeps
copies; they are read here from the source with ``ast``, never imported (importing
``sitecustomize`` would run the hook in this process).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiergate.protocol import environ, layout

PACKAGE = Path(environ.__file__).resolve().parents[1]
CHILD = PACKAGE / "child"
ENVIRON_PY = PACKAGE / "protocol" / "environ.py"
LAYOUT_PY = PACKAGE / "protocol" / "layout.py"

# Every copy child/ keeps: (file under child/, its constant) -> the one definition it copies.
CHILD_COPIES = {
    ("__init__.py", "RUN_DIR_ENV"): environ.RUN_DIR,
    ("__init__.py", "STACKS_DIR"): layout.STACKS_DIR,
    ("site/sitecustomize.py", "_RUN_DIR_ENV"): environ.RUN_DIR,
    ("site/sitecustomize.py", "_NETWORK_ENV"): environ.NETWORK,
    ("site/sitecustomize.py", "_STACKS_DIR"): layout.STACKS_DIR,
    ("site/_tiergate_netguard.py", "ENV_NETWORK"): environ.NETWORK,
    ("site/_tiergate_netguard.py", "ENV_TIER"): environ.TIER,
    ("site/_tiergate_netguard.py", "ENV_EVENTS"): environ.EVENTS,
    ("site/_tiergate_netguard.py", "ENV_ADDRESSES"): environ.NETWORK_ADDRESSES,
    ("site/_tiergate_netguard.py", "ENV_NETWORK_FROM"): environ.NETWORK_FROM,
}

LAYOUT_NAMES = frozenset({
    layout.RESULTS_ROOT, layout.EVENTS_FILE, layout.MARK_FILE, layout.DUMPS_DIR,
    layout.JUNIT_FILE, layout.FINDINGS_FILE, layout.SUMMARY_FILE, layout.DEBUG_LOG_FILE,
    layout.RUN_DIR, layout.STACKS_DIR,
})


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, text) of every str or bytes literal that is a value: not a docstring (nor any
    other bare string statement), which only documents. A piece of an f-string that follows a
    replacement field comes with a leading "{}" (``f"{x}.run"`` is no ``.run`` dir)."""
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    after_field = {id(piece) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                   for before, piece in zip(node.values, node.values[1:], strict=False)
                   if isinstance(before, ast.FormattedValue)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in prose:
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if isinstance(text, str):
                yield node.lineno, "{}" + text if id(node) in after_field else text


def _module_constants(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if (isinstance(target, ast.Name) and isinstance(value, ast.Constant)
                and isinstance(value.value, str)):
            out[target.id] = value.value
    return out


def _sources(*, outside: tuple[Path, ...]) -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if not any(path == place or place in path.parents for place in outside):
            yield path


def _spells_layout_name(text: str) -> bool:
    if text in LAYOUT_NAMES or text == "attempt-":  # f"attempt-{n}.json"
        return True
    return any(text.startswith(name + "/") or text.endswith("/" + name)
               or text.startswith("{}/" + name) for name in LAYOUT_NAMES)


def test_every_environment_name_is_one_constant_with_the_prefix() -> None:
    names = {key: value for key, value in vars(environ).items()
             if key.isupper() and key not in ("PREFIX", "ALL")}
    assert set(environ.ALL) == set(names.values())
    assert len(set(environ.ALL)) == len(environ.ALL)
    assert all(value.startswith(environ.PREFIX) for value in environ.ALL)
    # each spelled whole, so grep for the variable finds its definition
    source = ENVIRON_PY.read_text(encoding="utf-8")
    for key, value in names.items():
        assert f'{key} = "{value}"' in source


@pytest.mark.parametrize(("where", "name"), sorted(CHILD_COPIES))
def test_the_start_up_hooks_copies_equal_the_one_definition(where: str, name: str) -> None:
    constants = _module_constants(_tree(CHILD / where))
    assert constants.get(name) == CHILD_COPIES[where, name]


def test_child_spells_no_cross_process_name_but_in_its_checked_copies() -> None:
    copied = {(where, value) for (where, _), value in CHILD_COPIES.items()}
    stray = []
    for path in sorted(CHILD.rglob("*.py")):
        where = path.relative_to(CHILD).as_posix()
        constants = _module_constants(_tree(path))
        for line, text in _literals(_tree(path)):
            names_one = environ.PREFIX in text or _spells_layout_name(text)
            if names_one and (where, text) not in copied:
                stray.append(f"{where}:{line}: {text!r}")
            elif names_one and text not in constants.values():
                stray.append(f"{where}:{line}: {text!r} (not a module constant)")
    assert stray == []


def test_no_other_module_spells_an_environment_name() -> None:
    stray = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
             for path in _sources(outside=(ENVIRON_PY, CHILD))
             for line, text in _literals(_tree(path)) if environ.PREFIX in text]
    assert stray == [], "import the name from tiergate.protocol.environ"


def test_no_other_module_spells_a_results_dir_name() -> None:
    stray = [f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
             for path in _sources(outside=(LAYOUT_PY, CHILD))
             for line, text in _literals(_tree(path)) if _spells_layout_name(text)]
    assert stray == [], "import the name from tiergate.protocol.layout"


def test_the_checks_catch_a_spelled_name() -> None:
    # The guards above must be able to fail: a module that spells a name inline is caught,
    # its docstring is not.
    module = ast.parse('"""Reads TIERGATE_EVENTS and writes events.jsonl."""\n'
                       'import os\n'
                       'path = os.environ["TIERGATE_EVENTS"]\n'
                       'out = f"{path}/events.jsonl"\n'
                       'spec = f"attempt-{1}.json"\n')
    found = [text for _, text in _literals(module)]
    assert [t for t in found if environ.PREFIX in t] == ["TIERGATE_EVENTS"]
    assert [t for t in found if _spells_layout_name(t)] == ["{}/events.jsonl", "attempt-"]


def test_the_layout_functions_build_the_documented_paths(tmp_path: Path) -> None:
    results = layout.default_results_dir(tmp_path, "fast")
    assert results == tmp_path / ".tiergate" / "fast"
    run = layout.run_dir(results)
    assert run == results / ".run"
    assert layout.attempt_spec(run, 2) == run / "attempt-2.json"
    assert layout.dump_file("hard-timeout-1") == "dumps/hard-timeout-1.txt"
    assert {"events.jsonl", "junit.xml", "findings.json", "summary.md"} <= set(layout.OWN_FILES)
    assert layout.MARK_FILE not in layout.OWN_FILES  # clearing keeps the lock's file
