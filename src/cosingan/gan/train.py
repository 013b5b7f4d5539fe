"""Starting, resuming and finishing runs. `ensure_trained` is the one owner of the train / resume /
skip decision for every caller (the demo, train-many, the experiment).

A run folder holds `config.json`, `checkpoint.pt` (see checkpoint.py), `log.csv`, `curves.png`,
`samples/stage_NN.png` and the training pair as PNGs. An interrupted run resumes from its last
checkpoint and ends bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.files import TEMP_SUFFIX, save_png, write_text
from ..data.labelmap import LUNG, body_from_image, label4_to_label, to_label4
from ..data.outputs import claim_output, locked
from ..data.pictures import label_to_uint8
from ..data.readers import Slice, content_hash
from ..devices import resolve_device
from ..errors import InputError
from .checkpoint import CKPT, load_checkpoint, run_status, seed_everything, versions
from .config import FORMAT_VERSION, Config, config_from_dict, config_to_dict
from .pyramid import finest_size, resize_image, resize_labels
from .trainer import Trainer, stack_pairs


def prepare_pair(sl: Slice, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the slice to the training size; returns (image in [-1, 1], air/body/lung/infection map)."""
    body = body_from_image(sl.image, sl.label)
    label4 = to_label4(sl.label, body)
    h, w = finest_size(*sl.image.shape, max_size)
    img = resize_image(torch.from_numpy(sl.image)[None, None], (h, w))[0, 0].numpy()
    label4 = resize_labels(label4, (h, w))
    if not (label4 >= LUNG).any():
        raise InputError(f"{sl.label_origin or 'label map'}: the lung vanishes when the slice is resized to the "
                         f"training size {h}x{w} (it is too small); check the label map")
    return img, label4


def write_config_json(run: Path, cfg: Config) -> None:
    data = {"format_version": FORMAT_VERSION, **config_to_dict(cfg), "versions": versions()}
    write_text(run / "config.json", json.dumps(data, indent=2) + "\n")


def check_config(cfg: Config) -> None:
    """Config errors that only show at run time, raised before anything is written."""
    resolve_device(cfg.device)
    if cfg.train.amp not in ("none", "bf16"):
        raise InputError(f"train.amp must be none or bf16, got {cfg.train.amp!r} (fp16 is not offered: "
                         "WGAN-GP's penalty under-/overflows without careful loss scaling)")


def _spacing(sl: Slice, shape: tuple[int, int]) -> list[float] | None:
    """Pixel spacing after resizing the slice to the training size `shape`."""
    if sl.spacing is None:
        return None
    return [sl.spacing[0] * sl.image.shape[0] / shape[0], sl.spacing[1] * sl.image.shape[1] / shape[1]]


def slices_content(sl: Slice | list[Slice]) -> str:
    """A digest of the training slices' pixels and labels: a run knows what it was trained on."""
    slices = [sl] if isinstance(sl, Slice) else list(sl)
    return content_hash(*(a for x in slices for a in (x.image, x.label)))


def _start(run: Path, slices: list[Slice], cfg: Config, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Trainer:
    """A new run in `run` (which the caller has claimed and locked) from the prepared pair(s)."""
    seed_everything(cfg.seed)
    image, label4 = stack_pairs(pairs)
    trainer = Trainer(run, cfg, image, label4)
    spacings = [_spacing(sl, p[0].shape) for sl, p in zip(slices, pairs)]
    same = all(sp is not None and np.allclose(sp, spacings[0], rtol=0.01) for sp in spacings)
    trainer.source = {"kind": slices[0].kind, "spacing": spacings[0] if same else None,  # none if they differ
                      "content": slices_content(slices)}
    write_config_json(run, cfg)
    side_by_side = lambda a: np.concatenate(list(a), 1) if a.ndim == 3 else a  # noqa: E731  (several pairs)
    save_png(side_by_side(image), run / "train_image.png")
    save_png(label_to_uint8(label4_to_label(side_by_side(label4))), run / "train_label.png")
    return trainer


def _reopen(run: Path) -> tuple[Trainer, bool]:
    """The trainer of an existing run folder, restored to its checkpoint; and whether it is done."""
    ckpt = load_checkpoint(run)  # first make sure this is a run: nothing of another folder is touched
    for stale in run.iterdir():  # left by one of our atomic writes that was killed mid-way (never a user's file)
        if stale.name.startswith(".") and stale.name.endswith(TEMP_SUFFIX) and stale.is_file():
            stale.unlink()
    cfg = config_from_dict(ckpt["config"], str(run / CKPT))
    trainer = Trainer(run, cfg, ckpt["data"]["image"].numpy(), ckpt["data"]["label4"].numpy())
    trainer.source = {k: ckpt["data"][k] for k in ("kind", "spacing", "content") if k in ckpt["data"]}
    if tuple(map(tuple, ckpt["sizes"])) != tuple(trainer.sizes):
        raise InputError(f"{run / CKPT}: stored scale sizes do not match the config")
    trainer.restore(ckpt)
    return trainer, bool(ckpt.get("done"))


def train(run: str | Path, sl: Slice | list[Slice] | None, cfg: Config | None, stop_after: int | None = None,
          progress: bool = True) -> Trainer:
    """Start a new run from a slice, or from several (one few-shot generator shared by all), or, with
    sl=None, resume the run folder."""
    run = Path(run)
    slices = [] if sl is None else [sl] if isinstance(sl, Slice) else list(sl)
    if sl is None:
        load_checkpoint(run)  # a run folder, or a clear error before anything is touched
    else:
        if (run / CKPT).exists():
            raise InputError(f"{run}: already holds a run; use --resume to continue it or choose another --out")
        if not slices:
            raise InputError(f"{run}: no training slice given")
        check_config(cfg)  # config and data errors before anything is written
        pairs = [prepare_pair(x, cfg.model.max_size) for x in slices]
        claim_output(run, "train", tuple(p or None for x in slices for p in (x.image_path, x.label_path)))
    with locked(run):
        if sl is None:
            trainer, done = _reopen(run)
            if done:
                return trainer
        else:
            trainer = _start(run, slices, cfg, pairs)
        trainer.fit(stop_after=stop_after, progress=progress)
    return trainer


def ensure_trained(run: str | Path, sl: Slice | list[Slice] | Callable[[], Slice | list[Slice]] | None,
                   cfg: Config | None,
                   progress: bool = True) -> str:
    """Leave `run` finished: skip it when done, resume it when interrupted, else train it from `sl` (a
    slice or a list of slices, or a function that reads them: only called when needed). Returns "done",
    "resumed" or "trained"."""
    # never reuse a run under settings it was not made with, or for a slice it was not trained on
    if sl is not None and (Path(run) / CKPT).exists():
        sl = sl() if callable(sl) else sl
    content = slices_content(sl) if sl is not None and not callable(sl) else None
    status = run_status(run, config_to_dict(cfg) if cfg is not None else None, content)
    if status == "done":
        return "done"
    if status == "resume":
        train(run, None, None, progress=progress)
        return "resumed"
    if sl is None or cfg is None:
        raise InputError(f"{run}: no run to resume here, and no slice and config to start one")
    train(run, sl() if callable(sl) else sl, cfg, progress=progress)
    return "trained"
