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


# every numeric flag's range, checked in one place before any command runs: (low, high), None = open
MAX_PAIRS = 10**7  # maps, samples, synthetic pairs: far beyond any dataset, before memory runs out
# (the experiment's flags are its config's fields, checked there: `settings`)
ARG_LIMITS = {"seed": (0, 2**63 - 1), "n": (1, MAX_PAIRS), "batch": (1, None), "steps": (1, None), "epochs": (1, None),
              "size": (16, 4096), "workers": (1, None), "threads": (1, None), "maps": (1, None),
              "seg_steps": (1, None), "c2st_steps": (1, None), "c2st_seeds": (1, None), "negative_share": (0.0, 1.0),
              "spacing": (1e-3, 100.0), "per_volume": (1, None)}


def check_args(args: argparse.Namespace) -> None:
    import math

    for name, (lo, hi) in ARG_LIMITS.items():
        if name in getattr(args, "settings_dests", ()):  # a settings field: its dataclass checks it
            continue
        values = getattr(args, name, None)
        for v in values if isinstance(values, list) else [values]:
            if not isinstance(v, (int, float)):  # (e.g. lists of folders)
                continue
            if (isinstance(v, float) and not math.isfinite(v)) or v < lo or (hi is not None and v > hi):
                flag = "--" + name.replace("_", "-")
                rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise InputError(f"{flag} must be {rng}, got {v}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        return COMMANDS[args.command][1](args)
    except InputError as e:
        print(f"cosingan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = ("`cosingan train --resume RUN` continues the run" if args.command == "train"
                 else "run the same command again to continue where it stopped")
        print(f"cosingan: interrupted; {again}", file=sys.stderr)
        return 130
