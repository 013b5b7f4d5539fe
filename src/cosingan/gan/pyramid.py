"""Scale sizes and resizing, all in torch (no 8-bit round trips)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .encoding import resize_condition


def finest_size(h: int, w: int, max_size: int) -> tuple[int, int]:
    """The training size: long side = max_size (never upscaled beyond the input)."""
    s = min(1.0, max_size / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def scale_sizes(h: int, w: int, min_size: int, max_size: int, factor: float) -> list[tuple[int, int]]:
    """Sizes from coarsest to finest. As in SinGAN, the number of scales comes from `factor` and
    the factor is then adjusted so that the coarsest short side lands exactly on `min_size`."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"scale_factor must be in (0, 1), got {factor}")
    hf, wf = finest_size(h, w, max_size)
    short = min(hf, wf)
    if short <= min_size:
        return [(hf, wf)]
    n = math.ceil(math.log(min_size / short) / math.log(factor)) + 1
    f = (min_size / short) ** (1.0 / (n - 1))
    return [(max(3, round(hf * f ** (n - 1 - i))), max(3, round(wf * f ** (n - 1 - i)))) for i in range(n)]


def sizes_like(trained: list[tuple[int, int]], h: int, w: int) -> list[tuple[int, int]]:
    """Sizes for a condition of another shape: same number of scales and ratios as training,
    finest long side equal to the trained finest long side (so a pixel means the same)."""
    hf0, wf0 = trained[-1]
    s = max(hf0, wf0) / max(h, w)
    hf, wf = max(3, round(h * s)), max(3, round(w * s))
    return [(max(3, round(hf * th / hf0)), max(3, round(wf * tw / wf0))) for th, tw in trained]


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anti-aliased bicubic resize of (B, 1, H, W) images."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def resize_labels(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer map (pixel centres, as PIL's NEAREST)."""
    if tuple(size) == label.shape:
        return label
    t = torch.from_numpy(np.ascontiguousarray(label))[None, None].float()
    return F.interpolate(t, size=tuple(size), mode="nearest-exact")[0, 0].to(torch.uint8).numpy()


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsampling between scales inside the generator (differentiable, cheap)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def image_pyramid(x: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [resize_image(x, s) for s in sizes]


def condition_pyramid(cond: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [resize_condition(cond, s) for s in sizes]
