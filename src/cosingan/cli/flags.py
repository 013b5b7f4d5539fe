"""Command-line flags built from a settings dataclass (`cosingan.settings`): one flag per field that has
help, its type, choices and default read from the field; the values come back as the dataclass, checked
where it is made."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields


def _kind(cls, f) -> type:
    """The field's element type: int, float, str, bool or dict (tuples give their element type)."""
    t = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(t) if a is not type(None)]  # str | None: str
    if typing.get_origin(t) is tuple or (args and typing.get_origin(t) is not dict):
        return args[0]
    return typing.get_origin(t) or t


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def add_flags(parser: argparse.ArgumentParser, cls) -> None:
    """A flag for every field of `cls` that has help (its dest recorded in `settings_dests`: the dataclass,
    not `cli.check_args`, checks it)."""
    from ..settings import flag_name

    dests = list(parser.get_default("settings_dests") or [])
    for f in fields(cls):
        m = f.metadata
        if not m.get("help"):
            continue
        dests.append(f.name)
        parser.set_defaults(settings_dests=tuple(dests))
        kind, default, name = _kind(cls, f), _default(f), flag_name(f)
        if kind is bool:
            parser.add_argument(name, dest=f.name, action="store_false" if m["invert"] else "store_true",
                                help=m["help"])
            continue
        shown = " ".join(map(str, default)) if m["many"] else default
        kw = {"dest": f.name, "help": m["help"] + ("" if m["json_file"] else f" (default {shown})"),
              "metavar": "FILE" if m["json_file"] else name.lstrip("-").replace("-", "_").upper()}
        if not m["json_file"]:
            kw.update(type=kind, default=list(default) if m["many"] else default)
        if m["many"]:
            kw["nargs"] = "+"
        if m["choices"] is not None and not m["many"]:
            kw["choices"] = list(m["choices"])  # (several values: checked by the dataclass, one message)
            del kw["metavar"]
        parser.add_argument(name, **kw)


def from_args(cls, args: argparse.Namespace, **extra):
    """`cls` made from the parsed flags (JSON files read, lists as tuples) and `extra` fields."""
    from ..errors import InputError
    from ..gan.config import load_config_file
    from ..settings import flag_name

    values, files = {}, {}
    for f in fields(cls):
        m = f.metadata
        if not m.get("help"):
            continue
        v = getattr(args, f.name)
        if m["json_file"]:
            files[flag_name(f)] = v
            v = load_config_file(v) if v else {}
        elif m["many"]:
            v = tuple(v)
        values[f.name] = v
    try:
        return cls(**values, **extra)
    except InputError as e:  # a problem inside a JSON file: named by the file, not the flag
        flag = next((fl for fl, path in files.items() if path and str(e).startswith(fl + ":")), None)
        if flag is None:
            raise
        raise InputError(f"{files[flag]}{str(e)[len(flag):]}") from None
