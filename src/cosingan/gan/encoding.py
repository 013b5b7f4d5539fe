"""The condition as the networks see it: a one-hot map (air/body/lung/infection, or background/lung/
infection without the body channel), resized per scale, and the soft lung mask derived from it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
