"""Differentiable augmentation of what the critics see (DiffAugment, Zhao et al. 2020; One-Shot GAN).

A critic trained on one slice can memorise it; augmenting both its real and its fake inputs, with the
gradient flowing through the augmentation to the generator, makes it judge texture and structure rather
than the exact pixels it has seen. Each draw is applied to the image(s) and the condition together, so a
conditional critic still sees an image and the map that belongs to it:

- `color`: brightness and contrast of the image (the map unchanged; DiffAugment's saturation has no
  meaning for one grey channel);
- `translation`: a shift of up to 1/8 of each side, image and map, air filled in from the border;
- `cutout`: a square of half the side blanked in image and map (the map then says nothing there).

Real and fake of one critic step share the draw, so the gradient penalty's interpolates have one map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")
_BRIGHTNESS = 0.5  # width: +-0.25 on images in [-1, 1], half of DiffAugment's (a CT value means a tissue)
_CONTRAST = (0.5, 1.5)
_SHIFT = 0.125
_CUTOUT = 0.5


def parse(policy: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" -> (). Raises ValueError on an unknown name."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"train.d_aug: unknown augmentation {', '.join(bad)}; choose from {', '.join(POLICIES)}")
    return names


def augment(images: list[torch.Tensor], cond: torch.Tensor, policy: tuple[str, ...], air: int
            ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One random draw per sample applied to every tensor of `images` (each (B, 1, H, W)) and to `cond`
    (B, C, H, W), whose channel `air` is the air one-hot channel (set where a shift uncovers the frame)."""
    if not policy:
        return images, cond
    b, dev = cond.shape[0], cond.device
    if "color" in policy:
        shift = (torch.rand(b, 1, 1, 1, device=dev) - 0.5) * _BRIGHTNESS
        gain = torch.empty(b, 1, 1, 1, device=dev).uniform_(*_CONTRAST)
        images = [(x - x.mean((1, 2, 3), keepdim=True)) * gain + x.mean((1, 2, 3), keepdim=True) + shift
                  for x in images]
    h, w = cond.shape[-2:]
    if "translation" in policy:
        ph, pw = max(1, int(h * _SHIFT + 0.5)), max(1, int(w * _SHIFT + 0.5))
        dy = torch.randint(-ph, ph + 1, (b,)).tolist()
        dx = torch.randint(-pw, pw + 1, (b,)).tolist()
        pad = (pw, pw, ph, ph)
        frame = 1 - F.pad(torch.ones_like(cond[:, :1]), pad)
        cond_p = F.pad(cond, pad)
        cond_p[:, air: air + 1] += frame
        padded = [F.pad(x, pad, value=-1.0) for x in images]

        def crop(t: torch.Tensor) -> torch.Tensor:
            return torch.stack([t[i, :, ph - dy[i]: ph - dy[i] + h, pw - dx[i]: pw - dx[i] + w] for i in range(b)])

        images, cond = [crop(x) for x in padded], crop(cond_p)
    if "cutout" in policy:
        ch, cw = max(1, int(h * _CUTOUT + 0.5)), max(1, int(w * _CUTOUT + 0.5))
        cy = torch.randint(0, h + (1 - ch % 2), (b,), device=dev)
        cx = torch.randint(0, w + (1 - cw % 2), (b,), device=dev)
        y0 = (cy - ch // 2)[:, None, None]
        x0 = (cx - cw // 2)[:, None, None]
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        out = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
        keep = (~out)[:, None].to(cond.dtype)
        images, cond = [x * keep.to(x.dtype) for x in images], cond * keep
    return images, cond
