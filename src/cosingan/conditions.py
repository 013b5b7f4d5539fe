"""Conditions: the label map (plus the body) as the multi-channel map every G and D sees.

A label map holds 0 background, 1 lung, 2 infection. CT slices also show a body around the lungs; a
generator that is not told where the body ends invents it (the prototype's washed-out bodies), so the
condition carries it as a channel: air / body / lung / infection. The body comes from the image when
there is one (threshold + largest component + holes filled) and is estimated from the lungs when only
a label map is given.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

# internal 4-class map: the label map with background split into air and body
AIR, BODY, LUNG, INFECTION = 0, 1, 2, 3

# How far the body reaches beyond the lungs' bounding box, as a fraction of that box (rows, cols).
# Chosen on the 50 dev slices: mean Dice 0.998 against bodies found in the images (docs/design.md).
BODY_MARGIN = (0.20, 0.06)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def body_from_image(image: np.ndarray, label: np.ndarray, threshold: float = -0.4) -> np.ndarray:
    """Body mask of a slice in [-1, 1]: tissue brighter than `threshold`, joined with the lungs."""
    mask = (image > threshold) | (label > 0)
    mask = ndimage.binary_opening(mask, iterations=2) | (label > 0)
    mask = _largest_component(mask)
    mask = ndimage.binary_closing(mask, iterations=3, border_value=0) | mask
    return ndimage.binary_fill_holes(mask)


def body_from_label(label: np.ndarray, margin: tuple[float, float] = BODY_MARGIN) -> np.ndarray:
    """Body estimated from the lungs alone: an ellipse around the lungs' box, widened by `margin`,
    joined with the lungs' filled convex envelope. Used when no image comes with a label map."""
    lung = label > 0
    rows, cols = np.nonzero(lung)
    h, w = label.shape
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    cy, cx = (r0 + r1) / 2, (c0 + c1) / 2
    ry = (r1 - r0) / 2 * (1 + 2 * margin[0]) + 1
    rx = (c1 - c0) / 2 * (1 + 2 * margin[1]) + 1
    yy, xx = np.mgrid[0:h, 0:w]
    # a superellipse (exponent 3) is closer to a chest outline than an ellipse
    body = (np.abs((yy - cy) / ry) ** 3 + np.abs((xx - cx) / rx) ** 3) <= 1.0
    return body | ndimage.binary_fill_holes(ndimage.binary_closing(lung, iterations=5)) | lung


def to_label4(label: np.ndarray, body: np.ndarray | None) -> np.ndarray:
    """0/1/2 label map (+ body mask) -> 0 air / 1 body / 2 lung / 3 infection."""
    out = np.zeros(label.shape, np.uint8)
    if body is not None:
        out[body] = BODY
    out[label == 1] = LUNG
    out[label == 2] = INFECTION
    return out


def label4_to_label(label4: np.ndarray | torch.Tensor):
    """Back to the user's 0/1/2 map (body -> background)."""
    if isinstance(label4, torch.Tensor):
        return torch.clamp(label4.long() - 1, min=0).to(torch.uint8)
    return np.clip(label4.astype(np.int16) - 1, 0, None).astype(np.uint8)


def num_channels(body_channel: bool) -> int:
    return 4 if body_channel else 3


def one_hot(label4: torch.Tensor, body_channel: bool) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) integer map -> (B, C, H, W) float one-hot condition."""
    if label4.dim() == 4:
        label4 = label4[:, 0]
    oh = F.one_hot(label4.long(), 4).permute(0, 3, 1, 2).float()
    if not body_channel:  # air and body merge into "background"
        oh = torch.cat([oh[:, :2].sum(1, keepdim=True), oh[:, 2:]], dim=1)
    return oh


def resize_condition(cond: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Downsample a one-hot condition by area averaging: a soft map keeps thin lesions that nearest
    neighbour would drop or alias at coarse scales; upsampling uses nearest (stays one-hot)."""
    if tuple(cond.shape[-2:]) == tuple(size):
        return cond
    if size[0] <= cond.shape[-2] and size[1] <= cond.shape[-1]:
        return F.interpolate(cond, size=size, mode="area")
    return F.interpolate(cond, size=size, mode="nearest")


def lung_weight(cond: torch.Tensor) -> torch.Tensor:
    """Soft lung (lung + infection) mask from a condition, (B, 1, H, W)."""
    return cond[:, -2:].sum(1, keepdim=True)


# ----------------------------------------------------------------------------- label-map editing
# New plausible conditions from real maps. Every edit works on the 4-class map (air/body/lung/
# infection) so the body travels with the lungs; results pass `check_label4` or are rejected.

EDITS = ("deform", "flip", "move", "scale", "add", "remove", "merge", "negative")


def check_label4(label4: np.ndarray, min_lesion: int = 0) -> str | None:
    """None when the map is a valid condition, else the reason it is not."""
    if label4.dtype != np.uint8 or label4.ndim != 2:
        return "not a 2-D uint8 map"
    if label4.max() > INFECTION:
        return "values outside air/body/lung/infection"
    lung = label4 >= LUNG
    if lung.sum() < 0.01 * label4.size:
        return "lung smaller than 1% of the slice"
    inf = label4 == INFECTION
    if inf.any():
        lab, n = ndimage.label(inf)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            # grow the lesion's box by one pixel, look at the ring around the lesion
            box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
            comp = lab[box] == k
            ring = ndimage.binary_dilation(comp) & ~comp
            if min_lesion and comp.sum() < min_lesion:
                return f"lesion sliver smaller than {min_lesion} px"
            # a lesion is drawn on lung: it must touch lung (along the pleura it may also touch body)
            if ring.any() and not (label4[box][ring] == LUNG).any():
                return "infection outside the lung"
    return None


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


def _lesions(label4: np.ndarray) -> list[np.ndarray]:
    lab, n = ndimage.label(label4 == INFECTION)
    return [lab == k for k in range(1, n + 1)]


def _place(label4: np.ndarray, lesion: np.ndarray, dy: int, dx: int) -> np.ndarray | None:
    """Lesion mask shifted by (dy, dx), cut to the lung; None if less than 60% of it stays in lung."""
    shifted = ndimage.shift(lesion.astype(np.uint8), (dy, dx), order=0, mode="constant") > 0
    inside = shifted & (label4 >= LUNG)
    if inside.sum() < 0.6 * max(1, lesion.sum()):
        return None
    return inside


def edit_map(label4: np.ndarray, edit: str, rng: np.random.Generator, min_lesion: int = 12) -> np.ndarray:
    """One edit of a 4-class map. Raises ValueError when the edit does not apply (e.g. no lesion)."""
    h, w = label4.shape
    out = label4.copy()
    lesions = _lesions(label4)
    if edit == "flip":
        out = label4[:, ::-1].copy()
    elif edit == "deform":
        from monai.transforms import Rand2DElastic

        side = max(h, w)
        tf = Rand2DElastic(spacing=(side // 4, side // 4), magnitude_range=(0.5, 2.0), prob=1.0,
                           rotate_range=0.15, scale_range=(0.12, 0.12), translate_range=(side * 0.04,) * 2,
                           mode="nearest", padding_mode="zeros")
        tf.set_random_state(seed=int(rng.integers(2**31)))
        out = np.rint(np.asarray(tf(label4[None].astype(np.float32)))[0]).clip(0, 3).astype(np.uint8)
    elif edit == "negative":
        out[out == INFECTION] = LUNG
    else:
        if not lesions:
            raise ValueError("map has no lesion to edit")
        k = int(rng.integers(len(lesions)))
        les = lesions[k]
        if edit == "remove":
            out[les] = LUNG
        elif edit in ("move", "add"):
            lung_px = np.argwhere(label4 >= LUNG)
            cy, cx = np.argwhere(les).mean(0)
            for _ in range(20):  # a few tries to land mostly inside the lung
                ty, tx = lung_px[int(rng.integers(len(lung_px)))]
                placed = _place(label4, les, int(ty - cy), int(tx - cx))
                if placed is not None:
                    break
            else:
                raise ValueError("no place in the lung for the lesion")
            if edit == "move":
                out[les] = LUNG
            out[placed] = INFECTION
        elif edit == "scale":
            f = float(rng.uniform(0.6, 1.6))
            cy, cx = np.argwhere(les).mean(0)
            yy, xx = np.mgrid[0:h, 0:w]
            src = ndimage.map_coordinates(les.astype(np.float32), [cy + (yy - cy) / f, cx + (xx - cx) / f], order=0)
            out[les] = LUNG
            out[(src > 0.5) & (label4 >= LUNG)] = INFECTION
        elif edit == "merge":
            if len(lesions) < 2:
                raise ValueError("map has fewer than two lesions to merge")
            inf = out == INFECTION
            joined = ndimage.binary_closing(inf, structure=np.ones((3, 3)), iterations=max(2, min(h, w) // 40))
            out[joined & (label4 >= LUNG)] = INFECTION
        else:
            raise ValueError(f"unknown edit {edit!r}; choose from {', '.join(EDITS)}")
    return _clean(out, min_lesion)
