"""Is the normal lung denser toward the back (the dependent lung), in real and in synthetic slices?

For each slice folder (images/ + labels/, 0/1/2 maps), per slice: every normal-lung pixel more than 5 px
from any infection, placed by its row between the first and last lung row of its column (0 front, 1 back);
the median grey level (of 255) in each tenth of that height minus the slice's normal-lung median. Printed:
the mean over the slices of each folder, and the percentiles of the per-slice slope (a line through the
first nine tenths, grey levels per lung height; the tenth holds the lung border's partial volume), and the
median over slices of the normal lung's interquartile range (the window's contrast in the lung, to compare
slopes between sources windowed differently).
`--step` first applies `synth.density.dependent_density` (p = 1, one seed per slice) to every image;
`--normals DIR` adds a folder of unannotated slices, their lungs found by `lungs_from_image`.

    python -m studies.lung_gradient ../shared/data/medseg_covid_slices/train EXP/synthetic/r0_k2_allmaps \\
        [--step] [--normals ../shared/data/mosmed_normal_slices]

Nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TENTHS = 10
MIN_LUNG_PX = 2000  # smaller lungs give no profile to read
MIN_HEIGHT = 20  # columns whose lung is shorter than this many rows are left out


def gradient_profile(grey: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """One slice's profile (grey levels of 255, 0/1/2 map): TENTHS values, NaN where a tenth has under 31
    pixels; None when its normal lung is under MIN_LUNG_PX."""
    from scipy import ndimage

    lung, inf = label == 1, label == 2
    if lung.sum() < MIN_LUNG_PX:
        return None
    near = ndimage.binary_dilation(inf, iterations=5) if inf.any() else np.zeros_like(inf)
    rows = np.arange(label.shape[0])[:, None] * np.ones(label.shape[1])[None]
    top = np.where(label > 0, rows, np.inf).min(axis=0)
    bottom = np.where(label > 0, rows, -np.inf).max(axis=0)
    ok = lung & ~near & (bottom - top > MIN_HEIGHT)[None]
    pos = (rows - top[None]) / np.maximum(bottom - top, 1)[None]
    g = grey.astype(np.float64)
    base = np.median(g[ok])
    out = np.full(TENTHS, np.nan)
    for t in range(TENTHS):
        m = ok & (pos >= t / TENTHS) & (pos < (t + 1) / TENTHS)
        if m.sum() > 30:
            out[t] = np.median(g[m]) - base
    return out


def slope(profile: np.ndarray) -> float:
    """Grey levels per lung height of a line through the first nine tenths (NaN if one is missing)."""
    x = (np.arange(TENTHS - 1) + 0.5) / TENTHS
    y = profile[:TENTHS - 1]
    return float(np.polyfit(x, y, 1)[0]) if not np.isnan(y).any() else float("nan")


def _pairs(folder: Path, limit: int, step: bool):
    from cosingan.data.pictures import image_to_uint8
    from cosingan.data.readers import list_slice_folder, load_slice
    from cosingan.synth.density import dependent_density

    for i, (ip, lp) in enumerate(list_slice_folder(folder)[:limit]):
        sl = load_slice(ip, lp)
        image = dependent_density(sl.image, sl.label, np.random.default_rng(i)) if step else sl.image
        yield image_to_uint8(image), sl.label


def _normals(folder: Path, limit: int):
    from cosingan.data.labelmap import label4_to_label, lungs_from_image
    from cosingan.data.pictures import image_to_uint8
    from cosingan.data.readers import read_image

    for p in sorted(q for q in folder.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]:
        image = read_image(p)[0]
        try:
            label4 = lungs_from_image(image, crop=False)  # air / body / lung
        except ValueError:
            continue
        yield image_to_uint8(image), label4_to_label(label4)


def _row(name: str, pairs) -> None:
    profiles, spread = [], []
    for grey, label in pairs:
        p = gradient_profile(grey, label)
        if p is not None:
            profiles.append(p)
            spread.append(np.subtract(*np.percentile(grey[label == 1], [75, 25])))
    slopes = np.array([s for s in map(slope, profiles) if not np.isnan(s)])
    mean = np.nanmean(profiles, axis=0) if profiles else np.full(TENTHS, np.nan)
    pct = " / ".join(f"{v:.1f}" for v in np.percentile(slopes, [10, 25, 50, 75, 90])) if slopes.size else "-"
    iqr = f"{np.median(spread):.1f}" if spread else "-"
    print(f"| {name} | {len(profiles)} | " + " | ".join(f"{v:+.1f}" for v in mean) + f" | {pct} | {iqr} |",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", help="slice folders (images/ + labels/)")
    ap.add_argument("--limit", type=int, default=300, help="slices read per folder, in name order")
    ap.add_argument("--step", action="store_true", help="apply the dependent-density step first (synth.density)")
    ap.add_argument("--normals", help="a folder of unannotated slices (lungs found automatically)")
    a = ap.parse_args()
    print("| folder | slices | " + " | ".join(f"{t + 1}" for t in range(TENTHS)) + " | slope p10 / 25 / 50 / 75 / 90 "
          "| lung IQR |")
    print("| --- " * (TENTHS + 4) + "|")
    for f in a.folders:
        _row(f + (" (step)" if a.step else ""), _pairs(Path(f), a.limit, a.step))
    if a.normals:
        _row(a.normals, _normals(Path(a.normals), a.limit))


if __name__ == "__main__":
    main()
