"""Training augmentations of the downstream networks, on whole batches: every random transform is drawn per
item and applied to the batch at once, as tensor operations on the device the network trains on (a batch of
8 costs about what one item did through MONAI's per-item dictionary transforms).

The distributions are those of the MONAI transforms the project used before (`RandFlipd`, `RandAffined`,
`Rand2DElasticd`, `RandScaleIntensityd`, `RandShiftIntensityd`, `RandAdjustContrastd`,
`RandGaussianSmoothd`, `RandGaussianNoised`, with the same probabilities and ranges, MONAI's conventions
included: one rotation angle, one shear factor and a scale of the first image axis only; elastic offsets
of N(0, m^2) pixels, m ~ U(1, 3), on a 24 px control lattice, upsampled bicubically; noise of std
~ U(0, s)). The geometric transforms are composed into one sampling grid (flip, then affine, then
elastic: MONAI resampled once per transform), so an image is interpolated once; a label map moves by
nearest neighbour, so it keeps its values. `strong` is the few-real baseline's augmentation (arm B) and
is meant to be strong. `tests/test_augment.py` compares the drawn transforms with MONAI's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError


def plain(x) -> torch.Tensor:
    """A transform's output as an ordinary tensor that owns its memory. (`np.asarray` of a MONAI MetaTensor
    can view a temporary that is freed at once: training then read reused memory, and the same seed gave
    different models.)"""
    if hasattr(x, "as_tensor"):
        x = x.as_tensor()
    return torch.as_tensor(x).clone()


@dataclass(frozen=True)
class Affine:
    prob: float
    rotate: float = 0.0  # radians, U(-r, r)
    scale: float = 0.0  # first image axis scaled by 1 + U(-s, s)
    shear: float = 0.0  # one shear factor U(-s, s)
    translate: float = 0.0  # pixels, U(-t, t) along each axis


@dataclass(frozen=True)
class Recipe:
    """One augmentation, as data: which transforms, with what probability and range (None: not used)."""

    flip: float = 0.0  # probability of a left-right flip
    affine: Affine | None = None
    elastic: float = 0.0  # probability of the elastic deformation (24 px lattice, magnitude U(1, 3) px)
    scale_intensity: float = 0.0  # probability of x * (1 + U(-0.2, 0.2))
    shift_intensity: float = 0.0  # probability of x + U(-0.1, 0.1)
    contrast: float = 0.0  # probability of a gamma U(0.7, 1.5) on the item's min-max range
    blur: float = 0.0  # probability of a Gaussian blur, sigma U(0.3, 1.0) per axis
    noise: float = 0.0  # probability of Gaussian noise
    noise_std: float = 0.0  # its std is drawn U(0, noise_std)


RECIPES = {
    "none": Recipe(),
    "standard": Recipe(flip=0.5, affine=Affine(0.5, rotate=0.1, scale=0.1)),
    "strong": Recipe(flip=0.5, affine=Affine(0.8, rotate=0.35, scale=0.25, shear=0.1, translate=12), elastic=0.5,
                     scale_intensity=0.5, shift_intensity=0.5, contrast=0.5, blur=0.2, noise=0.5, noise_std=0.04),
    # classifiers: flips and affine moves only (nothing that alters texture: the realism test) ...
    "geometric": Recipe(flip=0.5, affine=Affine(0.7, rotate=0.2, scale=0.15, translate=8)),
    # ... and with a little noise, the classifiers' standard
    "cls-standard": Recipe(flip=0.5, affine=Affine(0.7, rotate=0.2, scale=0.15, translate=8), noise=0.3,
                           noise_std=0.03),
}
ELASTIC_SPACING = 24
ELASTIC_MAGNITUDE = (1.0, 3.0)


class BatchAugment:
    """`recipe` drawn per item and applied to a batch: `aug(image)` or `aug(image, label)` with (B, 1, H, W)
    tensors; seeded (its own generator on `device`), so the same seed gives the same batches."""

    def __init__(self, recipe: Recipe, seed: int, device: torch.device | str = "cpu"):
        self.r = recipe
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    def _u(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.gen, device=self.device)

    def _on(self, n: int, p: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) < p

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None = None):
        image = image.to(self.device, torch.float32)
        grid = self._grid(image.shape)
        if grid is not None:
            image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            if label is not None:
                label = F.grid_sample(label.to(self.device, torch.float32), grid, mode="nearest",
                                      padding_mode="zeros", align_corners=True)
        image = self._intensity(image)
        return image if label is None else (image, label.to(self.device).round().long())

    # ------------------------------------------------------------------------------------------ geometry

    def _grid(self, shape) -> torch.Tensor | None:
        """The sampling grid of every item (B, H, W, 2) in grid_sample's normalized (x, y), or None when the
        recipe moves nothing. Pixel coordinates are centred; item b samples its input at F A (p + d(p)): flip
        F, affine A (rotation, shear, translation, scale, composed as MONAI composes them), elastic d."""
        r, (b, _, h, w) = self.r, shape
        if not (r.flip or r.affine or r.elastic):
            return None
        ys = torch.arange(h, device=self.device, dtype=torch.float32) - (h - 1) / 2
        xs = torch.arange(w, device=self.device, dtype=torch.float32) - (w - 1) / 2
        p = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), 0).expand(b, 2, h, w)  # (row, col)
        flip = self._on(b, r.flip) if r.flip else torch.zeros(b, dtype=torch.bool, device=self.device)
        if r.affine is not None:
            a = self._affine(b, r.affine)
        if r.elastic:
            on = self._on(b, r.elastic)
            p = p + self._elastic(b, h, w) * on[:, None, None, None]
        if r.affine is not None:
            p = torch.einsum("bij,bjhw->bihw", a[:, :, :2], p) + a[:, :, 2, None, None]
        col = torch.where(flip[:, None, None], -p[:, 1], p[:, 1])
        # normalized: -1 and 1 are the centres of the corner pixels (align_corners=True)
        return torch.stack([col / max((w - 1) / 2, 1e-6), p[:, 0] / max((h - 1) / 2, 1e-6)], -1)

    def _affine(self, b: int, af: Affine) -> torch.Tensor:
        """(B, 2, 3): rotate @ shear @ translate @ scale per item (identity where not drawn), on (row, col)."""
        on = self._on(b, af.prob)
        theta = self._u(b, -af.rotate, af.rotate) * on
        shear = self._u(b, -af.shear, af.shear) * on
        t = torch.stack([self._u(b, -af.translate, af.translate), self._u(b, -af.translate, af.translate)], 1)
        t = t * on[:, None]
        scale = 1 + self._u(b, -af.scale, af.scale) * on
        c, s = torch.cos(theta), torch.sin(theta)
        one, zero = torch.ones_like(theta), torch.zeros_like(theta)
        rot = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1),
                           torch.stack([zero, zero, one], 1)], 1)
        sh = torch.stack([torch.stack([one, shear, zero], 1), torch.stack([zero, one, zero], 1),
                          torch.stack([zero, zero, one], 1)], 1)
        tr = torch.stack([torch.stack([one, zero, t[:, 0]], 1), torch.stack([zero, one, t[:, 1]], 1),
                          torch.stack([zero, zero, one], 1)], 1)
        sc = torch.stack([torch.stack([scale, zero, zero], 1), torch.stack([zero, one, zero], 1),
                          torch.stack([zero, zero, one], 1)], 1)
        return (rot @ sh @ tr @ sc)[:, :2]

    def _elastic(self, b: int, h: int, w: int) -> torch.Tensor:
        """(B, 2, H, W) pixel offsets: N(0, m^2) at the points of a lattice of ELASTIC_SPACING px (one point
        beyond the image on each side), m ~ U(ELASTIC_MAGNITUDE) per item, upsampled bicubically, centre crop."""
        sp = ELASTIC_SPACING
        ch, cw = math.ceil(h / sp) + 2, math.ceil(w / sp) + 2
        mag = self._u(b, *ELASTIC_MAGNITUDE)
        coarse = torch.randn(b, 2, ch, cw, generator=self.gen, device=self.device) * mag[:, None, None, None]
        fine = F.interpolate(coarse, scale_factor=sp, mode="bicubic", align_corners=False)
        top, left = (fine.shape[2] - h) // 2, (fine.shape[3] - w) // 2
        return fine[:, :, top: top + h, left: left + w]

    # ----------------------------------------------------------------------------------------- intensity

    def _intensity(self, x: torch.Tensor) -> torch.Tensor:
        r, b = self.r, x.shape[0]
        per = (b, 1, 1, 1)
        if r.scale_intensity:
            on = self._on(b, r.scale_intensity)
            x = x * (1 + self._u(b, -0.2, 0.2) * on).view(per)
        if r.shift_intensity:
            on = self._on(b, r.shift_intensity)
            x = x + (self._u(b, -0.1, 0.1) * on).view(per)
        if r.contrast:
            on = self._on(b, r.contrast)
            gamma = torch.where(on, self._u(b, 0.7, 1.5), torch.ones(b, device=self.device)).view(per)
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            span = x.amax(dim=(1, 2, 3), keepdim=True) - lo
            x = torch.where(on.view(per), ((x - lo) / (span + 1e-7)) ** gamma * span + lo, x)
        if r.blur:
            on = self._on(b, r.blur)
            x = torch.where(on.view(per), _blur(x, self._u(b, 0.3, 1.0), self._u(b, 0.3, 1.0)), x)
        if r.noise:
            on = self._on(b, r.noise)
            std = self._u(b, 0.0, r.noise_std) * on
            x = x + torch.randn(x.shape, generator=self.gen, device=x.device) * std.view(per)
        return x


def _gauss(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 2 radius + 1) Gaussian kernels, one per sigma, as MONAI's 'erf' approximation (normalized)."""
    k = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    t = math.sqrt(2) * sigma[:, None]
    g = 0.5 * (torch.erf((k + 0.5) / t) - torch.erf((k - 0.5) / t))
    return g / g.sum(1, keepdim=True)


def _blur(x: torch.Tensor, sigma_rows: torch.Tensor, sigma_cols: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each (1, H, W) item with its own sigmas (zero padding, truncated at 4 sigma)."""
    b, _, h, w = x.shape
    radius = int(4 * float(torch.maximum(sigma_rows, sigma_cols).max()) + 0.5)
    rows, cols = _gauss(sigma_rows, radius), _gauss(sigma_cols, radius)
    y = F.conv2d(x.reshape(1, b, h, w), rows.view(b, 1, -1, 1), padding=(radius, 0), groups=b)
    y = F.conv2d(y, cols.view(b, 1, 1, -1), padding=(0, radius), groups=b)
    return y.view(b, 1, h, w)


def augmentations(kind: str, seed: int, device: torch.device | str = "cpu") -> BatchAugment:
    """The segmentation's augmentation (image and label map together): none, standard or strong."""
    if kind not in ("none", "standard", "strong"):
        raise InputError(f"--aug must be none, standard or strong, got {kind!r}")
    return BatchAugment(RECIPES[kind], seed, device)


def image_augmentations(kind: str, seed: int, device: torch.device | str = "cpu") -> BatchAugment:
    """A classifier's augmentation of its inputs: `strong` is the segmentation's strong one on the image alone;
    `standard` flips, affine moves and a little noise; `geometric` flips and affine moves only (nothing that
    alters texture: the realism test)."""
    names = {"strong": "strong", "standard": "cls-standard", "geometric": "geometric"}
    if kind not in names:
        raise InputError(f"classifier augmentation must be standard, strong or geometric, got {kind!r}")
    return BatchAugment(RECIPES[names[kind]], seed, device)


def monai_strong(seed: int, keys: tuple[str, ...] = ("image", "label")):
    """The strong augmentation as MONAI's per-item dictionary transforms compose it: what `RECIPES["strong"]`
    reproduces on whole batches (kept for the test that compares the two and the speed benchmark)."""
    from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandFlipd,
                                  RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
                                  RandShiftIntensityd)

    keys = list(keys)
    spatial = ("bilinear", "nearest")[: len(keys)]
    tf = Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandAffined(keys, prob=0.8, rotate_range=0.35, scale_range=0.25, shear_range=0.1, translate_range=(12, 12),
                    mode=spatial, padding_mode="zeros"),
        Rand2DElasticd(keys, prob=0.5, spacing=(24, 24), magnitude_range=(1, 3), mode=spatial, padding_mode="zeros"),
        RandScaleIntensityd("image", factors=0.2, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.5),
        RandGaussianSmoothd("image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), prob=0.2),
        RandGaussianNoised("image", std=0.04, prob=0.5),
    ])
    tf.set_random_state(seed=seed)
    return tf
