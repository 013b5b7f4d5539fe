"""Hierarchical data augmentation of the single training pair.

Level 1 (pair level): a bank of jointly deformed copies of (image, air/body/lung/infection map),
made once per run with MONAI (flip, affine, elastic; bicubic for the image, nearest for the map, so the
map stays in its label set). Each copy gets its own pyramid, so a draw is consistent across scales.

Level 2 (scale level): how often a stage trains on a deformed copy falls from coarse to fine
(`aug_p_coarse` -> `aug_p_fine`). Coarse scales decide layout (where lungs, body and lesions are)
and must generalise to label maps they never saw; fine scales learn texture, which is local and
which resampling would smooth, so they mostly see the untouched pair.
"""

from __future__ import annotations

import numpy as np
import torch


def deform_bank(image: np.ndarray, label4: np.ndarray, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n deformed copies of (image in [-1, 1], label4), deterministic for a seed."""
    if n <= 0:
        return []
    from monai.transforms import Compose, Rand2DElasticd, RandFlipd

    h, w = image.shape
    side = max(h, w)
    tf = Compose([
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
        Rand2DElasticd(
            keys=["image", "label"], prob=1.0,
            spacing=(side // 4, side // 4), magnitude_range=(0.5, 2.0),
            rotate_range=0.15, scale_range=(0.12, 0.12), translate_range=(side * 0.04, side * 0.04),
            mode=("bicubic", "nearest"), padding_mode="zeros",
        ),
    ])
    tf.set_random_state(seed=seed)
    # shift the image so that air is 0: zero padding outside the field of view is then air
    data = {"image": torch.from_numpy(image[None] + 1.0), "label": torch.from_numpy(label4[None].astype(np.float32))}
    out = []
    for _ in range(n):
        d = tf(dict(data))
        img = np.asarray(d["image"])[0].clip(0, 2) - 1.0
        lab = np.rint(np.asarray(d["label"])[0]).clip(0, 3).astype(np.uint8)
        if not (lab >= 2).any():  # a deformation pushed the lungs out of view: keep the original
            img, lab = image.copy(), label4.copy()
        out.append((img.astype(np.float32), lab))
    return out


def aug_probability(stage: int, num_scales: int, p_coarse: float, p_fine: float) -> float:
    if num_scales <= 1:
        return p_fine
    t = stage / (num_scales - 1)
    return p_coarse + (p_fine - p_coarse) * t
