"""The `cosingan` command: a thin layer over the library. Each command is a pair (add its flags to the
parser, run it) in the module of its layer; this module only assembles the parser and maps errors to
exit codes: an InputError is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from . import data, downstream, experiment, gan

COMMANDS = {**gan.COMMANDS, **data.COMMANDS, **downstream.COMMANDS, **experiment.COMMANDS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cosingan", description="cosingan: learn COVID-19 CT synthesis "
                                     "(and diagnosis) from a single annotated slice.")
    parser.add_argument("--version", action="version", version=f"cosingan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except InputError as e:
        print(f"cosingan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cosingan: interrupted (a run folder resumes with `cosingan train --resume RUN`)", file=sys.stderr)
        return 130
