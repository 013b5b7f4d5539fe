"""Sampling: slices for any label map from a trained run.

Outputs use the dataset layout the readers take (`OUT/images/NAME.png` + `OUT/labels/NAME.png`), so a
sample folder is a training set as it stands. Every sample has its own seed, derived from the run seed
argument, the condition's index and the sample's index, so one sample can be regenerated alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .conditions import body_from_image, body_from_label, label4_to_label, one_hot, to_label4
from .errors import InputError
from .io import read_image, read_label, save_nifti, save_png
from .model import CoSinGAN
from .pyramid import condition_pyramid, resize_labels, sizes_like
from .train import label_to_uint8, load_model, tile


@dataclass
class Condition:
    name: str
    label4: np.ndarray  # air/body/lung/infection map at the size the model generates


def resize_label4(model: CoSinGAN, label4: np.ndarray) -> np.ndarray:
    """A 4-class map resized (nearest) so its long side is the model's finest long side."""
    return resize_labels(label4, sizes_like(model.size_list(), *label4.shape)[-1])


def condition_from_label(model: CoSinGAN, label: np.ndarray, body: np.ndarray | None, name: str) -> Condition:
    """Resize a 0/1/2 label map (and body mask; estimated from the lungs when None) to the model's
    pixel scale and build its 4-class map."""
    if body is None:
        body = body_from_label(label)
    return Condition(name, resize_label4(model, to_label4(label, body)))


def sample_seed(seed: int, cond_index: int, sample_index: int) -> int:
    return (seed * 1_000_003 + cond_index * 10_007 + sample_index) % (2**63 - 1)


@torch.no_grad()
def generate(model: CoSinGAN, label4: np.ndarray, seeds: list[int], batch: int = 16) -> np.ndarray:
    """Images in [-1, 1], (len(seeds), H, W), one per seed, for one 4-class map."""
    device = model.sizes.device
    sizes = sizes_like(model.size_list(), *label4.shape)
    cond = one_hot(torch.from_numpy(label4)[None].to(device), model.cfg.body_channel)
    pyr = condition_pyramid(cond, sizes)
    out = []
    for b0 in range(0, len(seeds), batch):
        chunk = seeds[b0: b0 + batch]
        # one generator per sample, drawn scale by scale: a sample does not depend on its batch
        noises = _per_scale_noise(pyr, chunk, device)
        conds = [c.expand(len(chunk), -1, -1, -1) for c in pyr]
        x = model(conds, noises)[1]
        out.append(x[:, 0].clamp(-1, 1).cpu().numpy())
    return np.concatenate(out)


def _per_scale_noise(pyr: list[torch.Tensor], seeds: list[int], device) -> list[torch.Tensor]:
    gens = [torch.Generator().manual_seed(sd) for sd in seeds]
    return [torch.cat([torch.randn(1, 2, *c.shape[-2:], generator=g) for g in gens]).to(device) for c in pyr]


def _paired_image(label_path: Path) -> Path | None:
    """DIR/labels/NAME.ext -> DIR/images/NAME.<any ext>, the layout of slice folders."""
    if label_path.parent.name != "labels":
        return None
    img_dir = label_path.parent.parent / "images"
    for cand in sorted(img_dir.glob(label_path.stem + ".*")):
        return cand
    return None


def load_conditions(model: CoSinGAN, labels: list[str], body: str = "auto") -> list[Condition]:
    conds = []
    for p in labels:
        path = Path(p)
        lab = read_label(path)
        body_mask = None
        if body in ("auto", "image"):
            img_path = _paired_image(path)
            if img_path is None and body == "image":
                raise InputError(f"{path}: --body image needs the slice at ../images/{path.stem}.*")
            if img_path is not None:
                img = read_image(img_path)[0]
                if img.shape != lab.shape:
                    raise InputError(f"{img_path}: image size {img.shape} does not match label map {path}")
                body_mask = body_from_image(img, lab)
        name = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
        conds.append(condition_from_label(model, lab, body_mask, name))
    return conds


def sample_run(run: str | Path, n: int, out: str | Path, labels: list[str] | None = None, seed: int = 0,
               device: str = "cpu", body: str = "auto", batch: int = 16, progress: bool = True) -> list[Path]:
    from tqdm.auto import tqdm

    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    model, cfg, ckpt = load_model(run, device)
    if labels:
        conds = load_conditions(model, labels, body)
    else:
        conds = [Condition("train", ckpt["data"]["label4"].numpy())]
    out = Path(out)
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create output folder ({e.strerror})") from None
    nifti = ckpt["data"]["kind"] == "nifti"
    spacing = ckpt["data"]["spacing"]
    written, grid_rows = [], []
    bar = tqdm(total=n * len(conds), desc="sampling", disable=not progress, dynamic_ncols=True)
    for j, cond in enumerate(conds):
        seeds = [sample_seed(seed, j, k) for k in range(n)]
        imgs = generate(model, cond.label4, seeds, batch)
        lab = label4_to_label(cond.label4)
        for k, img in enumerate(imgs):
            name = f"{cond.name}_{k:04d}"
            save_png(img, out / "images" / f"{name}.png")
            save_png(lab, out / "labels" / f"{name}.png")
            if nifti:
                save_nifti(img, out / "images" / f"{name}.nii.gz", spacing=spacing)
                save_nifti(lab, out / "labels" / f"{name}.nii.gz", spacing=spacing, is_label=True)
            written.append(out / "images" / f"{name}.png")
            bar.update(1)
        shown = [label_to_uint8(lab)] + [np.round((im + 1) * 127.5).astype(np.uint8) for im in imgs[:6]]
        grid_rows.append(shown + [np.full((1, 1), 255, np.uint8)] * (7 - len(shown)))
    bar.close()
    save_png(tile([t for row in grid_rows for t in row], cols=7), out / "grid.png")
    return written
