"""Training: ConSinGAN-style growth (one new scale per stage, the newest `train_depth` scales train
together), conditional WGAN-GP critics, reconstruction, and the three CoSinGAN parts.

`Trainer` owns one run's networks, optimizers and training pair; `train.py` decides what to do with a
run folder (new, resume, done) and calls it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.files import save_png
from ..data.labelmap import label4_to_label
from ..data.pictures import image_to_uint8, label_to_uint8, tile
from ..errors import InputError
from .augment import aug_probability, deform_bank
from ..devices import resolve_device
from .checkpoint import CKPT, rng_state, save_checkpoint, set_rng_state, versions
from .config import FORMAT_VERSION, Config, ModelConfig, config_to_dict
from .diffaug import augment, parse
from .encoding import condition, lung_weight, num_channels, one_hot_part
from .losses import MixedReconstruction, critic_loss, score
from .model import CoSinGAN
from .pyramid import condition_pyramid, image_pyramid, scale_sizes, upsample
from .runlog import write_curves, write_log_csv


@dataclass
class Pyramids:
    reals: list[torch.Tensor]  # (n, 1, h, w) per scale, coarse -> fine; n pairs
    conds: list[torch.Tensor]  # (n, C, h, w)

    def pair(self, i: int) -> "Pyramids":
        return Pyramids([r[i: i + 1] for r in self.reals], [c[i: i + 1] for c in self.conds])


def build_pyramids(image: np.ndarray, label4: np.ndarray, sizes, mc: ModelConfig, device) -> Pyramids:
    """Pyramids of one pair (h, w) or of a stack of pairs (n, h, w) on one canvas."""
    image, label4 = np.ascontiguousarray(image), np.ascontiguousarray(label4)
    if image.ndim == 2:
        image, label4 = image[None], label4[None]
    x = torch.from_numpy(image)[:, None].to(device)
    c = condition(torch.from_numpy(label4).to(device), mc.body_channel, mc.body_fields)
    return Pyramids(image_pyramid(x, sizes), condition_pyramid(c, sizes))


def stack_pairs(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several prepared pairs on one canvas (the largest height and width), each centred and padded
    with air (image -1, map 0): a few-shot generator trains on the stack. One pair stays 2-D."""
    if len(pairs) == 1:
        return pairs[0]
    h = max(i.shape[0] for i, _ in pairs)
    w = max(i.shape[1] for i, _ in pairs)
    imgs = np.full((len(pairs), h, w), -1.0, np.float32)
    labs = np.zeros((len(pairs), h, w), np.uint8)
    for k, (i, l) in enumerate(pairs):
        t, s = (h - i.shape[0]) // 2, (w - i.shape[1]) // 2
        imgs[k, t: t + i.shape[0], s: s + i.shape[1]] = i
        labs[k, t: t + i.shape[0], s: s + i.shape[1]] = l
    return imgs, labs


class Trainer:
    def __init__(self, run: Path, cfg: Config, image: np.ndarray, label4: np.ndarray):
        self.run, self.cfg = run, cfg
        self.mc, self.tc = cfg.model, cfg.train
        self.device = resolve_device(cfg.device)
        self.image, self.label4 = image, label4  # (h, w), or (k, h, w) for k pairs on one canvas
        imgs, labs = (image[None], label4[None]) if image.ndim == 2 else (image, label4)
        sizes = scale_sizes(*imgs.shape[-2:], self.mc.min_size, self.mc.max_size, self.mc.scale_factor)
        self.sizes = sizes
        self.data = build_pyramids(imgs, labs, sizes, self.mc, self.device)  # every pair
        self.pairs = [self.data.pair(i) for i in range(len(imgs))]
        bank = []
        if self.tc.hier_aug:  # the bank's copies are shared out over the pairs
            for i in range(len(imgs)):
                n = self.tc.aug_bank // len(imgs) + (i < self.tc.aug_bank % len(imgs))
                bank += deform_bank(imgs[i], labs[i], n, seed=cfg.seed + 1 + i)
        self.bank = [build_pyramids(i, l, sizes, self.mc, self.device) for i, l in bank]
        self.model = CoSinGAN(self.mc, sizes, len(imgs)).place(self.device)
        self.d_aug = parse(self.tc.d_aug)
        self.rec_loss = MixedReconstruction(self.tc.mixed_rec, self.tc.rec_teacher_weight, self.tc.rec_ssim_weight)
        self.stage, self.iter, self.log, self.stage_ends = 0, 0, [], []
        self.stage_seconds: list[float] = []  # wall time per finished stage (samples and saves included)
        self.opt_g = self.opt_d = None
        self.source: dict = {"kind": "png", "spacing": None}  # how the input came (outputs match it)
        self._curves_at = time.monotonic()

    # -- state
    def checkpoint(self, done: bool = False) -> dict:
        return {
            "format_version": FORMAT_VERSION, "config": config_to_dict(self.cfg), "sizes": self.sizes,
            "stage": self.stage, "iter": self.iter, "done": done, "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict() if self.opt_g else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "rng": rng_state(), "log": self.log, "stage_ends": self.stage_ends,
            "stage_seconds": self.stage_seconds,
            "data": {"image": torch.from_numpy(self.image), "label4": torch.from_numpy(self.label4),
                     **self.source},
            "versions": versions(),
        }

    def save(self, done: bool = False) -> None:
        save_checkpoint(self.run, self.checkpoint(done))
        write_log_csv(self.run, self.log)

    def restore(self, ckpt: dict) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise InputError(f"{self.run / CKPT}: weights do not fit the model config "
                             f"({str(e).splitlines()[0]})") from None
        self.stage, self.iter = ckpt["stage"], ckpt["iter"]
        self.log, self.stage_ends = list(ckpt["log"]), list(ckpt["stage_ends"])
        self.stage_seconds = list(ckpt.get("stage_seconds", []))
        if ckpt["opt_g"] is not None:  # mid-stage: rebuild this stage's optimizers, then their state
            self._begin_stage(fresh=False)
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
        set_rng_state(ckpt["rng"])

    # -- stages
    def _lo(self) -> int:
        return max(0, self.stage - self.tc.train_depth + 1)

    @torch.no_grad()
    def _rec_output(self, stop: int) -> torch.Tensor | None:
        """Noise-free reconstruction through scales 0..stop-1 (None for stop == 0)."""
        if stop == 0:
            return None
        conds = self.data.conds
        return self.model(conds, self.model.rec_noises(conds), 0, stop)[1]

    def _begin_stage(self, fresh: bool) -> None:
        s, m = self.stage, self.model
        if fresh:
            if s == 0:
                m.rec_noise.copy_(torch.randn(m.rec_noise.shape, device=self.device))
                m.noise_amp[0] = 1.0
            else:
                # ConSinGAN: a new scale starts from its coarser neighbour's weights (same depth only)
                if m.layers[s] == m.layers[s - 1]:
                    m.gens[s].load_state_dict(m.gens[s - 1].state_dict())
                    m.critics[s].load_state_dict(m.critics[s - 1].state_dict())
                    if m.lung_critics is not None:
                        m.lung_critics[s].load_state_dict(m.lung_critics[s - 1].state_dict())
                prev = upsample(self._rec_output(s), self.sizes[s])
                rmse = torch.sqrt(torch.mean((prev - self.data.reals[s]) ** 2))
                m.noise_amp[s] = self.tc.noise_amp * rmse
        lo = self._lo()
        self.base_lr_g = [self.tc.lr_g * self.tc.lr_scale ** (s - i) for i in range(lo, s + 1)]
        self.opt_g = torch.optim.Adam([{"params": m.gens[i].parameters(), "lr": lr}
                                       for i, lr in zip(range(lo, s + 1), self.base_lr_g)], betas=self.tc.betas)
        d_params = list(m.critics[s].parameters())
        if m.lung_critics is not None:
            d_params += list(m.lung_critics[s].parameters())
        self.opt_d = torch.optim.Adam(d_params, lr=self.tc.lr_d, betas=self.tc.betas)
        self.rec_lo = self._rec_output(lo)  # frozen scales below the trainable window: computed once

    def _set_lr(self) -> None:
        decay = 0.1 if self.iter >= self.tc.lr_decay_at * self.tc.iters else 1.0
        for g, lr in zip(self.opt_g.param_groups, self.base_lr_g):
            g["lr"] = lr * decay
        for g in self.opt_d.param_groups:
            g["lr"] = self.tc.lr_d * decay

    def _crop(self, h: int, w: int):
        c = self.tc.d_crop
        if c <= 0 or (h <= c and w <= c):
            return (slice(None), slice(None))
        ch, cw = min(c, h), min(c, w)
        top = int(torch.randint(0, h - ch + 1, ()))
        left = int(torch.randint(0, w - cw + 1, ()))
        return (slice(top, top + ch), slice(left, left + cw))

    def step(self) -> dict:
        """One iteration of the current stage: d_steps critic updates, g_steps generator updates."""
        if self.tc.amp == "none":
            return self._step()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            return self._step()

    def _step(self) -> dict:
        s, m = self.stage, self.model
        lo = self._lo()
        self._set_lr()
        pyr = self._draw_pair()
        conds = pyr.conds[: s + 1]
        noises = m.draw_noise(conds)
        with torch.no_grad():  # scales below the newest: full size; the newest runs on windows
            x_lo = m(conds, noises, 0, lo)[1] if lo > 0 else None
            x_prev = m(conds, noises, lo, s, x=x_lo)[1]
        entry = self._critic_steps(pyr, noises, x_prev)
        entry.update(self._generator_steps(pyr, noises, x_lo))
        return entry

    def _finite(self, loss: torch.Tensor, which: str) -> None:
        """Stop at the first non-finite loss: training on would only write a NaN model."""
        if not torch.isfinite(loss):
            raise InputError(f"{self.run}: the {which} loss became {float(loss.detach())} at stage {self.stage + 1}, "
                             f"iteration {self.iter + 1}; training stopped (check the learning rates and loss "
                             "weights in the config)")

    def _draw_pair(self) -> Pyramids:
        """Hierarchical augmentation: a deformed copy with the stage's probability, else a real pair
        (of several, one at random)."""
        if self.bank and torch.rand(()) < aug_probability(self.stage, self.model.num_scales,
                                                          self.tc.aug_p_coarse, self.tc.aug_p_fine):
            return self.bank[int(torch.randint(0, len(self.bank), ()))]
        if len(self.pairs) == 1:
            return self.pairs[0]
        return self.pairs[int(torch.randint(0, len(self.pairs), ()))]

    def _critics(self):
        s, m = self.stage, self.model
        return m.critics[s], (m.lung_critics[s] if m.lung_critics is not None else None)

    def _critic_view(self, images: list[torch.Tensor], cond: torch.Tensor):
        """The critics' inputs after `train.d_aug` (one draw for all of them; unchanged when off)."""
        return augment(images, cond, self.d_aug, air=cond.shape[1] - num_channels(self.mc.body_channel))

    def _critic_steps(self, pyr: Pyramids, noises: list[torch.Tensor], x_prev: torch.Tensor) -> dict:
        """d_steps updates of the newest scale's critics on random windows of the fakes."""
        s, m, tc = self.stage, self.model, self.tc
        real, cond = pyr.reals[s], pyr.conds[s]
        critic, lung_critic = self._critics()
        entry: dict = {}
        for _ in range(tc.d_steps):
            win = self._crop(*real.shape[-2:])
            with torch.no_grad():
                f1, f2 = m.scale_window(s, x_prev, cond, noises[s], win)
            r, c = real[..., win[0], win[1]], cond[..., win[0], win[1]]
            (r, f1, f2), c = self._critic_view([r, f1, f2], c)
            loss_d, wd = critic_loss(critic, r, f1, c, tc.gp_weight)
            entry["wdist"] = float(wd)
            if lung_critic is not None:
                l2, wd2 = critic_loss(lung_critic, r, f2, c, tc.gp_weight, lung_weight(c))
                loss_d = loss_d + l2
                entry["wdist_lung"] = float(wd2)
            self._finite(loss_d, "critic")
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        entry["d_loss"] = float(loss_d.detach())
        return entry

    def _generator_steps(self, pyr: Pyramids, noises: list[torch.Tensor], x_lo: torch.Tensor | None) -> dict:
        """g_steps updates of the trainable scales: adversarial loss on a window of the newest scale plus
        the reconstruction of the original pair on the same window (critics frozen meanwhile)."""
        s, m, tc = self.stage, self.model, self.tc
        lo = self._lo()
        conds, cond = pyr.conds[: s + 1], pyr.conds[s]
        critic, lung_critic = self._critics()
        d_params = [p for p in self.opt_d.param_groups[0]["params"]]
        for p in d_params:
            p.requires_grad_(False)
        for _ in range(tc.g_steps):
            win = self._crop(*pyr.reals[s].shape[-2:])
            c = cond[..., win[0], win[1]]
            f1, f2 = m.scale_window(s, m(conds, noises, lo, s, x=x_lo)[1], cond, noises[s], win)
            (f1, f2), c = self._critic_view([f1, f2], c)
            adv = -score(critic(f1, c)).mean()
            if lung_critic is not None:
                adv = adv - score(lung_critic(f2, c), lung_weight(c)).mean()
            terms = self._reconstruction(win)
            loss_g = adv + tc.rec_weight * terms["rec"]
            self._finite(loss_g, "generator")
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
        return {"adv": float(adv.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    def _reconstruction(self, win: tuple[slice, slice]) -> dict[str, torch.Tensor]:
        """Reconstruction terms of the original pair(s) on window `win` of the newest scale."""
        s, m, data = self.stage, self.model, self.data
        lo = self._lo()
        rec_noises = m.rec_noises(data.conds)
        xr_prev = m(data.conds, rec_noises, lo, s, x=self.rec_lo)[1]
        xr = m.scale_window(s, xr_prev, data.conds[s], rec_noises[s], win)[1]
        teacher = None
        if self.rec_loss.t > 0:  # each trainable scale from the real coarser image
            teacher = []
            for i in range(lo, s + 1):
                w_i = win if i == s else (slice(None), slice(None))
                prev = data.reals[i - 1] if i > 0 else None
                out = m.scale_window(i, prev, data.conds[i], rec_noises[i], w_i)[1]
                teacher.append((out, data.reals[i][..., w_i[0], w_i[1]]))
        return self.rec_loss(xr, data.reals[s][..., win[0], win[1]], teacher)

    @torch.no_grad()
    def stage_samples(self) -> None:
        """samples/stage_NN.png: real | reconstruction | 4 samples (training map), and 4 samples for
        deformed maps from the augmentation bank (if any) with those maps."""
        s, m = self.stage, self.model
        g = torch.Generator().manual_seed(1234)
        conds = [c[:1].expand(4, -1, -1, -1) for c in self.data.conds[: s + 1]]  # the first pair's map
        samples = m(conds, m.draw_noise(conds, g), 0, s + 1)[1]
        rec = m(self.data.conds, m.rec_noises(self.data.conds), 0, s + 1)[1]
        row = [self.data.reals[s][0, 0], rec[0, 0]] + [x[0] for x in samples]
        tiles = [image_to_uint8(t) for t in row]
        if self.bank:
            pick = [self.bank[k % len(self.bank)] for k in range(0, 4 * 3, 3)]
            bconds = [torch.cat([p.conds[i] for p in pick]) for i in range(s + 1)]
            bs = m(bconds, m.draw_noise(bconds, g), 0, s + 1)[1]
            lab = one_hot_part(bconds[s], self.mc.body_channel).argmax(1)
            tiles += [label_to_uint8(label4_to_label(lab[0].cpu().numpy())), np.zeros_like(tiles[0])]
            tiles += [image_to_uint8(x[0]) for x in bs]
        (self.run / "samples").mkdir(exist_ok=True)
        save_png(tile(tiles, cols=6), self.run / "samples" / f"stage_{s:02d}.png")

    def fit(self, stop_after: int | None = None, progress: bool = True) -> bool:
        """Train to the end (returns True) or for `stop_after` iterations (returns False)."""
        from tqdm.auto import tqdm

        m, tc = self.model, self.tc
        done_iters = 0
        while self.stage < m.num_scales:
            t_stage = time.monotonic()  # after a resume: the time of the resumed part only
            if self.opt_g is None:
                self._begin_stage(fresh=True)
            h, w = self.sizes[self.stage]
            bar = tqdm(total=tc.iters, initial=self.iter, disable=not progress, leave=True, file=sys.stderr,
                       desc=f"stage {self.stage + 1}/{m.num_scales} ({h}x{w})", dynamic_ncols=True)
            while self.iter < tc.iters:
                entry = self.step()
                step = len(self.log)
                self.log.append({"step": step, "stage": self.stage, "iter": self.iter, **entry})
                self.iter += 1
                bar.update(1)
                if self.iter % 10 == 0 or self.iter == tc.iters:
                    bar.set_postfix(wd=f"{entry['wdist']:.3f}", rec=f"{entry['rec']:.4f}")
                done_iters += 1
                if self.iter < tc.iters and (self.iter % tc.ckpt_every == 0 or done_iters == stop_after):
                    self.save()
                if done_iters == stop_after and self.iter < tc.iters:
                    bar.close()
                    return False
            bar.close()
            self.stage_ends.append(len(self.log))
            if tc.sample_every_stage:
                self.stage_samples()
            self.stage, self.iter = self.stage + 1, 0
            # plotting costs ~1 s: at most once a minute, and always at the end
            if self.stage == m.num_scales or time.monotonic() - self._curves_at > 60:
                write_curves(self.run, self.log, self.stage_ends)
                self._curves_at = time.monotonic()
            self.opt_g = self.opt_d = None
            self.stage_seconds.append(round(time.monotonic() - t_stage, 3))
            m.trained.fill_(self.stage)
            finished = self.stage == m.num_scales
            self.save(done=finished)
            if done_iters == stop_after and not finished:
                return False
        return True
