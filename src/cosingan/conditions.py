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
