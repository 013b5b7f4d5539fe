"""Anatomy outside the lungs, carried from the generator's training slice (`--anatomy transplant`).

A label map says where the lungs, the lesions and the body are; it says nothing of the spine, the ribs,
the heart, the great vessels or the airways, and the generators, trained on one slice, draw the body as a
flat field. This step takes them from the training slice: its image is warped onto the condition's frame
by a thin-plate spline that carries the training map's lungs onto the condition's lungs (landmarks at
equal arc length along each lung's outline, and the frame's corners and edge midpoints), and the body of
the synthetic image is replaced by the warped one wherever the warped training map says body too. Inside
the condition's lungs (and wherever the two maps disagree) the generator's image stays; the seam is
feathered over a few pixels. Lungs, lesions and the label map are untouched.

`inject` carries the same warped anatomy in earlier: it replaces the body of the generator's output at a
coarse scale (the first whose long side reaches `INJECT_SIDE`), and the finer scales draw their detail
over it as over their own coarse drawing (SinGAN's editing by injection), so the seam and the warp's
streaks are redrawn and the fine texture differs from sample to sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..data.labelmap import AIR, BODY, LUNG

if TYPE_CHECKING:
    from ..gan.run import TrainedRun

# the body outside the lungs: the generator's own, or carried from its training slice (this module)
ANATOMY = ("generated", "transplant", "inject")
LANDMARKS = 32  # per lung outline
FEATHER = 1.5  # px: sigma of the blend between the generator's lungs and the carried body
INJECT_SIDE = 64  # px: `inject` replaces the body at the first scale whose long side reaches this


def _outline(mask: np.ndarray, n: int) -> np.ndarray | None:
    """n points (row, col) at equal arc length along the outer outline of `mask`, from its topmost point
    and clockwise; None for an empty mask."""
    import contourpy

    if not mask.any():
        return None
    padded = np.pad(mask.astype(float), 1)
    lines = contourpy.contour_generator(z=padded).lines(0.5)
    line = max(lines, key=len)[:, ::-1] - 1  # (x, y) -> (row, col), padding removed
    area = 0.5 * np.sum(line[:-1, 1] * line[1:, 0] - line[1:, 1] * line[:-1, 0])  # shoelace, (col, row) order
    if area < 0:  # the same turning sense for every outline
        line = line[::-1]
    start = int(np.argmin(line[:, 0]))
    line = np.concatenate([line[start:-1], line[:start], line[start:start + 1]])
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, s[-1], n, endpoint=False)
    return np.stack([np.interp(t, s, line[:, 0]), np.interp(t, s, line[:, 1])], 1)


def _lungs(label4: np.ndarray) -> list[np.ndarray]:
    """The two largest lung components, left to right in the image (one, if the map has one)."""
    lab, n = ndimage.label(label4 >= LUNG)
    if n == 0:
        return []
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
    keep = [i + 1 for i in np.argsort(sizes)[::-1][:2]]
    comps = [lab == i for i in keep]
    return sorted(comps, key=lambda m: np.nonzero(m)[1].mean())


def _frame(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return np.array([[r, c] for r in (0, (h - 1) / 2, h - 1) for c in (0, (w - 1) / 2, w - 1)
                     if (r, c) != ((h - 1) / 2, (w - 1) / 2)], float)


def carry_map(train4: np.ndarray, cond4: np.ndarray) -> np.ndarray | None:
    """For every pixel of the condition's frame, where in the training map it comes from: (2, H, W) rows and
    columns, or None when the maps' lungs cannot be paired (no lungs, or another number of lungs)."""
    tl, cl = _lungs(train4), _lungs(cond4)
    if not tl or len(tl) != len(cl):
        return None
    src = [_frame(cond4.shape)]
    dst = [_frame(train4.shape)]
    for t, c in zip(tl, cl):
        src.append(_outline(c, LANDMARKS))
        dst.append(_outline(t, LANDMARKS))
    from scipy.interpolate import RBFInterpolator

    tps = RBFInterpolator(np.concatenate(src), np.concatenate(dst), kernel="thin_plate_spline", smoothing=1.0)
    h, w = cond4.shape
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2).astype(float)
    return tps(grid).T.reshape(2, h, w)


def carried(cond4: np.ndarray, train_image: np.ndarray, train4: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """The training slice's image warped onto the condition's frame, and the weight (0..1) it takes in the
    blend: 1 where both maps say body, feathered at the edge, 0 in the condition's lungs and in the air.
    None when the maps' lungs cannot be paired."""
    coords = carry_map(train4, cond4)
    if coords is None:
        return None
    warped = ndimage.map_coordinates(train_image, coords, order=1, mode="nearest")
    warped4 = ndimage.map_coordinates(train4, coords, order=0, mode="nearest")
    inside = ((coords[0] >= 0) & (coords[0] <= train4.shape[0] - 1) & (coords[1] >= 0)
              & (coords[1] <= train4.shape[1] - 1))  # beyond the training slice's frame there is nothing to carry
    body = (cond4 == BODY) & (warped4 == BODY) & inside  # body in both maps: the carried anatomy belongs there
    weight = ndimage.gaussian_filter(body.astype(np.float32), FEATHER) * (cond4 != AIR)
    weight[cond4 >= LUNG] = 0.0  # the condition's lungs are the generator's, to the last pixel
    return warped.astype(np.float32), weight.astype(np.float32)


def transplant(synthetic: np.ndarray, cond4: np.ndarray, train_image: np.ndarray, train4: np.ndarray
               ) -> np.ndarray:
    """The synthetic image (in [-1, 1], on the condition's 4-class map) with its body outside the lungs
    taken from the training slice, warped onto the condition (see the module docstring). Unchanged when
    the maps' lungs cannot be paired."""
    return _blend(synthetic, carried(cond4, train_image, train4))


def _blend(image: np.ndarray, carry: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    if carry is None:
        return image
    warped, weight = carry
    return (weight * warped + (1 - weight) * image).astype(image.dtype)


def inject_scale(sizes: list[tuple[int, int]]) -> int:
    """The scale whose output `inject` replaces the body of: the first whose long side reaches
    `INJECT_SIDE` (the finest, for a generator smaller than that)."""
    return next((i for i, s in enumerate(sizes) if max(s) >= INJECT_SIDE), len(sizes) - 1)


def sample(run: "TrainedRun", label4s: list[np.ndarray], seeds: list[int], anatomy: str) -> np.ndarray:
    """`run`'s images (N, H, W) in [-1, 1] for 4-class maps of one shape, one per seed, with the body
    outside the lungs as `anatomy` says: the one place that decides it for datasets and quality alike."""
    if anatomy not in ANATOMY:
        raise ValueError(f"anatomy must be one of {', '.join(ANATOMY)}, got {anatomy!r}")
    if anatomy == "generated":
        return run.sample_maps(label4s, seeds)
    pair = run.train_pairs[0]
    # one warp per distinct map: quality draws two samples of each, and the warp is the costly part
    keys = [m.tobytes() for m in label4s]
    warps: dict[bytes, tuple[np.ndarray, np.ndarray] | None] = {}
    for key, m in zip(keys, label4s):
        if key not in warps:
            warps[key] = carried(m, *pair)
    carry = [warps[key] for key in keys]
    if anatomy == "inject":
        return run.sample_maps(label4s, seeds, carried=carry, at=inject_scale(run.sizes))
    return np.stack([_blend(img, c) for img, c in zip(run.sample_maps(label4s, seeds), carry)])
