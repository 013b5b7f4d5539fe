"""On which real test slices does each arm lose to arm C?

For every test slice of every repeat of the given experiment folders: each arm's infection DSC (the
experiment's own `eval/*/cases.csv`) and the slice's traits, read from its label map and image: the
infected share of the lung, the lesions' contrast (median grey level of the infection minus that of the
normal lung, of 255), and the normal lung's median grey level and interquartile range. Printed for every
arm: its mean infection DSC and its gap to C (C minus the arm, on the same slice of the same repeat) by
third of the infected share (the thirds cut over all the slices read), and the Spearman correlation of
the gap with each trait over all of them. Then, by the same thirds, the maps each arm trained on: arm C's
pool slices and each synthetic set's condition maps.

    python -m studies.gap_by_case EXP [EXP ...]

EXP is a finished `cosingan experiment few-shot` folder; nothing in it is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
from studies.common import split_folder

TRAITS = ("infected share", "lesion contrast", "lung median", "lung IQR")


def traits(grey: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """A slice's traits from its grey levels (of 255) and 0/1/2 map (NaN where there is nothing to read)."""
    from cosingan.data.labelmap import areas

    lung, inf = label == 1, label == 2
    g = grey.astype(np.float64)
    lung_med = float(np.median(g[lung])) if lung.any() else float("nan")
    return {
        "infected share": areas(label)[1],
        "lesion contrast": float(np.median(g[inf]) - lung_med) if inf.any() else float("nan"),
        "lung median": lung_med,
        "lung IQR": float(np.subtract(*np.percentile(g[lung], [75, 25]))) if lung.any() else float("nan"),
    }


def arm_name(folder: str) -> str:
    """An eval folder's arm, without its repeat and k: r0_k2_A_synthetic_allmaps_strongaug -> A_synthetic_..."""
    return re.sub(r"^r\d+_(k\d+_)?", "", folder)


def read_cases(exp: Path) -> list[dict]:
    """One row per test slice and repeat: its traits and every arm's infection DSC (key: the arm's name)."""
    from cosingan.data.pictures import image_to_uint8
    from cosingan.data.readers import list_slice_folder, load_slice

    results = json.loads((exp / "results.json").read_text())
    rows = []
    for r in sorted({run["repeat"] for run in results["runs"]}):
        dsc: dict[str, dict[str, float]] = {}
        for f in sorted((exp / "eval").glob(f"r{r}_*")):
            with open(f / "cases.csv", newline="") as fh:
                dsc[arm_name(f.name)] = {row["case"]: float(row["infection_dsc"]) for row in csv.DictReader(fh)}
        for ip, lp in list_slice_folder(split_folder(exp, results, r, "test")):
            sl = load_slice(ip, lp)
            row = {"exp": str(exp), "repeat": r, "case": Path(ip).stem, **traits(image_to_uint8(sl.image), sl.label)}
            row.update({arm: d[row["case"]] for arm, d in dsc.items() if row["case"] in d})
            rows.append(row)
    return rows


def training_shares(exp: Path) -> dict[str, list[float]]:
    """The infected share of the lung of the maps each arm trained on, over every repeat: arm C's pool and
    each synthetic arm's set (the maps its pairs were drawn with)."""
    from cosingan.data.labelmap import areas
    from cosingan.data.readers import list_slice_folder, read_label

    results = json.loads((exp / "results.json").read_text())
    out: dict[str, list[float]] = {}
    for f in sorted((exp / "eval").glob("r*_*")):
        r = int(re.match(r"^r(\d+)_", f.name).group(1))
        m = re.match(r"^(r\d+_k\d+)_A_synthetic_([a-z]+)", f.name)
        if "_C_" in f.name:
            folder = split_folder(exp, results, r, "pool")
        elif m and (exp / "synthetic" / f"{m[1]}_{m[2]}").is_dir():
            folder = exp / "synthetic" / f"{m[1]}_{m[2]}"
        else:
            continue
        out.setdefault(arm_name(f.name), []).extend(areas(read_label(lp))[1] for _, lp in list_slice_folder(folder))
    return out


def reference(rows: list[dict]) -> str:
    arms = {k for row in rows for k in row if k.startswith("C_")}
    if len(arms) != 1:
        raise SystemExit(f"expected one all-real arm C in eval/, found {sorted(arms) or 'none'}")
    return arms.pop()


def gap_table(rows: list[dict]) -> tuple[list[float], dict[str, dict]]:
    """The infected share's thirds, and per arm other than C: its mean DSC and gap to C in each third, and the
    gap's Spearman correlation with each trait."""
    from scipy.stats import spearmanr

    c = reference(rows)
    share = np.array([row["infected share"] for row in rows])
    cuts = [float(v) for v in np.quantile(share, [1 / 3, 2 / 3])]
    third = np.digitize(share, cuts)
    arms = sorted({k for row in rows for k in row} - {"exp", "repeat", "case", c, *TRAITS})
    out = {}
    for arm in arms:
        have = np.array([arm in row and c in row for row in rows])
        dsc = np.array([row.get(arm, np.nan) for row in rows])
        gap = np.array([row.get(c, np.nan) for row in rows]) - dsc
        out[arm] = {"n": int(have.sum()),
                    "thirds": [(float(np.mean(dsc[have & (third == t)])), float(np.mean(gap[have & (third == t)])))
                               if (have & (third == t)).any() else (np.nan, np.nan) for t in range(3)],
                    "rho": {}}
        for t in TRAITS:
            x = np.array([row[t] for row in rows])
            ok = have & np.isfinite(x)
            varies = ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(gap[ok]) > 0
            out[arm]["rho"][t] = float(spearmanr(x[ok], gap[ok])[0]) if varies else float("nan")
    return cuts, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exps", nargs="+", help="finished experiment folders")
    a = ap.parse_args()
    rows = [row for e in a.exps for row in read_cases(Path(e))]
    cuts, table = gap_table(rows)
    c = reference(rows)
    print(f"{len(rows)} test slices; C = {c}: infection DSC {np.mean([row[c] for row in rows]):.3f}")
    print(f"infected share of the lung by third: < {cuts[0]:.3f}, {cuts[0]:.3f}-{cuts[1]:.3f}, > {cuts[1]:.3f}\n")
    print("| arm | slices | DSC / gap to C: low third | middle | high | " + " | ".join(f"rho {t}" for t in TRAITS)
          + " |")
    print("| --- " * (5 + len(TRAITS)) + "|")
    third = np.digitize([row["infected share"] for row in rows], cuts)
    ref = np.array([row[c] for row in rows])
    print(f"| {c} | {len(rows)} | " + " | ".join(f"{ref[third == t].mean():.3f}" for t in range(3)) + " |" * 5)
    for arm, v in table.items():
        cells = " | ".join(f"{d:.3f} / {g:+.3f}" for d, g in v["thirds"])
        print(f"| {arm} | {v['n']} | {cells} | " + " | ".join(f"{v['rho'][t]:+.2f}" for t in TRAITS) + " |")
    shares: dict[str, list[float]] = {}
    for e in a.exps:
        for arm, v in training_shares(Path(e)).items():
            shares.setdefault(arm, []).extend(v)
    print("\nThe maps each arm trained on, by the same thirds (their share of the maps):\n")
    print("| arm | maps | low third | middle | high | median infected share |\n| --- | --- | --- | --- | --- | --- |")
    print(f"| the test slices | {len(rows)} | " + " | ".join(f"{np.mean(third == t):.2f}" for t in range(3))
          + f" | {np.median([row['infected share'] for row in rows]):.3f} |")
    for arm, v in shares.items():
        third = np.digitize(v, cuts)
        print(f"| {arm} | {len(v)} | " + " | ".join(f"{np.mean(third == t):.2f}" for t in range(3))
              + f" | {np.median(v):.3f} |")


if __name__ == "__main__":
    main()
