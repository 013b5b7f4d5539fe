"""Segmentation of lung and infection with a MONAI 2-D U-Net; evaluation with DSC and NSD (metrics.py).

The network is MONAI's `UNet` (strided convolutions, one residual unit per level): on this 2-core CPU
a training step (batch 8, 128 px) takes 0.17 s, against 0.44 s for a `BasicUNet` of similar width
(`python benchmarks/seg_nets.py`), which is what lets the few-shot experiment
train four of them within its time budget.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.files import save_png, write_csv, write_json
from ..data.pictures import image_to_uint8
from ..data.readers import Slice, read_slice_folder
from ..devices import net_device, resolve_device
from ..errors import InputError
from .augment import augmentations, plain
from .metrics import (EMPTY_POLICY, NSD_DEFINITION, REGION_DEFINITION, SEG_METRICS, SIDE_METRICS, TOLERANCE_MM,
                      score_case, score_sides, summarize)
from .nets import load_net, save_net


@dataclass(frozen=True)
class SegConfig:
    size: int = 128  # images are resized (long side) and padded to size x size
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # UNet widths, each level halves the size
    steps: int = 1200  # optimisation steps: the same budget for every training set
    batch: int = 8
    lr: float = 1e-3
    schedule: str = "poly"  # learning rate over the steps: poly (nnU-Net's lr (1 - t/T)^0.9) or constant
    aug: str = "strong"  # none | standard | strong
    val_fraction: float = 0.1  # held out of the training slices to pick the best checkpoint
    val_every: int = 100
    seed: int = 0


# ------------------------------------------------------------------------------------------- data

def prepare_slice(sl: Slice, size: int) -> dict:
    """Resize (long side = size, aspect kept) and pad to size x size; image in [0, 1]."""
    from monai.transforms import Compose, Resized, SpatialPadd

    d = {"image": ((sl.image + 1) / 2)[None].astype(np.float32), "label": sl.label[None].astype(np.float32)}
    tf = Compose([Resized(keys=["image", "label"], spatial_size=size, size_mode="longest",
                          mode=("bilinear", "nearest-exact"), anti_aliasing=(True, False)),
                  SpatialPadd(keys=["image", "label"], spatial_size=(size, size), mode="constant")])
    out = tf(d)
    return {"image": plain(out["image"]).float(), "label": plain(out["label"]).round().long()}


def load_folders(dirs: list[str | Path]) -> list[Slice]:
    """Slices of slice folders, or of volume roots (COVID-19-CT-Seg, MosMedData: every slice with lungs)."""
    from ..data.layout import volume_root_kind
    from ..data.volumes import one_at_a_time, read_volumes, select_slices

    slices = [s for d in dirs for s in (
        [x for v in one_at_a_time(read_volumes(d)) for x in select_slices(v)] if volume_root_kind(d) else read_slice_folder(d))]
    if not slices:
        raise InputError(f"no slices in {', '.join(map(str, dirs))}")
    return slices


# --------------------------------------------------------------------------------------- network

def make_net(cfg: SegConfig) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=cfg.channels,
                strides=(2,) * (len(cfg.channels) - 1), num_res_units=1)


SCHEDULES = ("constant", "poly")
MIN_SLICES_TO_HOLD_OUT = 5  # fewer training slices: none held out for validation, the last step is kept


def check_config(cfg: SegConfig) -> None:
    if cfg.schedule not in SCHEDULES:
        raise InputError(f"segmentation schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    step = 2 ** (len(cfg.channels) - 1)
    if cfg.size < step or cfg.size % step:
        raise InputError(f"segmentation size must be a multiple of {step} (the U-Net halves it "
                         f"{len(cfg.channels) - 1} times), got {cfg.size}")


def predict(net: torch.nn.Module, sl: Slice, size: int) -> np.ndarray:
    """Label map (0/1/2) at the slice's own size."""
    return logits_at_slice_size(net, sl, size).argmax(0).astype(np.uint8)  # numpy's: 15x torch's on CPU


def infection_probability(logits: np.ndarray) -> np.ndarray:
    """The softmax probability of infection at every pixel, from `logits_at_slice_size`'s (3, h, w) logits."""
    return torch.softmax(torch.from_numpy(logits), 0)[2].numpy()


@torch.no_grad()
def logits_at_slice_size(net: torch.nn.Module, sl: Slice, size: int) -> np.ndarray:
    """The U-Net's (3, h, w) logits, the padding to its input size cut off and resized to the slice's size."""
    net.eval()
    d = prepare_slice(sl, size)
    logits = net(d["image"][None].to(net_device(net))).float().cpu()
    h, w = sl.image.shape
    s = size / max(h, w)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    top, left = (size - rh) // 2, (size - rw) // 2  # SpatialPadd pads symmetrically
    logits = logits[..., top: top + rh, left: left + rw]
    logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits[0].numpy()


# ---------------------------------------------------------------------------------------- training

def train_seg(train_slices: list[Slice], cfg: SegConfig, out: str | Path, progress: bool = True,
              device: str = "cpu", val_slices: list[Slice] | None = None) -> dict:
    """Train for cfg.steps steps; keep the checkpoint with the best validation mean DSC (the last when
    there is no validation slice). Validation slices are cfg.val_fraction of the training slices, or
    `val_slices` when given (then every training slice trains). Augmentation (seeded) and network run on
    `device`."""
    from monai.losses import DiceCELoss
    from tqdm.auto import tqdm

    check_config(cfg)
    dev = resolve_device(device)
    out = Path(out)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(train_slices))
    held_out = val_slices is None and len(train_slices) >= MIN_SLICES_TO_HOLD_OUT
    n_val = int(round(len(train_slices) * cfg.val_fraction)) if held_out else 0
    val = [train_slices[i] for i in order[:n_val]] if val_slices is None else list(val_slices)
    train = [train_slices[i] for i in order[n_val:]]
    data = [prepare_slice(s, cfg.size) for s in train]
    images, labels = torch.stack([d["image"] for d in data]), torch.stack([d["label"] for d in data])
    aug = augmentations(cfg.aug, cfg.seed, dev)
    net = make_net(cfg).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    # poly decay ends the training on small steps, so the last weights are not one noisy step's
    sched = (torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=cfg.steps, power=0.9)
             if cfg.schedule == "poly" else None)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    best, best_step, log = -float("inf"), -1, []
    t0 = time.time()
    for step in tqdm(range(cfg.steps), desc="seg train", disable=not progress, dynamic_ncols=True):
        net.train()
        idx = torch.from_numpy(rng.integers(len(data), size=cfg.batch))
        x, y = aug(images[idx], labels[idx])
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        last = step == cfg.steps - 1
        if (step + 1) % cfg.val_every == 0 or last:
            entry = {"step": step + 1, "loss": float(loss.detach())}
            if val:
                scores = [score_case(predict(net, s, cfg.size), s.label, s.spacing) for s in val]
                v = float(np.nanmean([np.nanmean([c["lung_dsc"], c["infection_dsc"]]) for c in scores]))
                entry.update({f"val_{m}": float(np.nanmean([c[m] for c in scores]))
                              for m in ("lung_dsc", "infection_dsc")})
            else:
                v = float(step)  # no validation slices: keep the last
            log.append({**entry, "val": v})
            if v >= best:
                best, best_step = v, step + 1
                save_seg(net, cfg, out)
    meta = {"config": asdict(cfg), "train_slices": len(train), "val_slices": len(val), "best_val": best,
            "best_step": best_step, "seconds": time.time() - t0, "log": log}
    write_json(out / "train.json", meta)
    return meta


def save_seg(net: torch.nn.Module, cfg: SegConfig, out: Path) -> None:
    save_net(net, cfg, out)


def load_seg(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, SegConfig]:
    net, cfg = load_net(path, SegConfig, make_net, "segmentation")
    return net.to(resolve_device(device)), cfg


# -------------------------------------------------------------------------------------- evaluation

def evaluate(net: torch.nn.Module, cfg: SegConfig, slices: list[Slice], out: str | Path | None = None,
             spacing_mm: float = 1.0) -> dict:
    """Per-case scores and their means; writes cases.csv, summary.json, cases.png when `out` is given.
    Slices without a known spacing (PNG/JPG) are scored at `spacing_mm` per original pixel."""
    cases = []
    preds = []
    for s in slices:
        pred = predict(net, s, cfg.size)
        preds.append(pred)
        sp = s.spacing if s.spacing is not None else (spacing_mm, spacing_mm)
        cases.append({"case": Path(s.origin).stem or s.origin, **score_case(pred, s.label, sp)})
    known = all(s.spacing is not None for s in slices)
    summary = _summary(cases, "2-D slices", known, "from the files" if known else
                       f"{spacing_mm:g} mm per original pixel where the files carry none", out)
    if out is not None:
        _overlays(slices, preds, cases, Path(out) / "cases.png")
    return summary


def _summary(cases: list[dict], what: str, known: bool, spacing: str, out: str | Path | None,
             extra: tuple[str, ...] = ()) -> dict:
    """Means over the scored cases with the scoring rules, written to cases.csv and summary.json."""
    keys = [*SEG_METRICS, *extra]
    summary = {**summarize(cases, keys), "n": len(cases), "cases": what, "policy": EMPTY_POLICY,
               "nsd": NSD_DEFINITION, "regions": REGION_DEFINITION, "spacing_known": known, "spacing": spacing,
               "tolerance_mm": TOLERANCE_MM, "metric_per_case": cases}
    if out is not None:
        out = Path(out)
        write_csv(out / "cases.csv", ["case", *keys],
                  [{k: ("" if isinstance(v, float) and np.isnan(v) else v) for k, v in c.items()} for c in cases])
        write_json(out / "summary.json", summary)
    return summary


def evaluate_volumes(net: torch.nn.Module, cfg: SegConfig, volumes, out: str | Path | None = None) -> dict:
    """The benchmark's protocol on volumes: every slice of each volume is predicted (2-D), the slices are
    stacked, and DSC / NSD are computed per volume in 3-D with its voxel spacing, then averaged over
    volumes. Volumes without lung labels (MosMedData) are scored on infection only."""
    from ..data.volumes import one_at_a_time

    cases = []
    for v in one_at_a_time(volumes):
        pred = np.stack([predict(net, Slice(v.image[z], v.label[z], None, "nifti"), cfg.size)
                         for z in range(v.image.shape[0])])
        if not v.has_lung:  # the truth has no lung label: score infection only, lung as not annotated
            pred = np.where(pred == 2, 2, 0).astype(np.uint8)
        sp = (v.spacing[2], v.spacing[0], v.spacing[1])  # (slice, row, col), as the arrays are (Z, H, W)
        scores = score_case(pred, v.label, sp)
        if not v.has_lung:
            scores["lung_dsc"] = scores["lung_nsd"] = float("nan")
        if v.sides is not None:  # the benchmark's left and right lung
            scores.update(score_sides(pred, v.sides, sp))
        cases.append({"case": v.name, **scores})
    sides = SIDE_METRICS if any(SIDE_METRICS[0] in c for c in cases) else ()
    return _summary(cases, "3-D volumes", True, "voxel spacing of each volume", out, sides)


def _overlays(slices, preds, cases, path: Path, k: int = 3) -> None:
    """Worst and best k cases by infection DSC: image | truth | prediction (RGB overlays)."""
    order = np.argsort([c["infection_dsc"] for c in cases])
    pick = list(order[:k]) + [i for i in order[::-1][:k] if i not in order[:k]]
    rows = []
    for i in pick:
        s, p = slices[i], preds[i]
        grey = image_to_uint8(s.image)

        def over(lab):
            rgb = np.stack([grey] * 3, -1).astype(np.float32)
            rgb[lab == 1] = 0.6 * rgb[lab == 1] + 0.4 * np.array([60, 120, 255])
            rgb[lab == 2] = 0.4 * rgb[lab == 2] + 0.6 * np.array([255, 60, 40])
            return rgb.astype(np.uint8)

        rows.append(np.concatenate([np.stack([grey] * 3, -1), over(s.label), over(p)], 1))
    w = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] + 4 for r in rows), w, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y: y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + 4
    save_png(canvas, path)
