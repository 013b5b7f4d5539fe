"""Downstream tasks of the experiment, as a registry: each trains one network on an arm's training set
(reused when already trained) and scores it on the test set. To add a downstream network: build it in
`cosingan.downstream`, then register a Task here; its columns appear in the table and the report."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.files import write_json
from ..data.layout import IMAGES, LABELS
from ..data.readers import content_hash, read_image
from ..downstream import cls as clsmod
from ..downstream import seg
from ..downstream.metrics import DETECTION_METRICS, SCORING_VERSION
from ..downstream.nets import reuse_or_claim
from ..downstream.patches import patch_set
from .context import Context


@dataclass(frozen=True)
class TrainingSet:
    """What one arm trains every task on."""

    name: str  # names its model and evaluation folders, e.g. r0_k2_B_real_strongaug
    folders: tuple[Path, ...]  # slice folders
    aug: str  # augmentation of every task's training: standard or strong
    seed: int
    negatives: list[Path] | None = field(default_factory=list)  # extra infection-free images; None: no detection
    synthetic: bool = False  # condition fidelity is measured for synthetic sets


@dataclass(frozen=True)
class Task:
    columns: dict[str, str]  # metric key -> column title
    run: Callable[[Context, TrainingSet], dict]  # metrics, or {} when the task cannot run here


def _set_files(ts: TrainingSet) -> list:
    """Every image and label of a training set's folders: their names and the files (hashed by content)."""
    files = sorted(p for f in ts.folders for sub in (IMAGES, LABELS) for p in (Path(f) / sub).iterdir())
    return [[f"{p.parent.name}/{p.name}" for p in files], files]


def _reuse_or_claim(model_dir: Path, cfg, ts: TrainingSet) -> bool:
    """`nets.reuse_or_claim` for a training set: True to reuse the model trained with exactly `cfg` on exactly
    `ts`'s files; False when the folder is claimed (recorded) for training it now."""
    return reuse_or_claim(model_dir, cfg, _digest(*_set_files(ts), list(ts.negatives or [])))


def _digest(*parts) -> str:
    """One hash of files (by content), arrays (every element), lists and tuples of these, and plain values."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(b"file" + p.read_bytes())
        elif isinstance(p, np.ndarray):
            h.update(b"array" + content_hash(p).encode())
        elif isinstance(p, (list, tuple)):
            h.update(f"list{len(p)}".encode() + _digest(*p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())  # numpy scalars as text
    return h.hexdigest()


def _test_key(ctx: Context) -> str:
    """The test data every arm is scored on (computed once): slices by their pixels, volumes by their files."""
    sp = ctx.split
    if sp.test_key is None:
        if sp.test_volumes:
            sp.test_key = _digest([(v.name, v.shape, v.spacing, v.has_lung, Path(v.image_path).stat().st_size,
                                    Path(v.label_path).stat().st_size) for v in sp.test_volumes])
        else:
            sp.test_key = _digest([(s.image, s.label, s.spacing) for s in sp.test_slices],
                                  ctx.cfg.spacing_mm, sp.test_pos + sp.test_neg)
    return sp.test_key


def scored(record: Path, inputs: list, compute: Callable[[], dict]) -> dict:
    """`compute()`, or its result stored in `record` when it was computed from the same inputs (a model's
    bytes, the test data, the scoring version): a repeat added later does not score the earlier ones again."""
    key = _digest(SCORING_VERSION, *inputs)
    if record.exists():
        stored = json.loads(record.read_text())
        if stored.get("key") == key:  # stored NaN (a region never scored) comes back as null
            return _nan(stored["result"])
    result = compute()
    write_json(record, {"key": key, "result": result})
    return result


def _nan(v):
    if isinstance(v, dict):
        return {k: _nan(x) for k, x in v.items()}
    return math.nan if v is None else v


def _test_scores(ctx: Context, timer: str, model_dir: Path, where: Path, score: Callable[[], dict]) -> dict:
    """A network's scores on the test set, stored in WHERE/scored.json with its weights and the test data."""
    return ctx.timed(timer, lambda: scored(where / "scored.json", [model_dir / "model.pt", _test_key(ctx)], score))


def _seg_model(ctx: Context, ts: TrainingSet) -> Path:
    """The U-Net of a training set (OUT/seg/NAME), trained with the experiment's budget unless it was before."""
    model_dir = ctx.out / "seg" / ts.name
    scfg = seg.SegConfig(size=ctx.cfg.seg_size, steps=ctx.cfg.seg_steps, aug=ts.aug, seed=ts.seed,
                         val_fraction=ctx.cfg.seg_val_fraction, schedule=ctx.cfg.seg_schedule)
    if not _reuse_or_claim(model_dir, scfg, ts):
        ctx.timed("seg_train", lambda: ctx.jobs.network(model_dir, _train_seg, ctx.progress,
                                                        seg.load_folders(list(ts.folders)), scfg, ctx.cfg.device))
    return model_dir


def _train_seg(folder: Path, progress: bool, slices, scfg, device: str) -> None:
    seg.train_seg(slices, scfg, folder, progress, device)


def _train_cls(folder: Path, progress: bool, images, targets, ccfg, device: str) -> None:
    clsmod.train_cls(images, targets, ccfg, folder, progress, device)


def segmentation(ctx: Context, ts: TrainingSet) -> dict:
    model_dir = _seg_model(ctx, ts)
    where = ctx.out / "eval" / ts.name

    def score() -> dict:
        net, scfg = seg.load_seg(model_dir, ctx.cfg.device)
        sp = ctx.split
        summary = (seg.evaluate_volumes(net, scfg, sp.test_volumes, where) if sp.test_volumes else
                   seg.evaluate(net, scfg, sp.test_slices, where, ctx.cfg.spacing_mm))
        return {**summary["mean"], "excluded": summary["excluded"]}

    return _test_scores(ctx, "seg_eval", model_dir, where, score)


def detection(ctx: Context, ts: TrainingSet) -> dict:
    if ts.negatives is None or not ctx.split.can_detect:
        return {}
    model_dir = ctx.out / "cls" / ts.name
    ccfg = clsmod.ClsConfig(steps=ctx.cfg.cls_steps, aug=ts.aug, seed=ts.seed)
    if not _reuse_or_claim(model_dir, ccfg, ts):
        images, targets = clsmod.load_labelled(list(ts.folders))
        images += [read_image(p)[0] for p in ts.negatives]
        targets += [0] * len(ts.negatives)
        if len(set(targets)) < 2:
            ctx.log(f"{ts.name}: no infection-free training slices, detection skipped")
            return {}
        ctx.timed("cls_train", lambda: ctx.jobs.network(model_dir, _train_cls, ctx.progress, images, targets, ccfg,
                                                        ctx.cfg.device))
    where = ctx.out / "eval_cls" / ts.name

    def score() -> dict:
        net, ccfg = clsmod.load_cls(model_dir, ctx.cfg.device)
        m = clsmod.evaluate_cls(net, ccfg, ctx.split.test_pos, ctx.split.test_neg, where)
        return {k: m[k] for k in DETECTION_METRICS}

    return _test_scores(ctx, "cls_eval", model_dir, where, score)


PATCH_SIZE = 64  # classifier input of the same-source detection (patches are resized to it)
PATCHES_PER_SLICE = 8  # training patches per slice and class, the same cap for every arm


def patch_detection(ctx: Context, ts: TrainingSet) -> dict:
    """Same-source detection: lung patches with and without infection cut from the training slices (real or
    synthetic), the same classifier and budget for every arm, scored on every patch of the test slices."""
    if ctx.split.test_patches is None:
        ctx.split.test_patches = patch_set(ctx.split.test_slices, PATCH_SIZE)
    test_p, test_t = ctx.split.test_patches
    if len(set(test_t)) < 2:
        return {}
    model_dir = ctx.out / "cls_patch" / ts.name
    ccfg = clsmod.ClsConfig(size=PATCH_SIZE, steps=ctx.cfg.cls_steps, aug=ts.aug, seed=ts.seed, crop=False)
    if not _reuse_or_claim(model_dir, ccfg, ts):
        images, targets = patch_set(seg.load_folders(list(ts.folders)), PATCH_SIZE, PATCHES_PER_SLICE)
        if len(set(targets)) < 2:
            ctx.log(f"{ts.name}: no lung patches of both kinds, same-source detection skipped")
            return {}
        ctx.timed("cls_train", lambda: ctx.jobs.network(model_dir, _train_cls, ctx.progress, images, targets, ccfg,
                                                        ctx.cfg.device))
    where = ctx.out / "eval_patch" / ts.name

    def score() -> dict:
        net, ccfg = clsmod.load_cls(model_dir, ctx.cfg.device)
        pos = [p for p, t in zip(test_p, test_t) if t]
        neg = [p for p, t in zip(test_p, test_t) if not t]
        m = clsmod.evaluate_cls(net, ccfg, pos, neg, where)
        return {f"patch_{k}": m[k] for k in ("auc", "accuracy")}

    return _test_scores(ctx, "cls_eval", model_dir, where, score)


def _fidelity_scores(net, scfg, slices, spacing_mm: float) -> dict:
    """Lung and infection DSC of a U-Net on slices against their maps; infection apart over the maps with
    infection (on an infection-free map any false-positive speck scores 0)."""
    fid = seg.evaluate(net, scfg, slices, spacing_mm=spacing_mm)
    lesions = [c["infection_dsc"] for s, c in zip(slices, fid["metric_per_case"]) if (s.label == 2).any()]
    return {**{m: fid["mean"][m] for m in ("lung_dsc", "infection_dsc")},
            "infection_dsc_lesions": float(np.nanmean(lesions)) if lesions else math.nan}


def fidelity_reference(ctx: Context) -> tuple[Path, dict]:
    """The U-Net that judges condition fidelity, and its scores on the real pool slices (the scale). It trains
    on the split's real test slices with arm C's recipe and budget: no arm trains on them, and every
    synthetic set is made from the pool's maps, the k slices' or unannotated slices', so it never saw a map
    it scores. It is never scored on the test slices."""
    sp = ctx.split
    name = f"{sp.key}_F_fidelity_reference" if sp.key else "F_fidelity_reference"
    model_dir = _seg_model(ctx, TrainingSet(name, (sp.test_dir,), ctx.cfg.real_aug, ctx.cfg.seed, None))

    def score() -> dict:
        return _fidelity_scores(*seg.load_seg(model_dir, ctx.cfg.device), seg.load_folders([sp.pool_dir]),
                                ctx.cfg.spacing_mm)

    key = [model_dir / "model.pt", [p for pair in sp.pool for p in pair], ctx.cfg.spacing_mm]
    return model_dir, ctx.timed("seg_eval", lambda: scored(ctx.out / "fidelity" / f"{name}_on_pool.json", key, score))


def condition_fidelity(ctx: Context, ts: TrainingSet) -> dict:
    """DSC of the fidelity reference (`fidelity_reference`) on a synthetic set's images against their own
    maps, beside its scores on the real pool slices (`real_*`); stored in OUT/fidelity/, keyed by the
    reference's weights and the set's files."""
    ref, real = fidelity_reference(ctx)

    def score() -> dict:
        return _fidelity_scores(*seg.load_seg(ref, ctx.cfg.device), seg.load_folders(list(ts.folders)),
                                ctx.cfg.spacing_mm)

    key = [ref / "model.pt", *_set_files(ts), ctx.cfg.spacing_mm]
    row = ctx.timed("seg_eval", lambda: scored(ctx.out / "fidelity" / f"{ts.name}.json", key, score))
    return {**row, **{f"real_{m}": v for m, v in real.items()}}


TASKS: dict[str, Task] = {
    "segmentation": Task({"lung_dsc": "lung DSC", "lung_nsd": "lung NSD", "infection_dsc": "infection DSC",
                          "infection_nsd": "infection NSD", "left_lung_dsc": "left lung DSC",
                          "left_lung_nsd": "left lung NSD", "right_lung_dsc": "right lung DSC",
                          "right_lung_nsd": "right lung NSD"}, segmentation),
    "detection": Task({"auc": "detection AUC (vs normals)", "accuracy": "accuracy", "sensitivity": "sensitivity",
                       "specificity": "specificity"}, detection),
    "patch detection": Task({"patch_auc": "patch AUC (same source)", "patch_accuracy": "patch accuracy"},
                            patch_detection),
}
