"""The few-shot experiment's settings, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.edits import default_edits
from ..devices import DEVICE_HELP, resolve_device
from ..downstream.seg import MIN_SLICES_TO_HOLD_OUT, SCHEDULES, SegConfig, check_config
from ..gan.config import PRESETS, merge
from ..gan.run import PRECISION_HELP, PRECISIONS
from ..settings import check_settings, setting
from ..synth.anatomy import ANATOMY
from ..synth.density import ImageSteps

MAX_PAIRS = 10**7  # synthetic pairs: far beyond any dataset, before memory runs out


# condition regimes of the synthetic arm: which real maps the conditions are made from, and how
REGIMES = {
    "kmaps": "the k slices' own maps, deformed and edited",
    "allmaps": "every training-pool map, deformed and edited",
    "prior": "the k slices' lungs (deformed, flipped, the mediastinum widened at random) with new lesion "
             "layouts drawn from a prior fitted to the k maps (edits `mediastinum`, `relayout`)",
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


@dataclass(frozen=True)
class ExperimentConfig(ImageSteps):
    """Every setting of the few-shot experiment (the synthetic sets' image steps, `ImageSteps`, among them),
    each declared once: its flag, help, choices and range (`settings.setting`), checked where the config is
    made. Why a default is what it is: docs/design.md."""

    ks: tuple[int, ...] = setting((1, 2), "numbers of real slices", flag="--k", low=1, many=True)
    repeats: int = setting(1, "repeats: each a new split, draw of the k slices and seeds", low=1)
    preset: str = setting("cpu", "CoSinGAN preset", choices=PRESETS)
    gan_config: dict[str, Any] = setting(
        default_factory=dict, help="JSON file of overrides of the preset for every generator, as for `cosingan "
        "train --config` (e.g. {\"train\": {\"iters\": 100}}); the repeat's seed and the device still come from the "
        "experiment", json_file=True)
    regimes: tuple[str, ...] = setting(
        ("allmaps", "prior"), "conditions for the synthetic arm: " + "; ".join(f"{k}: {v}" for k, v in REGIMES.items()),
        choices=REGIMES, many=True)
    mixed: bool = setting(False, "also arm M: the synthetic set of the first regime plus the k real slices (a quarter "
                          "of the pairs), with B's strong augmentation and the same budget")
    shared_generator: bool = setting(False, "one few-shot CoSinGAN trained on all k slices (one pyramid shared by "
                                     "the k pairs) instead of one per slice")
    gan_seeds: int = setting(1, "generators trained per slice (per group with --shared-generator), each with its own "
                             "seed; the synthetic sets spread their pairs over all of them", low=1, high=16)
    synth_aug: str = setting("strong", "augmentation of the networks trained on synthetic data (arm A): strong (as "
                             "every arm) or standard (lighter: flips and small affine moves)", choices=AUGS)
    real_aug: str = setting("strong", "augmentation of the networks trained on all real slices (arm C): strong (as "
                            "every arm) or standard", choices=AUGS)
    select: str = setting("random", "how the k slices are drawn: random, or area: at random among slices with large "
                          "lungs and 5-40%% of the lung infected, as a person would pick them", choices=SELECTIONS)
    n_synth: int = setting(1000, "synthetic pairs per dataset", low=1, high=MAX_PAIRS)
    anatomy: str = setting("generated", "the synthetic sets' body outside the lungs: generated (the generators' own) "
                           "transplant (each generator's training slice's anatomy, warped onto the condition) or inject (the same "
                           "carried in at a coarse scale, the finer scales drawing over it)",
                           choices=ANATOMY)
    precision: str = setting("fp32", PRECISION_HELP, choices=PRECISIONS)
    seg_steps: int = setting(1200, "U-Net budget for every arm", low=1)
    seg_size: int = setting(128, "U-Net input size (px)", low=16, high=4096)
    seg_checkpoint: str = setting(
        "last", "the U-Net weights each arm keeps: last (every arm trains on all its slices and keeps its last step) "
        f"or best (the step that scores best on {round(CHECKPOINTS['best'] * 100)}%% of its training slices, held "
        f"out; arms with under {MIN_SLICES_TO_HOLD_OUT} slices keep the last)", choices=CHECKPOINTS)
    seg_schedule: str = setting(SegConfig.schedule, "the U-Nets' learning rate over the steps: constant, or poly "
                                "(decays to 0 as nnU-Net's does)", choices=SCHEDULES)
    cls_steps: int = setting(600, "classifier budget for every arm", low=1)
    ablation: bool = setting(False, "also generators with each CoSinGAN part off (two-stage, mixed reconstruction, "
                             "hierarchical augmentation), on the first regime")
    spacing_mm: float = setting(1.0, "mm per original pixel for test slices whose files carry no spacing (PNG/JPG), "
                                "for NSD", flag="--spacing", low=1e-3, high=100.0)
    split: str = setting("per-repeat", "how --data is split into training pool and test set (slices, or the cases "
                         "of a volume root), unless --test is given: " + "; ".join(f"{k}: {v}" for k, v in
                                                                                  SPLITS.items()), choices=SPLITS)
    fold: int = setting(0, "the Task-1 fold (--split task1)", low=0, high=4)
    quality: bool = setting(True, "skip the quality measures of the generators (`cosingan quality`: fidelity, "
                            "realism, grey levels, diversity)", flag="--no-quality", invert=True)
    seed: int = setting(0, "the experiment's seed: splits, draws, generators and networks of every repeat", low=0,
                        high=2**63 - 1)
    device: str = setting("cpu", "every network (generators, U-Nets, classifiers): " + DEVICE_HELP)
    # not flags: fixed parts of the protocol
    test_fraction: float = 0.5  # share of --data that is tested on (without --test)
    negatives: float = 0.1  # share of each set's conditions that are infection-free
    edits: tuple[str, ...] = default_edits()
    mix_real_fraction: float = 0.25  # share of arm M's training pairs that are (repeated) real slices

    def __post_init__(self):
        check_settings(self)
        check_config(SegConfig(size=self.seg_size, schedule=self.seg_schedule))
        merge(PRESETS[self.preset], self.gan_config, "--gan-config")  # overrides that fit the preset
        resolve_device(self.device)

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


