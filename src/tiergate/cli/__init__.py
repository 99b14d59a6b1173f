"""The ``tiergate`` command. Each subcommand lives in its own module and registers itself here with
``add_parser(subparsers)`` and ``run(args) -> int``; this module only parses and turns user errors
into one line on stderr with exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tiergate import __version__
from tiergate.errors import TiergateError

# subcommand name -> module with add_parser() and run()
COMMANDS = {
    "run": "tiergate.cli.run",
    "tiers": "tiergate.cli.tiers",
    "report": "tiergate.cli.report",
    "post": "tiergate.cli.post",
    "audit-imports": "tiergate.cli.audit_imports",
    "init": "tiergate.cli.init",
    "quarantine": "tiergate.cli.quarantine",
    "flakes": "tiergate.cli.flakes",
    "trace": "tiergate.cli.trace",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints the whole usage block; a user needs the one line that says what is wrong.
        self.exit(2, f"tiergate: error: {message} (see 'tiergate {self._sub_name()}--help')\n")

    def _sub_name(self) -> str:
        parts = self.prog.split()[1:]
        return " ".join(parts) + " " if parts else ""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with *command* (a known subcommand's name), only that subcommand's
    parser: importing every command's module costs each run of one (``tiergate run`` would load
    pytest, the GitHub client and the report writers in the supervisor) about 150 ms."""
    parser = _Parser(
        prog="tiergate",
        description="Tiered pytest runs that always leave a report: hangs explained, leaks found.",
    )
    parser.add_argument("--version", action="version", version=f"tiergate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = {command: COMMANDS[command]} if command in COMMANDS else COMMANDS
    for name, module_name in chosen.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a command that is not built yet
            raise
        module.add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" belongs to pytest; argparse would otherwise try to read it.
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    # The top-level parser has no option that takes a value: the first word is the command.
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    args.pytest_args = passthrough
    if not args.command:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
    except TiergateError as exc:
        print(f"tiergate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
