"""Training augmentations of the downstream networks (MONAI). `strong` is the few-real baseline's
augmentation (arm B) and is meant to be strong; segmentation moves image and label together."""

from __future__ import annotations

import torch

from ..errors import InputError


def plain(x) -> torch.Tensor:
    """A transform's output as an ordinary tensor that owns its memory. (`np.asarray` of a MONAI MetaTensor
    can view a temporary that is freed at once: training then read reused memory, and the same seed gave
    different models.)"""
    if hasattr(x, "as_tensor"):
        x = x.as_tensor()
    return torch.as_tensor(x).clone()


def augmentations(kind: str, seed: int, keys: tuple[str, ...] = ("image", "label")):
    """MONAI dictionary transforms; image and label move together. `strong` is the few-real baseline's
    augmentation and is meant to be strong: affine, elastic, flips, intensity, noise, blur."""
    from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandFlipd,
                                  RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
                                  RandShiftIntensityd)

    keys = list(keys)
    spatial = ("bilinear", "nearest")[: len(keys)]  # labels (second key) move by nearest neighbour
    if kind == "none":
        return None
    if kind == "standard":
        tf = Compose([RandFlipd(keys, prob=0.5, spatial_axis=1),
                      RandAffined(keys, prob=0.5, rotate_range=0.1, scale_range=0.1, mode=spatial,
                                  padding_mode="zeros")])
    elif kind == "strong":
        tf = Compose([
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandAffined(keys, prob=0.8, rotate_range=0.35, scale_range=0.25, shear_range=0.1,
                        translate_range=(12, 12), mode=spatial, padding_mode="zeros"),
            Rand2DElasticd(keys, prob=0.5, spacing=(24, 24), magnitude_range=(1, 3), mode=spatial,
                           padding_mode="zeros"),
            RandScaleIntensityd("image", factors=0.2, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.5),
            RandGaussianSmoothd("image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), prob=0.2),
            RandGaussianNoised("image", std=0.04, prob=0.5),
        ])
    else:
        raise InputError(f"--aug must be none, standard or strong, got {kind!r}")
    tf.set_random_state(seed=seed)
    return tf


def image_augmentations(kind: str, seed: int):
    """Transforms of (1, H, W) inputs. `strong` is the segmentation's strong augmentation (flips, affine,
    elastic, intensity, contrast, blur, noise) on the image alone; `standard` is lighter than seg's;
    `geometric` is flips and affine moves only (nothing that alters texture: the realism test)."""
    from monai.transforms import Compose, RandAffine, RandFlip, RandGaussianNoise

    if kind == "geometric":
        c = Compose([RandFlip(prob=0.5, spatial_axis=1),
                     RandAffine(prob=0.7, rotate_range=0.2, scale_range=0.15, translate_range=(8, 8),
                                padding_mode="zeros")])
        c.set_random_state(seed=seed)
        return c
    if kind == "strong":
        tf = augmentations("strong", seed, keys=("image",))
        return lambda x: tf({"image": x})["image"]
    if kind != "standard":
        raise InputError(f"classifier augmentation must be standard, strong or geometric, got {kind!r}")
    c = Compose([RandFlip(prob=0.5, spatial_axis=1),
                 RandAffine(prob=0.7, rotate_range=0.2, scale_range=0.15, translate_range=(8, 8),
                            padding_mode="zeros"),
                 RandGaussianNoise(prob=0.3, std=0.03)])
    c.set_random_state(seed=seed)
    return c
