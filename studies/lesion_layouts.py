"""Where lesions lie and what shape they take, in real label maps and in drawn ones (`relayout`).

For each folder of 0/1/2 label maps (a slice folder's labels/, or an experiment's conditions/ or
synthetic/ set), per map with infection: the infected share of the lung; the bilateral balance (the less
infected of the two largest lungs' infected share over the more infected one's: 0 one-sided, 1 even);
the lesion pixels' distance to healthy lung or body (median and 90th percentile, in pixels of the map
scaled to a 256 px long side: how deep a lesion's interior runs); the number of lesions (connected
regions). Printed: the medians over the maps by third of the infected share (the dev test slices' thirds,
as `gap_by_case` reports them), and the share of one-sided maps (balance under 0.1). `--draw N` adds, for
the first folder, N `relayout` layouts of each of its maps (each imitating its own lesions), so the prior
can be set against the maps it imitates.

    python -m studies.lesion_layouts ../shared/data/medseg_covid_slices/train/labels --draw 4
    python -m studies.lesion_layouts EXP/conditions/r0_k2_prior/labels EXP/conditions/r0_k2_allmaps/labels

Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

THIRDS = (0.107, 0.382)  # the infected share's thirds over the dev test slices (docs/results.md)
ONE_SIDED = 0.1


def layout_stats(label: np.ndarray) -> dict | None:
    """One 0/1/2 map's numbers (module docstring); None without infection. Balance is NaN with one lung."""
    from scipy import ndimage

    from cosingan.data.labelmap import areas

    lung, inf = label >= 1, label == 2
    if not inf.any():
        return None
    parts, n = ndimage.label(lung)
    balance = np.nan
    if n >= 2:
        sizes = np.bincount(parts.ravel())[1:]
        shares = [(inf & (parts == k)).sum() / sizes[k - 1] for k in np.argsort(sizes)[::-1][:2] + 1]
        balance = min(shares) / max(max(shares), 1e-12)
    depth = ndimage.distance_transform_edt(inf)[inf] * 256.0 / max(label.shape)
    return {"share": areas(label)[1], "balance": float(balance),
            "depth50": float(np.percentile(depth, 50)), "depth90": float(np.percentile(depth, 90)),
            "lesions": int(ndimage.label(inf)[1])}


def drawn(label: np.ndarray, draws: int, seed: int) -> list[np.ndarray]:
    """`draws` relayouts of a 0/1/2 map (the body taken from the label, as `cosingan masks` does)."""
    from cosingan.data.edits import edit_map
    from cosingan.data.labelmap import body_from_label, label4_to_label, to_label4

    label4 = to_label4(label, body_from_label(label))
    rng = np.random.default_rng(seed)
    return [label4_to_label(edit_map(label4, "relayout", rng)) for _ in range(draws)]


def table_rows(name: str, stats: list[dict]) -> list[str]:
    rows = []
    share = np.array([s["share"] for s in stats])
    third = np.digitize(share, THIRDS)
    for t, what in enumerate(("light", "middle", "heavy")):
        sel = [s for s, k in zip(stats, third) if k == t]
        if not sel:
            rows.append(f"| {name} | {what} | 0 | | | | | |")
            continue
        bal = np.array([s["balance"] for s in sel])
        bal = bal[np.isfinite(bal)]
        med = {k: np.median([s[k] for s in sel]) for k in ("depth50", "depth90", "lesions")}
        balance, one_sided = (np.median(bal), np.mean(bal < ONE_SIDED)) if bal.size else (np.nan, np.nan)
        rows.append(f"| {name} | {what} | {len(sel) / len(stats):.2f} | {balance:.2f} | {one_sided:.2f} | "
                    f"{med['depth50']:.1f} | {med['depth90']:.1f} | {med['lesions']:.0f} |")
    return rows


def main() -> None:
    from cosingan.data.layout import slice_files
    from cosingan.data.readers import read_label

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders of 0/1/2 label maps")
    ap.add_argument("--limit", type=int, default=1000, help="maps read per folder, in name order")
    ap.add_argument("--draw", type=int, default=0, help="relayouts of each map of the first folder")
    a = ap.parse_args()
    print("| maps | third | share of maps | balance | one-sided | lesion depth p50 | p90 | lesions |")
    print("| --- " * 8 + "|")
    for i, folder in enumerate(a.folders):
        labels = [read_label(p) for p in slice_files(Path(folder))[:a.limit]]
        sets = [(folder, labels)]
        if i == 0 and a.draw:
            sets.append((f"{folder} (relayout x{a.draw})",
                         [d for j, lab in enumerate(labels) if (lab == 2).any() for d in drawn(lab, a.draw, j)]))
        for name, maps in sets:
            stats = [s for s in map(layout_stats, maps) if s is not None]
            print("\n".join(table_rows(f"{name} ({len(stats)})", stats)), flush=True)


if __name__ == "__main__":
    main()
