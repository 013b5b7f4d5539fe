"""`cosingan quality`: is this generator any good? Graded measures in minutes on a CPU.

Real slices of a folder are split in two halves (seeded): a *reference* half trains one segmenter
(cached in OUT/segmenter and shared by every generator), and the *held-out* half gives label maps and
the real images they belong to. For each generator, two samples per held-out map (with the body outside
the lungs as `anatomy` says, as `synthesize --anatomy` makes them), then:

- condition fidelity: lung and infection DSC of the reference segmenter on the synthetic images against
  the maps they were made from (beside the same segmenter on the real held-out images, for scale);
- realism: a classifier two-sample test. A small CNN (4 conv blocks) learns to tell real held-out slices
  from synthetic images of the same maps on half of the maps, and is scored on the other half; then the
  halves swap (cross-fitting: every map is held out once; with 24 maps one half holds out only 12 real
  and 12 synthetic images, too few to tell 0.95 from 1.00). The mean of the two held-out AUCs:
  0.5 = indistinguishable, 1.0 = always told apart. Flips and affine moves only (no noise or blur
  that would hide texture). Also per region, by composites: the real slice with the synthetic lungs
  pasted in (lungs only) and the synthetic image with the real lungs put back (body only). With
  `c2st_seeds` > 1 every AUC is the mean over classifier seeds, with its sd (the test's own noise).
  Beside them, the same whole-image test on deformed copies of the generator's own training slice
  (`training_copies`): the held-out slices come from many patients, and one slice's look is itself
  told apart, so this is the AUC a perfect copy of the training slice would score;
- intensity: per region (normal lung, infection, body outside the lungs), the 1-D Wasserstein distance
  between real and synthetic grey levels (0..255) of the same maps;
- diversity: mean absolute grey-level difference between two samples of one map, inside and outside
  the lungs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.files import write_json, write_text
from ..data.labelmap import BODY, INFECTION, LUNG, body_from_image, label4_to_label
from ..data.layout import list_slice_folder
from ..data.outputs import output
from ..data.pictures import resize
from ..data.readers import Slice, content_hash, load_slice
from ..downstream import cls as clsmod
from ..downstream import seg
from ..downstream.metrics import detection_metrics
from ..downstream.nets import reuse_or_claim
from ..errors import InputError
from ..gan.augment import deform_bank
from ..gan.run import TrainedRun, sample_seed
from .anatomy import ANATOMY, sample

GREY = 127.5  # [-1, 1] -> grey levels


@dataclass(frozen=True)
class QualityConfig:
    maps: int = 24  # held-out maps used (at most)
    seg_steps: int = 600  # reference segmenter budget
    seg_size: int = 128
    c2st_steps: int = 300  # realism classifier budget
    c2st_size: int = 128
    c2st_folds: int = 2  # 1: one half trains, the other scores (the first fold alone)
    c2st_seeds: int = 1  # realism classifiers trained with this many seeds: the AUC's mean, and its sd when > 1
    seed: int = 0
    anatomy: str = "generated"  # the samples' body outside the lungs, as `synthesize --anatomy`

    def __post_init__(self):
        if self.c2st_folds not in (1, 2):
            raise ValueError(f"c2st_folds must be 1 or 2, got {self.c2st_folds!r}")
        if self.c2st_seeds < 1:
            raise ValueError(f"c2st_seeds must be at least 1, got {self.c2st_seeds!r}")
        if self.anatomy not in ANATOMY:
            raise ValueError(f"anatomy must be one of {', '.join(ANATOMY)}, got {self.anatomy!r}")


def split_folder(data: Path, cfg: QualityConfig) -> tuple[list, list]:
    pairs = list_slice_folder(data)
    if len(pairs) < 4:
        raise InputError(f"{data}: the quality test needs at least 4 real slices (it has {len(pairs)})")
    order = np.random.default_rng([cfg.seed, 11]).permutation(len(pairs))
    half = len(pairs) // 2
    ref = [pairs[i] for i in sorted(order[:half])]
    held = [pairs[i] for i in sorted(order[half:])][: cfg.maps]
    return ref, held


def reference_segmenter(ref: list, cfg: QualityConfig, out: Path, progress: bool, device: str = "cpu"):
    """The reference segmenter (OUT/segmenter), reused only when it was trained with these settings on these
    slices; a cached one of other settings or slices is trained again."""
    model_dir = out / "segmenter"
    slices = [load_slice(i, l) for i, l in ref]
    scfg = seg.SegConfig(size=cfg.seg_size, steps=cfg.seg_steps, aug="standard", seed=cfg.seed)
    data = content_hash(*(a for s in slices for a in (s.image, s.label)))
    try:
        reuse = reuse_or_claim(model_dir, scfg, data)
    except InputError:  # our own cache, of other settings or slices: made again
        for name in ("model.pt", "train.json"):
            (model_dir / name).unlink()
        reuse = reuse_or_claim(model_dir, scfg, data)
    if not reuse:
        seg.train_seg(slices, scfg, model_dir, progress, device)
    return seg.load_seg(model_dir, device)


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b) * GREY) if a.size and b.size else float("nan")


def _c2st(real: list[np.ndarray], fake: list[np.ndarray], cfg: QualityConfig, out: Path, progress: bool,
          device: str, run: int = 0) -> float:
    """Held-out AUC of a classifier telling real (1) from synthetic (0) images of the same maps: the mean
    over `cfg.c2st_folds` folds (fold f's classifier in OUT/f, trained on one half, scored on the other).
    `run` > 0: the same halves, classifiers of other seeds (in OUT/seedRUN/f)."""
    n = len(real)
    order = np.random.default_rng([cfg.seed, 13]).permutation(n)
    halves = (order[: n // 2], order[n // 2:])
    aucs = []
    for f, (tr, te) in enumerate([halves, halves[::-1]][: cfg.c2st_folds]):
        where = out / (f"seed{run}" if run else "") / str(f)
        ccfg = clsmod.ClsConfig(size=cfg.c2st_size, steps=cfg.c2st_steps, aug="geometric",
                                seed=cfg.seed + f + 1000 * run)
        clsmod.train_cls([real[i] for i in tr] + [fake[i] for i in tr], [1] * len(tr) + [0] * len(tr), ccfg,
                         where, progress, device)
        net, ccfg = clsmod.load_cls(where, device)
        p = clsmod.scores(net, ccfg, [real[i] for i in te] + [fake[i] for i in te])
        aucs.append(detection_metrics(p, np.array([1] * len(te) + [0] * len(te)))["auc"])
    return float(np.mean(aucs))


REALISM = {"": "whole image", "_lung": "lungs only", "_body": "body only"}  # realism_auc + suffix


def realism(reals: list[np.ndarray], fakes: list[np.ndarray], lungs: list[np.ndarray], cfg: QualityConfig,
            out: Path, progress: bool, device: str, regions: tuple[str, ...] = tuple(REALISM)) -> dict:
    """The realism test on the whole image and per region, by composites against the real slices of the same
    maps: lungs only (the real slice with the synthetic lungs pasted in) and body only (the synthetic image
    with the real lungs put back). Each the mean AUC over `cfg.c2st_seeds` classifier seeds, with its sd
    over them when there are several (`..._sd`). `regions`: which of them (REALISM's keys)."""
    composites = {"": fakes, "_lung": [np.where(m, f, r) for r, f, m in zip(reals, fakes, lungs)],
                  "_body": [np.where(m, r, f) for r, f, m in zip(reals, fakes, lungs)]}
    row = {}
    for suffix, fake in ((k, composites[k]) for k in regions):
        aucs = [_c2st(reals, fake, cfg, out / (suffix.lstrip("_") or "whole"), progress, device, run)
                for run in range(cfg.c2st_seeds)]
        row[f"realism_auc{suffix}"] = float(np.mean(aucs))
        if len(aucs) > 1:
            row[f"realism_auc{suffix}_sd"] = float(np.std(aucs, ddof=1))
    return row


def run_labels(runs: list[str | Path]) -> list[str]:
    """Short names that tell the runs apart: the folder name, with as many parent folders as two runs
    of the same name need (A/gan/medseg_016_s0 and B/medseg_016_s0 -> gan/medseg_016_s0, B/medseg_016_s0)."""
    parts = [Path(r).resolve().parts for r in runs]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(set(parts)):
            return labels
    return [str(r) for r in runs]


def assess(run: str | Path, held: list[Slice], segmenter, cfg: QualityConfig, out: Path, progress: bool,
           device: str = "cpu", label: str | None = None) -> dict:
    """The quality measures of one generator on the held-out slices (networks on `device`); `label`
    names its realism classifier's folder (default: the run's folder name)."""
    net, scfg = segmenter
    tr = TrainedRun.from_pretrained(run, device)
    reals, fakes, lungs, syn_slices = [], [], [], []
    regions = {"lung": ([], []), "infection": ([], []), "body": ([], [])}
    div_in, div_out = [], []
    for j, sl in enumerate(held):
        label4 = tr.condition(sl.label, body_from_image(sl.image, sl.label))
        s0, s1 = sample(tr, [label4, label4], [sample_seed(cfg.seed, j, 0), sample_seed(cfg.seed, j, 1)], cfg.anatomy)
        real = resize(sl.image, label4.shape)
        reals.append(real)
        fakes.append(s0)
        lungs.append(label4 >= LUNG)
        syn_slices.append(Slice(s0, label4_to_label(label4), None, "png", image_path=f"{sl.origin}#synthetic"))
        for name, mask in (("lung", label4 == LUNG), ("infection", label4 == INFECTION), ("body", label4 == BODY)):
            regions[name][0].append(real[mask])
            regions[name][1].append(s0[mask])
        lung = label4 >= LUNG
        div_in.append(float(np.abs(s0 - s1)[lung].mean() * GREY))
        div_out.append(float(np.abs(s0 - s1)[label4 == BODY].mean() * GREY))
    fid = seg.evaluate(net, scfg, syn_slices)["mean"]
    c2st = out / "c2st" / (label or Path(run).name).replace("/", "__")
    row = {"run": str(run), "maps": len(held),
           "fidelity_lung_dsc": fid["lung_dsc"], "fidelity_infection_dsc": fid["infection_dsc"],
           **realism(reals, fakes, lungs, cfg, c2st, progress, device)}
    copies = training_copies(tr, [r.shape for r in reals], cfg.seed)
    row.update({k.replace("realism_auc", "realism_auc_copy"): v
                for k, v in realism(reals, copies, lungs, cfg, c2st / "copy", progress, device, ("",)).items()})
    for name, (r, f) in regions.items():
        row[f"w1_{name}"] = _wasserstein(np.concatenate(r), np.concatenate(f))
    row["diversity_lung"] = float(np.mean(div_in))
    row["diversity_body"] = float(np.mean(div_out))
    return row


def training_copies(run: TrainedRun, shapes: list[tuple[int, int]], seed: int) -> list[np.ndarray]:
    """One image per shape: the run's training slice (its pairs in turn), deformed as the hierarchical
    augmentation deforms it (flip, affine, elastic) and resized to the shape. Real anatomy and texture with
    one slice's look: what a generator that copied its training slice perfectly would draw."""
    pairs = run.train_pairs
    per = -(-len(shapes) // len(pairs))
    banks = [deform_bank(image, label4, per, seed + i) for i, (image, label4) in enumerate(pairs)]
    return [resize(banks[j % len(pairs)][j // len(pairs)][0], s) for j, s in enumerate(shapes)]


COLUMNS = {"fidelity_lung_dsc": "fidelity lung DSC", "fidelity_infection_dsc": "fidelity infection DSC",
           "realism_auc": "realism AUC (0.5 best)", "realism_auc_lung": "realism AUC, lungs only",
           "realism_auc_body": "realism AUC, body only",
           "realism_auc_copy": "realism AUC of its training slice (deformed copies)",
           "w1_lung": "W1 lung", "w1_infection": "W1 infection", "w1_body": "W1 body",
           "diversity_lung": "diversity lung", "diversity_body": "diversity body"}


def quality(runs: list[str | Path], data: str | Path, out: str | Path, cfg: QualityConfig = QualityConfig(),
            progress: bool = True, device: str = "cpu") -> dict:
    """Quality rows for every run (also OUT/quality.json and OUT/quality.md)."""
    out = Path(out)
    ref, held_pairs = split_folder(Path(data), cfg)
    for r in runs:  # every run must load before any work
        TrainedRun.from_pretrained(r, device)
    held = [load_slice(i, l) for i, l in held_pairs]
    with output(out, "quality", (data, *runs)) as out:
        return _quality(runs, data, out, cfg, ref, held, held_pairs, progress, device)


def _quality(runs, data, out: Path, cfg: QualityConfig, ref, held, held_pairs, progress: bool, device: str) -> dict:
    segmenter = reference_segmenter(ref, cfg, out, progress, device)
    real_fid = seg.evaluate(*segmenter, held)["mean"]
    rows = [assess(r, held, segmenter, cfg, out, progress, device, name) for r, name in zip(runs, run_labels(runs))]
    record = {"config": asdict(cfg), "data": str(data), "reference": [p[0].name for p in ref],
              "held_out": [p[0].name for p in held_pairs],
              "real_fidelity": {"lung_dsc": real_fid["lung_dsc"], "infection_dsc": real_fid["infection_dsc"]},
              "rows": rows}
    write_json(out / "quality.json", record)
    write_text(out / "quality.md", markdown(record))
    return record


def cell(row: dict, key: str) -> str:
    """One measure of a quality row as the tables show it: DSC and AUC to 3 decimals (AUC with its sd over
    classifier seeds when measured), grey levels to 1; '-' where the row lacks it."""
    if row.get(key) is None:
        return "-"
    if not key.startswith(("fid", "real")):
        return f"{row[key]:.1f}"
    return f"{row[key]:.3f}" + (f" ± {row[key + '_sd']:.3f}" if row.get(key + "_sd") is not None else "")


def markdown(record: dict) -> str:
    heads = ["generator"] + list(COLUMNS.values())
    lines = ["# Generator quality", "",
             f"{len(record['held_out'])} held-out real maps; reference segmenter on {len(record['reference'])} "
             f"real slices scores lung DSC {record['real_fidelity']['lung_dsc']:.3f} / infection DSC "
             f"{record['real_fidelity']['infection_dsc']:.3f} on the held-out real images (the scale for fidelity). "
             "W1: Wasserstein distance of grey levels (0..255) to the real images of the same maps; diversity: "
             "mean grey-level difference of two samples of one map. Realism AUC of its training slice: the same "
             "test on deformed copies of the slice the generator trained on, what a perfect copy of one slice "
             "scores against these real slices; read the samples' AUC against it.", "",
             "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for r, name in zip(record["rows"], run_labels([r["run"] for r in record["rows"]])):
        lines.append("| " + " | ".join([name] + [cell(r, k) for k in COLUMNS]) + " |")
    return "\n".join(lines) + "\n"
