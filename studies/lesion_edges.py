"""How sharply does the grey level change at an infection label's edge, in real and in synthetic slices?

For each slice folder (images/ + labels/, 0/1/2 maps), per slice: the signed distance of every lung pixel to
the infection label's edge (negative inside, in pixels of the slice scaled to a 256 px long side), and the
median grey level at each distance from -6 to +6 px as the share of the way from the normal lung's median
(beyond 6 px from any lesion) to the lesion core's (deeper than 6 px). Slices with under 200 infected or
200 normal lung pixels, or whose lesion core is under 10 grey levels above the lung, are skipped. Printed:
the mean profile over the slices of each folder. `--fade` first applies `synth.density.fade_margins`
(p = 1, one seed per slice) to every image, to see what it does to a synthetic set's profile.

    python -m studies.lesion_edges ../shared/data/medseg_covid_slices/train EXP/synthetic/r0_k2_allmaps [--fade]

Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DISTANCES = [k for k in range(-6, 7) if k]  # no pixel lies on the edge itself
MIN_PX = 200
MIN_CONTRAST = 10.0


def edge_profile(image: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """One slice's profile (image in any linear grey scale, 0/1/2 map), NaN where a distance has under 10
    pixels; None if the slice is skipped."""
    from scipy import ndimage

    inf, lung = label == 2, label >= 1
    if inf.sum() < MIN_PX or (lung & ~inf).sum() < MIN_PX:
        return None
    s = max(label.shape) / 256.0
    d = np.where(inf, -ndimage.distance_transform_edt(inf), ndimage.distance_transform_edt(~inf)) / s
    core, normal = image[inf & (d < -6)], image[lung & ~inf & (d > 6)]
    if core.size < 50 or normal.size < 50:
        return None
    c, b = np.median(core), np.median(normal)
    if c - b < MIN_CONTRAST:
        return None
    out = np.full(len(DISTANCES), np.nan)
    for i, k in enumerate(DISTANCES):
        m = lung & (np.abs(d - k) <= 0.5)
        if m.sum() >= 10:
            out[i] = (np.median(image[m]) - b) / (c - b)
    return out


def folder_profile(folder: Path, limit: int, fade: bool) -> tuple[np.ndarray, int]:
    from cosingan.data.readers import list_slice_folder, load_slice
    from cosingan.synth.density import fade_margins

    rows = []
    for i, (ip, lp) in enumerate(list_slice_folder(folder)[:limit]):
        sl = load_slice(ip, lp)
        image = fade_margins(sl.image, sl.label, np.random.default_rng(i), p=1.0) if fade else sl.image
        p = edge_profile(np.round((image.astype(np.float64) + 1.0) * 127.5), sl.label)  # 8-bit grey levels
        if p is not None:
            rows.append(p)
    return np.nanmean(rows, axis=0) if rows else np.full(len(DISTANCES), np.nan), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="slice folders (images/ + labels/)")
    ap.add_argument("--limit", type=int, default=300, help="slices read per folder, in name order")
    ap.add_argument("--fade", action="store_true", help="fade the lesion margins first (synth.density)")
    a = ap.parse_args()
    print("| folder | slices | " + " | ".join(f"{k:+d}" for k in DISTANCES) + " |")
    for f in a.folders:
        p, n = folder_profile(Path(f), a.limit, a.fade)
        print(f"| {f}{' (faded)' if a.fade else ''} | {n} | " + " | ".join(f"{v:.2f}" for v in p) + " |")


if __name__ == "__main__":
    main()
