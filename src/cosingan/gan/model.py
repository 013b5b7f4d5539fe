"""The CoSinGAN pyramid: one nn.Module holding every scale's generator and critics.

Noise amplitudes, scale sizes and the fixed reconstruction noise are buffers, so `state_dict()` is the
whole model and nothing lives in parallel lists.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .encoding import lung_weight, num_channels
from .pyramid import upsample


class OutConv(nn.Conv2d):
    """A net's last 3x3 conv, to one or a few channels. At inference it runs as 1x1 convs to its nine taps,
    summed shifted: oneDNN's 3x3 kernels for so few output channels are far slower than the taps
    (docs/performance.md). Equal to the conv to float rounding; a 1x1 conv without bias commutes with any
    of the paddings. Training keeps the plain conv, whose backward is faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        cout, h, w = self.out_channels, x.shape[-2], x.shape[-1]
        taps = F.conv2d(x, self.weight.permute(2, 3, 0, 1).reshape(9 * cout, -1, 1, 1))
        # summed in the bias's precision (float32 under bf16 autocast): one cast here, not one per tap
        taps = taps.to(torch.promote_types(taps.dtype, self.bias.dtype), memory_format=torch.contiguous_format)
        if self.padding_mode != "zeros":
            taps = F.pad(taps, (1, 1, 1, 1), mode=self.padding_mode)
            out = taps[:, 4 * cout:5 * cout, 1:1 + h, 1:1 + w] + self.bias.view(1, cout, 1, 1)
            for k in (0, 1, 2, 3, 5, 6, 7, 8):  # the centre tap started the sum
                i, j = divmod(k, 3)
                out += taps[:, k * cout:(k + 1) * cout, i:i + h, j:j + w]
            return out
        # zeros: each tap adds where its shifted source lies inside the image, no padded copy needed
        out = taps[:, 4 * cout:5 * cout] + self.bias.view(1, cout, 1, 1)
        for k in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = k // 3 - 1, k % 3 - 1
            out[:, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)].add_(
                taps[:, k * cout:(k + 1) * cout, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)])
        return out


def conv_net(in_ch: int, ch: int, layers: int, out_ch: int, padding: str = "zeros") -> nn.Sequential:
    """`layers` 3x3 convs (padding keeps the size: fully convolutional), LeakyReLU between.
    No normalisation: batch statistics of a single image are meaningless (as in ConSinGAN)."""
    mods: list[nn.Module] = []
    c = in_ch
    for _ in range(layers - 1):
        mods += [nn.Conv2d(c, ch, 3, padding=1, padding_mode=padding), nn.LeakyReLU(0.2, inplace=True)]
        c = ch
    mods.append(OutConv(c, out_ch, 3, padding=1, padding_mode=padding))
    return nn.Sequential(*mods)


class ModulatedNet(nn.Module):
    """`conv_net` whose hidden activations the condition scales and shifts per pixel (SPADE's modulation,
    without its normalisation, which a single image cannot estimate): the map steers every layer instead
    of only the first. The modulation convs start at zero, so training starts from the plain net."""

    def __init__(self, in_ch: int, cond_ch: int, ch: int, layers: int, out_ch: int, padding: str = "zeros"):
        super().__init__()
        widths = [in_ch] + [ch] * (layers - 1) + [out_ch]
        self.convs = nn.ModuleList((OutConv if i == layers - 1 else nn.Conv2d)(
            a, b, 3, padding=1, padding_mode=padding) for i, (a, b) in enumerate(zip(widths, widths[1:])))
        self.mods = nn.ModuleList(nn.Conv2d(cond_ch, 2 * ch, 3, padding=1, padding_mode=padding)
                                  for _ in range(layers - 1))
        for m in self.mods:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for conv, mod in zip(self.convs, self.mods):
            gamma, beta = mod(cond).chunk(2, 1)
            x = F.leaky_relu(conv(x) * (1 + gamma) + beta, 0.2)
        return self.convs[-1](x)


def generator_net(cfg: ModelConfig, cond_ch: int, layers: int) -> nn.Module:
    """One of a scale's generators: the map, noise and coarser output concatenated at the input, and with
    `model.modulation` the map modulating every hidden layer too."""
    if cfg.modulation:
        return ModulatedNet(2 + cond_ch, cond_ch, cfg.channels, layers, 1, cfg.padding)
    return conv_net(2 + cond_ch, cfg.channels, layers, 1, cfg.padding)


class ScaleGenerator(nn.Module):
    """One scale. Stage 1 (`structure`) draws the whole slice as a residual on the upsampled coarser
    output; stage 2 (`refine`, optional) adds lung texture and lesions only inside the lung mask."""

    def __init__(self, cfg: ModelConfig, layers: int):
        super().__init__()
        c = num_channels(cfg.body_channel, cfg.body_fields)
        self.structure = generator_net(cfg, c, layers)
        self.refine = generator_net(cfg, c, cfg.refine_layers) if cfg.two_stage else None

    def _net(self, net: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return net(x, cond) if isinstance(net, ModulatedNet) else net(x)

    def forward(self, prev: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor, amp: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        z = noise * amp
        x1 = prev + torch.tanh(self._net(self.structure, torch.cat([prev, z[:, :1], cond], 1), cond))
        if self.refine is None:
            return x1, x1
        # a slightly dilated lung mask lets the refinement blend across the lung border
        m = F.max_pool2d(lung_weight(cond), 3, stride=1, padding=1)
        x2 = x1 + m * torch.tanh(self._net(self.refine, torch.cat([x1, z[:, 1:2], cond], 1), cond))
        return x1, x2


LAYOUT_POOL = 4  # the layout path's downsampling: a 3-layer critic's 7 px patches become 28 px


class Critic(nn.Module):
    """Conditional patch critic (WGAN): a score map, one score per receptive-field patch. With
    `model.critic_layout` a second net judges the input average-pooled `LAYOUT_POOL`x: patches that span
    how structures are arranged (spine, ribs, vessels' course) instead of their texture; its scores,
    repeated back to the input's size, add to the patch scores, so losses and penalties stay per pixel."""

    def __init__(self, cfg: ModelConfig, layers: int):
        super().__init__()
        c = 1 + num_channels(cfg.body_channel, cfg.body_fields)
        self.net = conv_net(c, cfg.channels, layers, 1)
        self.layout = conv_net(c, cfg.channels, layers, 1) if cfg.critic_layout else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, cond], 1)
        out = self.net(h)
        if self.layout is None:
            return out
        coarse = self.layout(F.avg_pool2d(h, LAYOUT_POOL, ceil_mode=True))
        return out + F.interpolate(coarse, size=out.shape[-2:], mode="nearest")


class CoSinGAN(nn.Module):
    def __init__(self, cfg: ModelConfig, sizes: list[tuple[int, int]], pairs: int = 1):
        """`pairs` training pairs share the pyramid (a few-shot generator); each has its own fixed
        reconstruction noise."""
        super().__init__()
        self.cfg = cfg
        n = len(sizes)
        self.layers = [cfg.coarse_layers if cfg.coarse_layers and min(s) <= cfg.coarse_max else cfg.num_layers
                       for s in sizes]
        self.gens = nn.ModuleList(ScaleGenerator(cfg, k) for k in self.layers)
        self.critics = nn.ModuleList(Critic(cfg, k) for k in self.layers)
        # stage 2's own critic judges the lung region only
        self.lung_critics = nn.ModuleList(Critic(cfg, k) for k in self.layers) if cfg.two_stage else None
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long))
        self.register_buffer("noise_amp", torch.zeros(n))
        self.register_buffer("rec_noise", torch.zeros(pairs, 2, *sizes[0]))
        self.register_buffer("trained", torch.zeros((), dtype=torch.long))  # finished scales

    def place(self, device: torch.device) -> "CoSinGAN":
        """Moved to `device`; on the CPU with its 4-D weights channels-last, so every conv runs in that
        format (oneDNN's kernels for these narrow convs are faster in it: docs/performance.md)."""
        fmt = torch.channels_last if device.type == "cpu" else torch.preserve_format
        return self.to(device, memory_format=fmt)

    @property
    def num_scales(self) -> int:
        return len(self.gens)

    def size_list(self) -> list[tuple[int, int]]:
        return [(int(h), int(w)) for h, w in self.sizes.tolist()]

    def forward(self, conds: list[torch.Tensor], noises: list[torch.Tensor], start: int = 0,
                stop: int | None = None, x: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run scales start..stop-1. `x` is the output of scale start-1 (None at the coarsest).
        Returns (stage-1 output, final output) of the last scale run."""
        stop = self.num_scales if stop is None else stop
        x1 = x
        for i in range(start, stop):
            cond = conds[i]
            prev = torch.zeros_like(cond[:, :1]) if x is None else upsample(x, cond.shape[-2:])
            x1, x = self.gens[i](prev, cond, noises[i], self.noise_amp[i])
        return x1, x

    def margin(self, i: int) -> int:
        """Receptive-field radius of scale i's generator (3x3 convs, +1 for the mask dilation)."""
        return self.layers[i] + (self.cfg.refine_layers + 1 if self.cfg.two_stage else 0)

    def scale_window(self, i: int, x: torch.Tensor | None, cond: torch.Tensor, noise: torch.Tensor,
                     win: tuple[slice, slice]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale i's output on the window `win` only, exactly equal to cropping the full output: the
        generator runs on the window grown by its receptive field (clipped at the image border,
        where the padding then matches the full-image computation), and the rim is cut off."""
        h, w = cond.shape[-2:]
        m = self.margin(i)
        t0, t1 = win[0].start or 0, win[0].stop or h
        l0, l1 = win[1].start or 0, win[1].stop or w
        a0, a1, b0, b1 = max(0, t0 - m), min(h, t1 + m), max(0, l0 - m), min(w, l1 + m)
        prev = torch.zeros_like(cond[:, :1]) if x is None else upsample(x, (h, w))
        big = (slice(a0, a1), slice(b0, b1))
        x1, x2 = self.gens[i](prev[..., big[0], big[1]], cond[..., big[0], big[1]],
                              noise[..., big[0], big[1]], self.noise_amp[i])
        inner = (slice(t0 - a0, t1 - a0), slice(l0 - b0, l1 - b0))
        return x1[..., inner[0], inner[1]], x2[..., inner[0], inner[1]]

    def draw_noise(self, conds: list[torch.Tensor], generator: torch.Generator | None = None
                   ) -> list[torch.Tensor]:
        dev = generator.device if generator is not None else conds[0].device
        return [torch.randn(c.shape[0], 2, *c.shape[-2:], generator=generator, device=dev).to(c.device)
                for c in conds]

    @property
    def pairs(self) -> int:
        return self.rec_noise.shape[0]

    def rec_noises(self, conds: list[torch.Tensor]) -> list[torch.Tensor]:
        """Reconstruction noise of every training pair (batch order): the fixed noise at the coarsest
        scale, zero above (SinGAN)."""
        k = self.pairs
        return [self.rec_noise] + [torch.zeros(k, 2, *c.shape[-2:], device=c.device) for c in conds[1:]]
