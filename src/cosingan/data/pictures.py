"""8-bit pictures for people: image and label maps as grey levels, and grids of tiles."""

from __future__ import annotations

import math

import numpy as np


def image_to_uint8(img) -> np.ndarray:
    """Image in [-1, 1] (numpy array or torch tensor) -> uint8 0..255."""
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    return np.round((np.clip(a, -1, 1) + 1) * 127.5).astype(np.uint8)


def label_to_uint8(label: np.ndarray) -> np.ndarray:
    """0/1/2 label map -> 0/127/254 grey levels."""
    return (label.astype(np.uint16) * 127).clip(0, 255).astype(np.uint8)


def tile(images: list[np.ndarray], cols: int, pad: int = 2) -> np.ndarray:
    """uint8 grid of uint8 tiles; smaller tiles sit top-left in a white cell of the largest size."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y: y + im.shape[0], x: x + im.shape[1]] = im
    return out


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An image in [-1, 1] resized to `shape` (bilinear, antialiased when shrinking), kept in [-1, 1]."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", antialias=True,
                                           align_corners=False)[0, 0].clamp(-1, 1).numpy()
