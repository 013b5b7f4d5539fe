"""The condition as the networks see it: a one-hot map (air/body/lung/infection, or background/lung/
infection without the body channel), resized per scale, and the soft lung mask derived from it.

With `body_fields`, four smooth fields computed from the map come first: depth below the skin, distance
from the lungs, and the position in the body's box (front to back, left to right). The map says only
"body" outside the lungs; the fields tell a generator where in the body a pixel is, so that it can draw
the spine, ribs and mediastinum where they belong on any map (issue 36)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FIELDS = 4
# distances are in units of this share of the map's long side, then clipped to 1: the chest wall and
# the mediastinum lie within it
_REACH = 0.2


def num_channels(body_channel: bool, body_fields: bool = False) -> int:
    return (4 if body_channel else 3) + (FIELDS if body_fields else 0)


def one_hot(label4: torch.Tensor, body_channel: bool) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) integer map -> (B, C, H, W) float one-hot condition."""
    if label4.dim() == 4:
        label4 = label4[:, 0]
    oh = F.one_hot(label4.long(), 4).permute(0, 3, 1, 2).float()
    if not body_channel:  # air and body merge into "background"
        oh = torch.cat([oh[:, :2].sum(1, keepdim=True), oh[:, 2:]], dim=1)
    return oh


def body_fields(label4: np.ndarray) -> np.ndarray:
    """(H, W) 4-class map -> (4, H, W) float32 fields, zero in the air: depth below the skin and distance
    from the lungs (each over `_REACH` of the long side, clipped to 1), and the position in the body's
    bounding box, -1..1 from front (top) to back and from the image's left to right."""
    from scipy.ndimage import distance_transform_edt

    body = label4 > 0
    out = np.zeros((FIELDS,) + label4.shape, np.float32)
    if not body.any():
        return out
    reach = _REACH * max(label4.shape)
    # the frame counts as skin: a body cut by the field of view has no depth beyond it
    depth = distance_transform_edt(np.pad(body, 1))[1:-1, 1:-1]
    lung = label4 >= 2
    from_lung = distance_transform_edt(~lung) if lung.any() else np.full(label4.shape, reach)
    rows, cols = np.nonzero(body)
    y = np.arange(label4.shape[0], dtype=np.float64)[:, None]
    x = np.arange(label4.shape[1], dtype=np.float64)[None, :]
    fy = (y - rows.min()) / max(rows.max() - rows.min(), 1) * 2 - 1
    fx = (x - cols.min()) / max(cols.max() - cols.min(), 1) * 2 - 1
    for k, f in enumerate((np.minimum(depth / reach, 1), np.minimum(from_lung / reach, 1), fy, fx)):
        out[k] = np.where(body, f, 0)  # fy (H, 1) and fx (1, W) broadcast to the map
    return out


def condition(label4: torch.Tensor, body_channel: bool, fields: bool) -> torch.Tensor:
    """The networks' full-size condition of (B, H, W) maps: the one-hot map, after the body fields when
    asked for (lung and infection stay the last two channels, as `lung_weight` reads them)."""
    oh = one_hot(label4, body_channel)
    if not fields:
        return oh
    maps = (label4[:, 0] if label4.dim() == 4 else label4).cpu().numpy()
    f = torch.from_numpy(np.stack([body_fields(m) for m in maps])).to(oh.device)
    return torch.cat([f, oh], 1)


def one_hot_part(cond: torch.Tensor, body_channel: bool) -> torch.Tensor:
    """The one-hot channels of a condition, with or without fields in front."""
    return cond[:, -num_channels(body_channel):]


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
