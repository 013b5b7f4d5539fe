"""Settings declared once: a field of a frozen settings dataclass carries its own help, choices and range
(`setting`), the dataclass checks them where it is made (`check_settings`, from `__post_init__`), and the
command line builds its flags from the fields (`cli.flags`). Nothing else repeats them."""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields
from typing import Any

from .errors import InputError


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, flag: str | None = None,
            choices=None, low: float | None = None, high: float | None = None, many: bool = False,
            invert: bool = False, json_file: bool = False):
    """A settings field. `help` (with `flag`, default --NAME) makes it a command-line flag; `choices`, `low` and
    `high` bound its value(s); `many`: a tuple given as several values, each once; `invert`: a bool that is on
    by default, switched off by the flag; `json_file`: a dict read from the JSON file the flag names."""
    meta = {"help": help, "flag": flag, "choices": None if choices is None else tuple(choices), "low": low,
            "high": high, "many": many, "invert": invert, "json_file": json_file}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def flag_name(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def check_settings(obj) -> None:
    """Every field's value against its declared choices and range; the first one out names its flag."""
    for f in fields(obj):
        m, value = f.metadata, getattr(obj, f.name)
        if not m:
            continue
        values = value if m.get("many") else (value,)
        if m.get("many") and (not values or len(set(values)) < len(values)):
            raise InputError(f"{flag_name(f)} {' '.join(map(str, values))}: give one or more values, each once")
        for v in values:
            if m.get("choices") is not None and v not in m["choices"]:
                raise InputError(f"{flag_name(f)} must be one of {', '.join(map(str, m['choices']))}, got {v!r}")
            lo, hi = m.get("low"), m.get("high")
            if lo is None and hi is None:
                continue
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not number or (isinstance(v, float) and not math.isfinite(v)):
                raise InputError(f"{flag_name(f)} must be a number, got {v!r}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}"
                raise InputError(f"{flag_name(f)} must be {rng}, got {v}")
