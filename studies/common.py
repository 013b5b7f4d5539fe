"""What the studies that read a finished `cosingan experiment few-shot` folder share: the command line
(EXP [--repeat R]), its results.json, and that repeat's reference: arm C's U-Net, the one condition
fidelity is judged by. Nothing in EXP is written."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def split_folder(exp: Path, results: dict, repeat: int, side: str) -> Path:
    """The slices of repeat R's split (`side` pool or test)."""
    from cosingan.experiment.split import split_dir

    return split_dir(exp, results["splits"][repeat]["key"], side)


@dataclass(frozen=True)
class Repeat:
    exp: Path
    repeat: int
    results: dict  # EXP/results.json
    ref: Path  # the reference U-Net's folder (EXP/seg/rR_C_...)
    net: object
    scfg: object  # its SegConfig
    args: argparse.Namespace  # the whole command line, a benchmark's own options included


def open_repeat(doc: str | None, add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> Repeat:
    from cosingan.downstream import seg

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", help="a finished experiment folder")
    ap.add_argument("--repeat", type=int, default=0)
    if add_args is not None:
        add_args(ap)
    a = ap.parse_args()
    exp = Path(a.exp)
    results = json.loads((exp / "results.json").read_text())
    ref = next((exp / "seg").glob(f"r{a.repeat}_C_*"))
    net, scfg = seg.load_seg(ref, "cpu")
    return Repeat(exp, a.repeat, results, ref, net, scfg, a)


def test_folder(rep: Repeat) -> Path:
    return split_folder(rep.exp, rep.results, rep.repeat, "test")
