"""Same-source infection detection: lung patches with and without infection, cut from the same slices.

Detection between COVID slices and infection-free slices of another dataset (MosMed CT-0) measures the
source as much as the infection: scanner, windowing and framing differ, and a classifier scores AUC 1.0
on them without looking at a lesion. Patches cut from the same slices share all of that, so only the
infection tells them apart.

A patch is a square of 1/6 of the slice's long side (about 40-80 px on the dev slices, the size of a
lesion cluster), on a grid with half-patch stride, at least half lung. Positive: at least 5 % of the patch
is infection. Negative: no infection pixel in it. Patches in between are left out (a lesion edge is
neither). The grid is fixed, so the test patches are the same for every arm.
"""

from __future__ import annotations

import numpy as np

from ..data.pictures import resize
from ..data.readers import Slice

PATCH_FRACTION = 1 / 6  # patch side / the slice's long side
MIN_LUNG = 0.5  # share of the patch that must be lung
MIN_INFECTED = 0.05  # share of the patch that makes it positive
PATCH_DEFINITION = (f"lung patches of {PATCH_FRACTION:.3g} x the slice's long side on a half-patch grid, at least "
                    f"{MIN_LUNG:.0%} lung; positive: at least {MIN_INFECTED:.0%} of the patch infected; negative: no "
                    "infection in the patch; in between: left out")


def lung_patches(image: np.ndarray, label: np.ndarray, size: int, per_class: int | None = None
                 ) -> tuple[list[np.ndarray], list[int]]:
    """(patches resized to size x size in [-1, 1], targets) of one slice. `per_class`: at most that many
    positives and negatives, evenly spread over the grid (None: all)."""
    h, w = label.shape
    side = max(8, int(round(max(h, w) * PATCH_FRACTION)))
    if side > min(h, w):
        return [], []
    stride = max(1, side // 2)
    lung = (label > 0).astype(np.float64)
    inf = (label == 2).astype(np.float64)
    # sums over every side x side window from integral images (one pass, no loop over pixels)
    def window_sums(m):
        c = np.pad(m, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]
    ls, infs = window_sums(lung), window_sums(inf)
    pos, neg = [], []
    area = side * side
    for r in range(0, h - side + 1, stride):
        for c in range(0, w - side + 1, stride):
            if ls[r, c] < MIN_LUNG * area:
                continue
            if infs[r, c] >= MIN_INFECTED * area:
                pos.append((r, c))
            elif infs[r, c] == 0:
                neg.append((r, c))
    if per_class is not None:
        pos, neg = _spread(pos, per_class), _spread(neg, per_class)
    patches, targets = [], []
    for t, cells in ((1, pos), (0, neg)):
        for r, c in cells:
            patches.append(resize(image[r: r + side, c: c + side], (size, size)))
            targets.append(t)
    return patches, targets


def _spread(cells: list, n: int) -> list:
    if len(cells) <= n:
        return cells
    return [cells[i] for i in np.round(np.linspace(0, len(cells) - 1, n)).astype(int)]


def patch_set(slices: list[Slice], size: int, per_class: int | None = None) -> tuple[list[np.ndarray], list[int]]:
    """The patches and targets of many slices."""
    patches, targets = [], []
    for s in slices:
        p, t = lung_patches(s.image, s.label, size, per_class)
        patches += p
        targets += t
    return patches, targets
