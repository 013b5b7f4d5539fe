"""Label-map edits: new plausible conditions from real maps, as a registry users extend.

Every edit works on the 4-class map (air/body/lung/infection) so the body travels with the lungs;
results pass `check_label4` or are rejected by the caller. To add an edit, decorate a function
`fn(label4, rng, lesion) -> label4` with `@register("name")`: it then appears in `cosingan masks
--edits`, `synthesize --edits` and the experiment's defaults. `lesion` is one lesion mask drawn at random
for lesion edits (`lesion=True`), None for whole-map edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .labelmap import BODY, INFECTION, LUNG


@dataclass(frozen=True)
class Edit:
    name: str
    fn: Callable[..., np.ndarray]
    lesion: bool  # works on one lesion (needs a map with infection)
    whole_map: bool  # moves the map as a whole: still meaningful for infection-free (negative) maps
    user: bool  # offered to users (the `negative` edit is applied on request only)
    default: bool  # in the default set of `masks --edits` and the experiment's kmaps/allmaps regimes


EDITS: dict[str, Edit] = {}


def register(name: str, lesion: bool = False, whole_map: bool = False, user: bool = True, default: bool = True):
    def deco(fn):
        EDITS[name] = Edit(name, fn, lesion, whole_map, user, user and default)
        return fn
    return deco


def user_edits() -> tuple[str, ...]:
    """Edits a user may ask for, in registration order."""
    return tuple(n for n, e in EDITS.items() if e.user)


def default_edits() -> tuple[str, ...]:
    """The default set: what `masks` and the experiment's kmaps / allmaps regimes draw from."""
    return tuple(n for n, e in EDITS.items() if e.default)


def whole_map_edits(names: list[str]) -> list[str]:
    return [n for n in names if EDITS[n].whole_map]


def unknown_edits(names: list[str]) -> list[str]:
    return [n for n in names if n not in EDITS or not EDITS[n].user]


def _clean(label4: np.ndarray, min_lesion: int) -> np.ndarray:
    """Infection only inside lung, no lesion slivers (they become lung)."""
    out = label4.copy()
    inf = out == INFECTION
    if inf.any() and min_lesion > 1:
        lab, n = ndimage.label(inf)
        sizes = ndimage.sum(inf, lab, np.arange(1, n + 1))
        small = np.isin(lab, np.nonzero(sizes < min_lesion)[0] + 1)
        out[small] = LUNG
    return out


def lesions(label4: np.ndarray) -> list[np.ndarray]:
    """One boolean mask per connected infection region."""
    lab, n = ndimage.label(label4 == INFECTION)
    return [lab == k for k in range(1, n + 1)]


def _place(label4: np.ndarray, lesion: np.ndarray, dy: int, dx: int) -> np.ndarray | None:
    """Lesion mask shifted by (dy, dx), cut to the lung; None if less than 60% of it stays in lung."""
    shifted = ndimage.shift(lesion.astype(np.uint8), (dy, dx), order=0, mode="constant") > 0
    inside = shifted & (label4 >= LUNG)
    if inside.sum() < 0.6 * max(1, lesion.sum()):
        return None
    return inside


@register("deform", whole_map=True)
def _deform(label4, rng, lesion):
    from monai.transforms import Rand2DElastic

    h, w = label4.shape
    side = max(h, w)
    tf = Rand2DElastic(spacing=(side // 4, side // 4), magnitude_range=(0.5, 2.0), prob=1.0,
                       rotate_range=0.15, scale_range=(0.12, 0.12), translate_range=(side * 0.04,) * 2,
                       mode="nearest", padding_mode="zeros")
    tf.set_random_state(seed=int(rng.integers(2**31)))
    return np.rint(np.asarray(tf(label4[None].astype(np.float32)))[0]).clip(0, 3).astype(np.uint8)


@register("flip", whole_map=True)
def _flip(label4, rng, lesion):
    return label4[:, ::-1].copy()


def _relocate(label4, rng, lesion, keep: bool):
    lung_px = np.argwhere(label4 >= LUNG)
    cy, cx = np.argwhere(lesion).mean(0)
    for _ in range(20):  # a few tries to land mostly inside the lung
        ty, tx = lung_px[int(rng.integers(len(lung_px)))]
        placed = _place(label4, lesion, int(ty - cy), int(tx - cx))
        if placed is not None:
            break
    else:
        raise ValueError("no place in the lung for the lesion")
    out = label4.copy()
    if not keep:
        out[lesion] = LUNG
    out[placed] = INFECTION
    return out


register("move", lesion=True)(partial(_relocate, keep=False))


@register("scale", lesion=True)
def _scale(label4, rng, lesion):
    h, w = label4.shape
    f = float(rng.uniform(0.6, 1.6))
    cy, cx = np.argwhere(lesion).mean(0)
    yy, xx = np.mgrid[0:h, 0:w]
    src = ndimage.map_coordinates(lesion.astype(np.float32), [cy + (yy - cy) / f, cx + (xx - cx) / f], order=0)
    out = label4.copy()
    out[lesion] = LUNG
    out[(src > 0.5) & (label4 >= LUNG)] = INFECTION
    return out


register("add", lesion=True)(partial(_relocate, keep=True))


@register("remove", lesion=True)
def _remove(label4, rng, lesion):
    out = label4.copy()
    out[lesion] = LUNG
    return out


@register("merge", lesion=True)
def _merge(label4, rng, lesion):
    h, w = label4.shape
    if len(lesions(label4)) < 2:
        raise ValueError("map has fewer than two lesions to merge")
    out = label4.copy()
    joined = ndimage.binary_closing(out == INFECTION, structure=np.ones((3, 3)), iterations=max(2, min(h, w) // 40))
    out[joined & (label4 >= LUNG)] = INFECTION
    return out


MEDIASTINUM_SHARE = 0.25  # at most this share of the lung becomes mediastinum


@register("mediastinum", whole_map=True, default=False)
def _mediastinum(label4, rng, lesion):
    """A wider mediastinum: the lung farthest from the chest wall (0-25 % of it) becomes body, as the heart
    and great vessels take more of the chest at lower levels and in other patients."""
    lung = label4 >= LUNG
    depth = hull_depth(lung)
    n = int(rng.uniform(0.0, MEDIASTINUM_SHARE) * lung.sum())
    out = label4.copy()
    if n > 0:
        out[lung & (depth >= np.partition(depth[lung], -n)[-n])] = BODY
    return out


@register("negative", whole_map=True, user=False)
def _negative(label4, rng, lesion):
    out = label4.copy()
    out[out == INFECTION] = LUNG
    return out


# ------------------------------------------------------------------------ lesion-layout prior
# A new lesion layout on the same lungs: no lesion of the map survives, so two or three annotated maps
# yield lesions of many counts, sizes, shapes and positions. The count is drawn around the map's own, the
# sizes are the map's lesion sizes resampled (so their mix, one large and a few small, say, is kept), the
# infected share of the lung is drawn around the map's own or, for half of the layouts, from COVID-19's
# range of severity (2-50 %); positions follow its known predilection for the peripheral (along the chest
# wall, not the mediastinum) and posterior (lower in the image) lung; shapes are irregular blobs (distance
# to a centre plus smooth noise, grown to their area inside the centre's lung; a rougher boundary breaks a
# blob into specks the generator renders too faintly to be read as lesions).

SEVERITY_MIX = 0.5  # share of layouts whose infected share of the lung is drawn log-uniform in 2-50 %
BLOB_ROUGHNESS = 0.4  # weight of the smooth noise in a lesion boundary (0: a disc cut to the lung)
# COVID-19 infection is bilateral, the more so the more extensive: a lesion's centre favours the lung with
# more healthy tissue left (weight: its healthy share ** LUNG_BALANCE), and no lesion takes more than
# LESION_CAP of its lung's healthy tissue. Both set from the dev maps' bilateral balance, not downstream.
LUNG_BALANCE = 4.0
LESION_CAP = 0.5
# Real lesions spread along the chest wall more than into the lung: a blob's growth is penalised by how much
# deeper (hull depth, `hull_depth`) a pixel lies than its centre, PERIPHERAL_GROWTH per blob radius.
PERIPHERAL_GROWTH = 0.7
# Real lesions are laced with spared lung (vessels, septa, islands): no lesion pixel of the dev maps lies far
# from healthy lung. Drawn blobs are solid, and a generator renders a deep solid interior as bland haze;
# LACE_WIDTH (of a unit-variance smooth field, ~8 % of the area) and LACE_SCALE (its smoothing, of the lung
# height) set from the dev maps' distances to the lesion edge, not downstream.
LACE_WIDTH = 0.1
LACE_SCALE = 0.04
LACE_DEPTH = 3.0  # pixels: lesion rims stay solid
MIN_BLOB = 12  # pixels: the smallest lesion a layout draws (as `_clean`'s default)


def hull_depth(lung: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the border of the lungs' convex hull: small along the chest wall, large
    along the mediastinum (the hull spans it), which lung-border distance cannot tell apart."""
    pts = np.argwhere(lung & ~ndimage.binary_erosion(lung))  # the hull's corners are border pixels
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):  # lungs on a line or a few pixels: no hull
        return ndimage.distance_transform_edt(lung)
    (y0, x0), (y1, x1) = pts.min(0), pts.max(0) + 1  # and it lies in the lungs' box
    inside = np.zeros_like(lung)
    inside[y0:y1, x0:x1] = _convex_rows(hull.equations, y0, y1, x0, x1)
    return ndimage.distance_transform_edt(inside | lung)


def _convex_rows(equations: np.ndarray, y0: int, y1: int, x0: int, x1: int, tol: float = 1e-9) -> np.ndarray:
    """Pixels (y, x) of the box with a·y + b·x + c <= tol for every hull facet (a, b, c): a convex region
    meets each row in one run of columns, so each row needs only its two ends, not a point-location test
    of every pixel. `tol` keeps pixels on an edge, which lie exactly on a facet's line."""
    y = np.arange(y0, y1, dtype=np.float64)[:, None]
    a, b, c = equations[:, 0], equations[:, 1], equations[:, 2]
    rest = tol - c - a * y  # b·x <= rest, per row and facet
    pos, neg, flat = b > 1e-12, b < -1e-12, np.abs(b) <= 1e-12
    # (empty reductions get their identities: no bound from that side, no row ruled out)
    hi = np.min(rest[:, pos] / b[pos], axis=1, initial=np.inf)
    lo = np.max(rest[:, neg] / b[neg], axis=1, initial=-np.inf)
    ok = (rest[:, flat] >= 0).all(1)
    x = np.arange(x0, x1)
    return ok[:, None] & (x >= lo[:, None]) & (x <= hi[:, None])


def _predilection(lung: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
    """Relative weight of each lung pixel as a lesion centre: peripheral (along the chest wall, not the
    mediastinum) and posterior lung first. `depth`: the lungs' `hull_depth`, when already computed."""
    rows = np.nonzero(lung.any(1))[0]
    scale = max(4.0, 0.08 * (rows.max() - rows.min() + 1))
    depth = hull_depth(lung) if depth is None else depth
    y = np.linspace(0.0, 1.0, lung.shape[0])[:, None]
    y = (y - rows.min() / lung.shape[0]) / max(1e-6, (rows.max() - rows.min()) / lung.shape[0])
    w = (np.exp(-depth / scale) + 0.15) * (0.3 + np.clip(y, 0, 1))
    return np.where(lung, w, 0.0)


def _blob(lung: np.ndarray, centre: tuple[int, int], area: int, rng, depth: np.ndarray | None = None,
          lace: float | None = None) -> np.ndarray:
    """`area` pixels of lung around `centre`: nearest first, with a smooth random boundary. Computed in
    a window of a few radii around the centre (blobs may overlap: overlapping ones merge). With `depth`
    (`hull_depth`), pixels deeper than the centre come later, so the blob spreads along the chest wall.
    With `lace` (pixels), healthy lines about that far apart cross the blob more than LACE_DEPTH inside it."""
    r = max(2.0, np.sqrt(area / np.pi))
    h = int(3 * r + 4)
    y0, y1 = max(0, centre[0] - h), min(lung.shape[0], centre[0] + h + 1)
    x0, x1 = max(0, centre[1] - h), min(lung.shape[1], centre[1] + h + 1)
    win = lung[y0:y1, x0:x1]
    noise = ndimage.gaussian_filter(rng.standard_normal(win.shape), max(1.0, r / 3))
    noise /= noise.std() + 1e-8
    yy, xx = np.indices(win.shape)
    score = -np.hypot(yy + y0 - centre[0], xx + x0 - centre[1]) / r + BLOB_ROUGHNESS * noise
    if depth is not None:
        score -= PERIPHERAL_GROWTH * np.maximum(0.0, depth[y0:y1, x0:x1] - depth[centre]) / r
    score[~win] = -np.inf
    out = np.zeros_like(lung)
    n = min(area, int(win.sum()))
    if n > 0:
        cut = np.partition(score.ravel(), -n)[-n]
        out[y0:y1, x0:x1] = (score >= cut) & win
    if lace is not None:  # healthy lines through the lesion's depth, where a zero line of a smooth field runs
        grown = out[y0:y1, x0:x1]  # a view: cut in place
        g = ndimage.gaussian_filter(rng.standard_normal(grown.shape), lace)
        g /= g.std() + 1e-8
        grown &= ~((np.abs(g) < LACE_WIDTH) & (ndimage.distance_transform_edt(grown) > LACE_DEPTH))
    return out


@register("relayout", default=False)
def _relayout(label4, rng, lesion):
    return relayout(label4, rng)


def relayout(label4: np.ndarray, rng: np.random.Generator, template: np.ndarray | None = None) -> np.ndarray:
    """A new lesion layout on the lungs of `label4`, imitating the lesions of `template` (an annotated map;
    default `label4` itself, whose lesions then all go). Kept from the template: the infected share of the
    lung (jittered on a log scale) and its lesion sizes relative to one another (resampled with
    replacement, so a map with one large lesion and small satellites gives layouts like it, not many equal
    specks); the centres follow COVID-19's predilection (`_predilection`) and spread over both lungs, the
    blobs along the chest wall and laced with healthy lines, as real lesions are (docs/design.md). With a
    template, lesion-free lungs (of an unannotated slice) get the layouts of the k annotated maps."""
    template = label4 if template is None else template
    found = lesions(template)
    if not found:
        raise ValueError("map has no lesion to learn a layout from")
    lung = label4 >= LUNG
    n_lung = int(lung.sum())
    sizes = np.array([m.sum() for m in found], dtype=float)
    if rng.random() < SEVERITY_MIX:  # COVID-19's range of severity, whatever the k maps show
        frac = float(np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
    else:
        share = sizes.sum() / int((template >= LUNG).sum())
        frac = float(np.clip(share * np.exp(rng.uniform(-1.0, 1.0)), 0.01, 0.6))
    count = max(1, int(round(len(found) * np.exp(rng.uniform(-0.5, 0.5)))))
    shares = rng.choice(sizes, count) * np.exp(rng.normal(0.0, 0.3, count))
    areas = np.maximum(MIN_BLOB, shares / shares.sum() * frac * n_lung).astype(int)
    depth = hull_depth(lung)
    w = _predilection(lung, depth).ravel()
    rows = np.nonzero(lung.any(1))[0]
    lace = max(1.0, LACE_SCALE * (rows.max() - rows.min() + 1))
    parts, _ = ndimage.label(lung)  # a lesion grows in its own lung, not across the mediastinum
    out = label4.copy()
    out[out == INFECTION] = LUNG
    lung_px = np.bincount(parts.ravel())
    todo = sorted((int(a) for a in areas), reverse=True)
    while todo:
        a = todo.pop(0)
        healthy = lung_px - np.bincount(parts.ravel(), weights=(out == INFECTION).ravel(), minlength=lung_px.size)
        wl = w * ((healthy / np.maximum(lung_px, 1)) ** LUNG_BALANCE)[parts.ravel()]
        if wl.sum() <= 0:  # every lung pixel infected
            break
        yx = divmod(int(rng.choice(w.size, p=wl / wl.sum())), lung.shape[1])
        cap = int(LESION_CAP * healthy[parts[yx]])
        if min(cap, a - cap) >= MIN_BLOB:  # the rest becomes another lesion, likely in the other lung
            todo = sorted(todo + [a - cap], reverse=True)
            a = cap
        out[_blob(parts == parts[yx], yx, a, rng, depth, lace)] = INFECTION
    return out


def edit_map(label4: np.ndarray, edit: str, rng: np.random.Generator, min_lesion: int = 12,
             template: np.ndarray | None = None) -> np.ndarray:
    """One edit of a 4-class map. Raises ValueError when the edit does not apply (e.g. no lesion).
    `template`: the annotated map whose lesions a `relayout` imitates (other edits ignore it)."""
    if edit not in EDITS:
        raise ValueError(f"unknown edit {edit!r}; choose from {', '.join(EDITS)}")
    if edit == "relayout" and template is not None:
        return _clean(relayout(label4, rng, template), min_lesion)
    e = EDITS[edit]
    lesion = None
    if e.lesion:
        found = lesions(label4)
        if not found:
            raise ValueError("map has no lesion to edit")
        lesion = found[int(rng.integers(len(found)))]
    return _clean(e.fn(label4, rng, lesion), min_lesion)
