"""The results table: mean and standard deviation over repeats per (k, arm, regime)."""

from __future__ import annotations

import numpy as np

from .tasks import TASKS

COLUMNS = {m: title for task in TASKS.values() for m, title in task.columns.items()}


def table(results: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["k"] if r["k"] is not None else 0, r["arm"], r["regime"]), []).append(r)
    rows = []
    for (k, arm, regime), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        row = {"k": k or None, "arm": arm, "regime": regime, "n": len(rs)}
        for m in COLUMNS:
            if not all(m in x for x in rs):
                continue
            v = [x[m] for x in rs]
            row[m] = float(np.mean(v))
            row[m + "_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # the sample sd over repeats
        rows.append(row)
    return rows


def paired(results: list[dict], base: str = "B", top: str = "C") -> list[dict]:
    """For every per-k arm other than `base`: the paired difference arm - base over repeats (same
    repeat, same k slices) per metric, its mean, sd and 95 % t-interval, and the gap closure
    (arm - base) / (top - base) of the means (top = the all-real arm of the same repeats)."""
    from scipy import stats

    by = {(r["repeat"], r["k"], r["arm"], r["regime"]): r for r in results}
    keys = sorted({(r["k"], r["arm"], r["regime"]) for r in results
                   if r["k"] is not None and r["arm"] not in (base, top)}, key=lambda x: (x[0], x[1], x[2]))
    rows = []
    for k, arm, regime in keys:
        reps = [r for (r, kk, a, g) in by if (kk, a, g) == (k, arm, regime) and (r, k, base, "") in by]
        row = {"k": k, "arm": arm, "regime": regime, "n": len(reps)}
        for m in COLUMNS:
            trip = [(by[(r, k, arm, regime)].get(m), by[(r, k, base, "")].get(m), by.get((r, None, top, ""), {}).get(m))
                    for r in reps]
            if not trip or any(a is None or b is None for a, b, _ in trip):
                continue
            d = np.array([a - b for a, b, _ in trip])
            row[m + "_diff"] = float(d.mean())
            row[m + "_diff_sd"] = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
            half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            row[m + "_ci"] = [row[m + "_diff"] - half, row[m + "_diff"] + half]
            if all(c is not None for _, _, c in trip):
                gap = np.mean([c for _, _, c in trip]) - np.mean([b for _, b, _ in trip])
                row[m + "_closure"] = float(row[m + "_diff"] / gap) if abs(gap) > 1e-9 else float("nan")
        rows.append(row)
    return rows
