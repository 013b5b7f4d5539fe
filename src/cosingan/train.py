"""Training: ConSinGAN-style growth (one new scale per stage, the newest `train_depth` scales train
together), conditional WGAN-GP critics, reconstruction, and the three CoSinGAN parts.

A run folder holds `config.json`, `checkpoint.pt` (one plain dict; atomic; `weights_only=True`),
`log.csv`, `curves.png`, `samples/stage_NN.png` and the training pair as PNGs. An interrupted run
resumes from its last checkpoint and ends bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import math
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .augment import aug_probability, deform_bank
from .conditions import body_from_image, label4_to_label, lung_weight, one_hot, to_label4
from .config import FORMAT_VERSION, Config, config_from_dict, config_to_dict
from .errors import InputError
from .io import Slice, atomic_path, save_png, torch_load
from .losses import MixedReconstruction, critic_loss, score
from .model import CoSinGAN
from .pyramid import (condition_pyramid, finest_size, image_pyramid, resize_image, resize_labels, scale_sizes,
                      upsample)

CKPT = "checkpoint.pt"


# --------------------------------------------------------------------------------------------- data

@dataclass
class Pyramids:
    reals: list[torch.Tensor]  # (1, 1, h, w) per scale, coarse -> fine
    conds: list[torch.Tensor]  # (1, C, h, w)


def prepare_pair(sl: Slice, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the slice to the training size; returns (image in [-1, 1], air/body/lung/infection map)."""
    body = body_from_image(sl.image, sl.label)
    label4 = to_label4(sl.label, body)
    h, w = finest_size(*sl.image.shape, max_size)
    img = resize_image(torch.from_numpy(sl.image)[None, None], (h, w))[0, 0].numpy()
    return img, resize_labels(label4, (h, w))


def build_pyramids(image: np.ndarray, label4: np.ndarray, sizes, body_channel: bool, device) -> Pyramids:
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
    c = one_hot(torch.from_numpy(np.ascontiguousarray(label4))[None].to(device), body_channel)
    return Pyramids(image_pyramid(x, sizes), condition_pyramid(c, sizes))


# ----------------------------------------------------------------------------------- checkpointing

def versions() -> dict[str, str]:
    import monai

    return {"cosingan": __version__, "torch": str(torch.__version__), "monai": str(monai.__version__),
            "numpy": str(np.__version__), "python": platform.python_version()}


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), n[4]))
    p = s["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(run: Path, ckpt: dict) -> None:
    with atomic_path(run / CKPT) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(run: Path, map_location="cpu") -> dict:
    path = run / CKPT
    if not path.exists():
        raise InputError(f"{path}: no checkpoint in this run folder")
    try:
        ckpt = torch_load(path, map_location)
    except Exception as e:
        raise InputError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise InputError(f"{path}: not a cosingan checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format {ckpt['format_version']} is not supported by this "
                         f"cosingan (format {FORMAT_VERSION}); retrain or use a matching version")
    return ckpt


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available in this torch build "
                         f"({torch.__version__}); see README (GPU) or use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"--device {name}: unknown device (use cpu, cuda or auto)")
    return torch.device(name)


def load_model(run: str | Path, device: str = "cpu", require_finished: bool = True
               ) -> tuple[CoSinGAN, Config, dict]:
    """Model from a run folder, for sampling."""
    run = Path(run)
    dev = resolve_device(device)
    ckpt = load_checkpoint(run, map_location=dev)
    cfg = config_from_dict(ckpt["config"], str(run / CKPT))
    model = CoSinGAN(cfg.model, [tuple(s) for s in ckpt["sizes"]]).to(dev)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise InputError(f"{run / CKPT}: weights do not fit the stored model config "
                         f"({str(e).splitlines()[0]})") from None
    if require_finished and not ckpt.get("done"):
        raise InputError(f"{run}: training is not finished (stage {ckpt['stage'] + 1} of "
                         f"{model.num_scales}); resume it with `cosingan train --resume {run}`")
    model.eval()
    return model, cfg, ckpt


# --------------------------------------------------------------------------------------- pictures

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


def label_to_uint8(label: np.ndarray) -> np.ndarray:
    return (label.astype(np.uint16) * 127).clip(0, 255).astype(np.uint8)


def write_curves(run: Path, log: list[dict], stage_ends: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("wdist", "Wasserstein estimate (global critic)"), ("wdist_lung", "Wasserstein (lung critic)"),
            ("rec", "reconstruction loss"), ("adv", "generator adversarial loss")]
    keys = [(k, t) for k, t in keys if any(k in e for e in log)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (k, title) in zip(axes, keys):
        xs = [e["step"] for e in log if k in e]
        ys = [e[k] for e in log if k in e]
        ax.plot(xs, ys, lw=0.6)
        if k == "rec":
            ax.set_yscale("log")
        for s in stage_ends:
            ax.axvline(s, color="grey", lw=0.5, ls=":")
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("iteration (dotted: stage ends)")
    fig.tight_layout()
    with atomic_path(run / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_log_csv(run: Path, log: list[dict]) -> None:
    first = ["step", "stage", "iter"]
    cols = first + sorted({k for e in log for k in e} - set(first))
    lines = [",".join(cols)] + [",".join(f"{e[k]:.6g}" if isinstance(e.get(k), float) else str(e.get(k, ""))
                                         for k in cols) for e in log]
    with atomic_path(run / "log.csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ trainer

class Trainer:
    def __init__(self, run: Path, cfg: Config, image: np.ndarray, label4: np.ndarray):
        self.run, self.cfg = run, cfg
        self.mc, self.tc = cfg.model, cfg.train
        self.device = resolve_device(cfg.device)
        self.image, self.label4 = image, label4
        sizes = scale_sizes(*image.shape, self.mc.min_size, self.mc.max_size, self.mc.scale_factor)
        self.sizes = sizes
        self.data = build_pyramids(image, label4, sizes, self.mc.body_channel, self.device)
        bank = deform_bank(image, label4, self.tc.aug_bank, seed=cfg.seed + 1) if self.tc.hier_aug else []
        self.bank = [build_pyramids(i, l, sizes, self.mc.body_channel, self.device) for i, l in bank]
        self.model = CoSinGAN(self.mc, sizes).to(self.device)
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
            "rng": _rng_state(), "log": self.log, "stage_ends": self.stage_ends,
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
        _set_rng_state(ckpt["rng"])

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
        s, m, tc = self.stage, self.model, self.tc
        lo = self._lo()
        self._set_lr()
        pyr = self.data
        if self.bank and torch.rand(()) < aug_probability(s, m.num_scales, tc.aug_p_coarse, tc.aug_p_fine):
            pyr = self.bank[int(torch.randint(0, len(self.bank), ()))]
        conds = pyr.conds[: s + 1]
        real, cond = pyr.reals[s], pyr.conds[s]
        noises = m.draw_noise(conds)
        with torch.no_grad():  # scales below the newest: full size; the newest runs on windows
            x_lo = m(conds, noises, 0, lo)[1] if lo > 0 else None
            x_prev = m(conds, noises, lo, s, x=x_lo)[1]
        entry: dict = {}
        critic, lung_critic = m.critics[s], (m.lung_critics[s] if m.lung_critics is not None else None)
        for _ in range(tc.d_steps):
            win = self._crop(*real.shape[-2:])
            with torch.no_grad():
                f1, f2 = m.scale_window(s, x_prev, cond, noises[s], win)
            r, c = real[..., win[0], win[1]], cond[..., win[0], win[1]]
            loss_d, wd = critic_loss(critic, r, f1, c, tc.gp_weight)
            entry["wdist"] = float(wd)
            if lung_critic is not None:
                l2, wd2 = critic_loss(lung_critic, r, f2, c, tc.gp_weight, lung_weight(c))
                loss_d = loss_d + l2
                entry["wdist_lung"] = float(wd2)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        entry["d_loss"] = float(loss_d.detach())

        d_params = [p for p in self.opt_d.param_groups[0]["params"]]
        for p in d_params:
            p.requires_grad_(False)
        data, rec_noises = self.data, m.rec_noises(self.data.conds)
        for _ in range(tc.g_steps):
            win = self._crop(*real.shape[-2:])
            c = cond[..., win[0], win[1]]
            f1, f2 = m.scale_window(s, m(conds, noises, lo, s, x=x_lo)[1], cond, noises[s], win)
            adv = -score(critic(f1, c)).mean()
            if lung_critic is not None:
                adv = adv - score(lung_critic(f2, c), lung_weight(c)).mean()
            # reconstruction of the original pair, on the same window at the newest scale
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
            terms = self.rec_loss(xr, data.reals[s][..., win[0], win[1]], teacher)
            loss_g = adv + tc.rec_weight * terms["rec"]
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
        entry["adv"] = float(adv.detach())
        entry.update({k: float(v.detach()) for k, v in terms.items()})
        return entry

    @torch.no_grad()
    def stage_samples(self) -> None:
        """samples/stage_NN.png: real | reconstruction | 4 samples (training map), and 4 samples for
        deformed maps from the augmentation bank (if any) with those maps."""
        s, m = self.stage, self.model
        g = torch.Generator().manual_seed(1234)
        conds = [c.expand(4, -1, -1, -1) for c in self.data.conds[: s + 1]]
        samples = m(conds, m.draw_noise(conds, g), 0, s + 1)[1]
        rec = m(self.data.conds, m.rec_noises(self.data.conds), 0, s + 1)[1]
        row = [self.data.reals[s][0, 0], rec[0, 0]] + [x[0] for x in samples]
        tiles = [((t.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy() for t in row]
        if self.bank:
            pick = [self.bank[k % len(self.bank)] for k in range(0, 4 * 3, 3)]
            bconds = [torch.cat([p.conds[i] for p in pick]) for i in range(s + 1)]
            bs = m(bconds, m.draw_noise(bconds, g), 0, s + 1)[1]
            lab = bconds[s].argmax(1)
            tiles += [label_to_uint8(np.asarray(label4_to_label(lab[0].cpu().numpy()))), np.zeros_like(tiles[0])]
            tiles += [((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy() for x in bs]
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


# ------------------------------------------------------------------------------------------- API

def write_config_json(run: Path, cfg: Config) -> None:
    data = {"format_version": FORMAT_VERSION, **config_to_dict(cfg), "versions": versions()}
    with atomic_path(run / "config.json") as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(run: str | Path, sl: Slice | None, cfg: Config, stop_after: int | None = None,
          progress: bool = True) -> Trainer:
    """Start a new run from a slice (sl) or, with sl=None, resume the run folder."""
    run = Path(run)
    if sl is None:
        for stale in run.glob(".*.tmp"):  # left by a write that was killed mid-way
            stale.unlink()
        ckpt = load_checkpoint(run)
        cfg = config_from_dict(ckpt["config"], str(run / CKPT))
        trainer = Trainer(run, cfg, ckpt["data"]["image"].numpy(), ckpt["data"]["label4"].numpy())
        trainer.source = {"kind": ckpt["data"]["kind"], "spacing": ckpt["data"]["spacing"]}
        if tuple(map(tuple, ckpt["sizes"])) != tuple(trainer.sizes):
            raise InputError(f"{run / CKPT}: stored scale sizes do not match the config")
        trainer.restore(ckpt)
        if ckpt.get("done"):
            return trainer
    else:
        if (run / CKPT).exists():
            raise InputError(f"{run}: already holds a run; use --resume to continue it or choose another --out")
        resolve_device(cfg.device)  # config errors before anything is written
        if cfg.train.amp not in ("none", "bf16"):
            raise InputError(f"train.amp must be none or bf16, got {cfg.train.amp!r} (fp16 is not offered: "
                             "WGAN-GP's penalty under-/overflows without careful loss scaling)")
        try:
            run.mkdir(parents=True, exist_ok=True)
            probe = run / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise InputError(f"{run}: output folder is not writable ({e.strerror})") from None
        seed_everything(cfg.seed)
        image, label4 = prepare_pair(sl, cfg.model.max_size)
        trainer = Trainer(run, cfg, image, label4)
        spacing = None
        if sl.spacing is not None:  # pixel spacing after resizing to the training size
            spacing = [sl.spacing[0] * sl.image.shape[0] / image.shape[0],
                       sl.spacing[1] * sl.image.shape[1] / image.shape[1]]
        trainer.source = {"kind": sl.kind, "spacing": spacing}
        write_config_json(run, cfg)
        save_png(image, run / "train_image.png")
        save_png(label_to_uint8(label4_to_label(label4)), run / "train_label.png")
    trainer.fit(stop_after=stop_after, progress=progress)
    return trainer
