"""The few-shot experiment's settings, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.edits import default_edits
from ..downstream.seg import SCHEDULES, SegConfig
from ..errors import InputError
from ..synth.anatomy import ANATOMY
from ..synth.density import DEFAULT_CONSOLIDATION


@dataclass(frozen=True)
class ExperimentConfig:
    ks: tuple[int, ...] = (1, 2)
    repeats: int = 1
    preset: str = "cpu"
    # overrides of the preset for every generator, as `cosingan train --config` takes them
    # (e.g. {"train": {"iters": 100}}); the repeat's seed and the device still come from the experiment
    gan_config: dict[str, Any] = field(default_factory=dict)
    # the all-maps regime and the k-maps regime that beats arm B (prior); `kmaps` (the k maps edited) did not
    # (k = 2, 3 repeats: 0.238 against B's 0.468; docs/results.md), so it runs only when asked for
    regimes: tuple[str, ...] = ("allmaps", "prior")
    # synthetic pairs per set: more distinct pairs, same U-Net budget (k = 2, all-maps, 3 repeats: 300 -> 1000
    # pairs raised infection DSC in every repeat, +0.037; docs/results.md)
    n_synth: int = 1000
    seg_steps: int = 1200
    seg_size: int = 128
    # which U-Net weights an arm keeps: last (every arm trains on all its slices and keeps its last step, as
    # nnU-Net does and as B, with no slice to spare, must) or best (the step that scores best on 10 % of the
    # arm's training slices, held out; B keeps its last). With 25 real slices `best` chose on 2 of them
    seg_checkpoint: str = "last"
    seg_schedule: str = SegConfig.schedule  # the U-Nets' learning rate: poly decay (nnU-Net's) or constant
    cls_steps: int = 600
    test_fraction: float = 0.5  # used only without --test
    negatives: float = 0.1
    # share of synthetic pairs with part of their infection made dense (synth/density.py)
    consolidation: float = DEFAULT_CONSOLIDATION
    anatomy: str = "generated"  # the synthetic sets' body outside the lungs (synth/anatomy.py): generated or transplant
    edits: tuple[str, ...] = default_edits()
    seed: int = 0
    ablation: bool = False  # also train generators with each CoSinGAN part off (first regime only)
    mixed: bool = False  # also arm M: synthetic (first regime) + the k real slices (oversampled), strong aug
    shared_generator: bool = False  # one few-shot generator trained on all k slices instead of one per slice
    # augmentation of arm A's (synthetic) and arm C's (all real) networks: strong, as B's and M's, so that every
    # arm trains the same network with the same budget and augmentation; standard: the lighter one
    synth_aug: str = "strong"
    real_aug: str = "strong"
    mix_real_fraction: float = 0.25  # share of arm M's training pairs that are (repeated) real slices
    spacing_mm: float = 1.0  # mm per original pixel for slices whose files carry no spacing (PNG)
    quality: bool = True  # `cosingan quality` measures of every generator (reference: arm C's U-Net)
    split: str = "per-repeat"  # the pool/test split: SPLITS (without --test)
    fold: int = 0  # the Task-1 fold (0..4)
    select: str = "random"  # how the k slices are drawn from the pool: random, or area (see split.py)
    device: str = "cpu"  # where every network trains and runs (GAN, U-Net, classifier); not a setting of any model

    def __post_init__(self):
        for name in ("synth_aug", "real_aug"):
            if getattr(self, name) not in AUGS:
                raise InputError(f"{name} must be one of {', '.join(AUGS)}, got {getattr(self, name)!r}")
        if self.seg_checkpoint not in CHECKPOINTS:
            raise InputError(f"seg_checkpoint must be one of {', '.join(CHECKPOINTS)}, got {self.seg_checkpoint!r}")
        if self.seg_schedule not in SCHEDULES:
            raise InputError(f"seg_schedule must be one of {', '.join(SCHEDULES)}, got {self.seg_schedule!r}")
        if self.anatomy not in ANATOMY:
            raise InputError(f"anatomy must be one of {', '.join(ANATOMY)}, got {self.anatomy!r}")
        if self.split not in SPLITS:
            raise InputError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")

    @property
    def seg_val_fraction(self) -> float:
        """Share of an arm's training slices held out to choose its U-Net checkpoint."""
        return CHECKPOINTS[self.seg_checkpoint]

    def repeat_seed(self, r: int) -> int:
        return self.seed * 1000 + r

    def split_seed(self, r: int) -> list[int]:
        """Seed of repeat r's pool/test split and normals' halves: its own per repeat, or the experiment's seed
        for one split shared by every repeat (`fixed`)."""
        return [self.seed, r, 3] if self.split == "per-repeat" else [self.seed]


# condition regimes of the synthetic arm: which real maps the conditions are made from, and how
REGIMES = {
    "kmaps": "the k slices' own maps, deformed and edited",
    "allmaps": "every training-pool map, deformed and edited",
    "prior": "the k slices' lungs (deformed, flipped) with new lesion layouts drawn from a prior fitted "
             "to the k maps (edit `relayout`)",
    "unlabelled": "lungs found automatically in the --unlabelled slices (no annotation; deformed, flipped) with "
                  "lesion layouts drawn from the prior fitted to the k maps",
}
SPLITS = {"per-repeat": "each repeat its own seeded random split of the data into pool and test",
          "fixed": "one seeded random split for every repeat",
          "task1": "the COVID-19-CT-Seg benchmark's Task-1 fold (volume roots; --fold)"}
SELECTIONS = ("random", "area")
AUGS = ("standard", "strong")  # the downstream networks' augmentations an arm may choose
CHECKPOINTS = {"best": 0.1, "last": 0.0}  # U-Net checkpoint rule -> share of the training slices held out

# the three CoSinGAN parts, each switched off in turn by the ablation
ABLATIONS = {"two-stage": {"model": {"two_stage": False}}, "mixed-rec": {"train": {"mixed_rec": False}},
             "hier-aug": {"train": {"hier_aug": False}}}
