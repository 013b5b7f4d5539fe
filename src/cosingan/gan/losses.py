"""WGAN-GP with optional region weights, and the mixed reconstruction loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def score(out: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean critic score per sample; with `weight`, only the weighted region counts (lung critic)."""
    out = out.float()  # under autocast the critic may answer in bfloat16
    if weight is None:
        return out.flatten(1).mean(1)
    return (out * weight).flatten(1).sum(1) / (weight.flatten(1).sum(1) + _EPS)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """SinGAN's per-pixel form: the gradient of the summed patch scores should have norm 1 at every
    pixel. Unlike a penalty on the mean score, its strength does not depend on the image size."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
    # float32 even under mixed precision: the penalty pulls gradient norms to exactly 1, and bfloat16's
    # 8-bit mantissa would turn that target into noise
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = critic(x, cond.float())
        if weight is not None:
            out = out * weight
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        if weight is None:
            return ((g.norm(dim=1) - 1) ** 2).mean()
        # lung critic: only pixels that can reach a lung patch carry a gradient; penalise those
        reach = (g.detach().abs().sum(1) > 0).float()
        return (((g.norm(dim=1) - 1) ** 2) * reach).sum() / (reach.sum() + _EPS)


def critic_loss(critic, real, fake, cond, gp_weight: float, weight=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (loss, Wasserstein estimate). `fake` must be detached."""
    s_real = score(critic(real, cond), weight).mean()
    s_fake = score(critic(fake, cond), weight).mean()
    gp = gradient_penalty(critic, real, fake, cond, weight)
    return s_fake - s_real + gp_weight * gp, (s_real - s_fake).detach()


class MixedReconstruction:
    """Reconstruction loss of one training step.

    plain (SinGAN):  MSE(G_chain(fixed noise), real)
    mixed (ours):    (1-t) * MSE(chain) + t * mean_i MSE(G_i(up(real_{i-1}), 0), real_i)
                     + s * (1 - SSIM(chain, real))
    The chained term keeps the pyramid coherent end to end; the teacher-forced term gives every
    trainable scale a clean target that does not depend on its (still changing) coarser neighbours,
    which steadies concurrent training; SSIM keeps local structure (vessel edges, lesion borders) that
    MSE blurs.
    """

    def __init__(self, mixed: bool, teacher_weight: float, ssim_weight: float):
        self.mixed = mixed
        self.t = teacher_weight if mixed else 0.0
        self.s = ssim_weight if mixed else 0.0
        self._ssim = None
        if self.s > 0:
            from monai.losses import SSIMLoss

            self._ssim = SSIMLoss(spatial_dims=2, data_range=2.0, win_size=7)

    def __call__(self, chain: torch.Tensor, real: torch.Tensor,
                 teacher: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        chain, real = chain.float(), real.float()  # losses in float32 under mixed precision
        terms = {"rec_chain": F.mse_loss(chain, real)}
        total = (1 - self.t) * terms["rec_chain"]
        if self.t > 0 and teacher:
            terms["rec_teacher"] = torch.stack([F.mse_loss(o.float(), r.float()) for o, r in teacher]).mean()
            total = total + self.t * terms["rec_teacher"]
        if self._ssim is not None and min(real.shape[-2:]) >= 7:
            terms["rec_ssim"] = self._ssim(chain, real)
            total = total + self.s * terms["rec_ssim"]
        terms["rec"] = total
        return terms
