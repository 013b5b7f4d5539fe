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
            row[m + "_std"] = float(np.std(v))
        rows.append(row)
    return rows
