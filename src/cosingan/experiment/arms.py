"""The arms of the experiment, as a registry. An arm turns one repeat (and, for per-k arms, one draw
of k real slices) into training sets; every registered task is trained and scored on each of them with
the same budget. To add an arm (say, synthetic + the k real slices), write a generator function and
decorate it with `@register_arm`: the runner, the table and the report pick it up.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from ..data.conditions import Source, sources_from_folder, with_lesions_of, write_masks
from ..data.edits import whole_map_edits
from ..data.files import write_json
from ..errors import InputError
from ..data.readers import load_slice
from ..gan.config import merge, preset
from ..synth.dataset import Synthesizer, coverage_text, synthesize
from ..synth.density import ImageSteps
from .config import ABLATIONS, REGIMES
from .context import Context
from .jobs import Pending
from .split import Draw, repeat_folder
from .tasks import TrainingSet


@dataclass(frozen=True)
class Arm:
    key: str
    title: str
    build: Callable[[Context, int, Draw | None], Iterator[tuple[str, TrainingSet]]]  # (regime, set) pairs
    per_k: bool = True  # built once per draw of k slices (else once per repeat)
    reference: bool = False  # its U-Net judges the condition fidelity of synthetic sets


ARMS: dict[str, Arm] = {}


def register_arm(key: str, title: str, per_k: bool = True, reference: bool = False):
    def deco(fn):
        ARMS[key] = Arm(key, title, fn, per_k, reference)
        return fn
    return deco


def _aug_suffix(aug: str) -> str:
    """Models trained with each augmentation recipe have their own folders: one experiment folder can hold
    both, and no model is reused under the other."""
    return f"_{aug}aug"


@register_arm("C", "C: all real", per_k=False, reference=True)
def all_real(ctx: Context, r: int, d: Draw | None) -> Iterator[tuple[str, TrainingSet]]:
    ctx.log(f"repeat {r + 1}/{ctx.cfg.repeats}: arm C (all {len(ctx.split.pool)} real training slices)")
    aug = ctx.cfg.real_aug
    yield "", TrainingSet(f"r{r}_C_allreal" + _aug_suffix(aug), (ctx.split.pool_dir,), aug, ctx.cfg.repeat_seed(r),
                          ctx.split.normal_pool)


@register_arm("B", "B: k real + strong aug")
def few_real(ctx: Context, r: int, d: Draw) -> Iterator[tuple[str, TrainingSet]]:
    yield "", TrainingSet(f"{d.tag}_B_real_strongaug", (d.folder,), "strong", d.seed, d.normals)


def generator_groups(ctx: Context, d: Draw) -> list[list[tuple[Path, Path]]]:
    """The chosen slices grouped by generator: one group per slice, or all k in one group when the
    experiment trains one few-shot generator shared by the k slices (`shared_generator`)."""
    return [list(d.chosen)] if ctx.cfg.shared_generator else [[c] for c in d.chosen]


def generator_folder(ctx: Context, d: Draw, group: list[tuple[Path, Path]], variant: str = "", j: int = 0) -> Path:
    """Generator j of a group (`gan_seeds`): the first keeps the name and seed it always had."""
    return ctx.out / "gan" / f"{'+'.join(ip.stem for ip, _ in group)}_s{d.seed}{f'_g{j}' if j else ''}{variant}"


def generator_seed(d: Draw, j: int) -> int:
    return d.seed + 1_000_003 * j


def generator_runs(ctx: Context, d: Draw, variant: str = "") -> list[tuple[list[tuple[Path, Path]], Path, int]]:
    """(group, folder, seed) of each of this draw's generators: `gan_seeds` per group."""
    return [(g, generator_folder(ctx, d, g, variant, j), generator_seed(d, j))
            for g in generator_groups(ctx, d) for j in range(ctx.cfg.gan_seeds)]


def generators(ctx: Context, d: Draw, variant: str = "", overrides: dict | None = None) -> list[str]:
    """This draw's generators, trained, resumed or reused (`ensure_trained` decides)."""
    base = merge(preset(ctx.cfg.preset), ctx.cfg.gan_config, "--gan-config")
    cfg = merge(replace(base, device=ctx.cfg.device), overrides or {}, "ablation")
    paths, pending = [], None
    for group, run, seed in generator_runs(ctx, d, variant):  # every one sent out before waiting for any (`Jobs`)
        t0 = time.time()
        read = lambda g=group: [load_slice(ip, lp) for ip, lp in g]  # noqa: E731  (read only when training)
        try:
            if ctx.jobs.generator(run, read, replace(cfg, seed=seed), ctx.progress) != "done":  # reuse costs no time
                ctx.add_time("gan_train", time.time() - t0)
        except Pending as e:
            pending = e
        paths.append(str(run))
    if pending is not None:
        raise pending
    return paths


@dataclass(frozen=True)
class Regime:
    """Where a condition regime takes its real maps from, and which edits it draws."""

    source: Callable[[Context, Draw], list[Source]]
    edits: Callable[[Context], list[str]]  # one or two of these per map
    always: tuple[str, ...] = ()  # and all of these, after them


CONDITION_REGIMES = {
    "kmaps": Regime(lambda ctx, d: sources_from_folder(d.folder), lambda ctx: list(ctx.cfg.edits)),
    "allmaps": Regime(lambda ctx, d: sources_from_folder(ctx.split.pool_dir), lambda ctx: list(ctx.cfg.edits)),
    "prior": Regime(lambda ctx, d: sources_from_folder(d.folder), lambda ctx: whole_map_edits(list(ctx.cfg.edits)),
                    ("mediastinum", "relayout")),
    "unlabelled": Regime(lambda ctx, d: with_lesions_of(ctx.unlabelled, sources_from_folder(d.folder)),
                         lambda ctx: whole_map_edits(list(ctx.cfg.edits)), ("relayout",)),
}
assert set(CONDITION_REGIMES) == set(REGIMES)


def _conditions(ctx: Context, d: Draw, regime: str):
    masks = ctx.out / "conditions" / f"{d.tag}_{regime}"
    rg, c = CONDITION_REGIMES[regime], ctx.cfg
    settings = {"regime": regime, "n": c.n_synth, "edits": rg.edits(ctx), "always": list(rg.always),
                "negatives": c.negatives, "seed": d.seed, "slices": d.names}
    if regime == "unlabelled":  # which unannotated slices gave the lungs
        settings["unlabelled"] = [s.name for s in ctx.unlabelled]
    record = masks / "conditions.json"
    if (masks / "masks.csv").exists():
        if record.exists() and json.loads(record.read_text()) != settings:  # (folders of earlier versions: none)
            raise InputError(f"{masks}: conditions made with other settings; use a new --out for these settings")
        return masks
    src = rg.source(ctx, d)
    ctx.timed("masks", lambda: write_masks(src, masks, c.n_synth, rg.edits(ctx),
                                           c.negatives, d.seed, ctx.progress, always=rg.always))
    write_json(record, settings)
    return masks


def _synthetic_set(ctx: Context, runs: list[str], masks, name: str, seed: int):
    folder = ctx.out / "synthetic" / name
    syn = Synthesizer(runs, str(masks), [], 0.0, seed, ctx.cfg.device, ImageSteps.of(ctx.cfg), ctx.cfg.anatomy,
                      ctx.cfg.precision)
    made = ctx.timed("synthesize", lambda: synthesize(syn, ctx.cfg.n_synth, folder, "png", ctx.progress))
    if name not in ctx.coverage:
        ctx.coverage[name] = made["coverage"]
        ctx.log(f"{name}: {coverage_text(made['coverage'])}")
    return folder


def _variant(ctx: Context, d: Draw) -> str:
    """Name suffix of everything made from a shared few-shot generator (for k = 1 it is the per-slice one),
    or with the body carried from the training slices (`anatomy` transplant or inject): each variant its own
    folders."""
    return ("_shared" if ctx.cfg.shared_generator and d.k > 1 else "") + anatomy_suffix(ctx.cfg.anatomy)


def anatomy_suffix(anatomy: str) -> str:
    """Name suffix of sets, models and quality records made with the body carried from the training slices."""
    return "" if anatomy == "generated" else f"_{anatomy}"


def _regime_set(ctx: Context, d: Draw, regime: str, runs: list[str]) -> Path:
    """The synthetic set of one draw and regime (arms A and M train on the same one)."""
    return _synthetic_set(ctx, runs, _conditions(ctx, d, regime), f"{d.tag}_{regime}{_variant(ctx, d)}", d.seed)


def _synth_recipe(ctx: Context, d: Draw) -> tuple[str, str]:
    """(augmentation, name suffix) of arm A's networks: each recipe gets its own folders."""
    aug = ctx.cfg.synth_aug
    return aug, _variant(ctx, d) + _aug_suffix(aug)


@register_arm("A", "A: synthetic (CoSinGAN)")
def synthetic(ctx: Context, r: int, d: Draw) -> Iterator[tuple[str, TrainingSet]]:
    runs = generators(ctx, d)
    aug, suffix = _synth_recipe(ctx, d)
    for regime in ctx.cfg.regimes:
        folder = _regime_set(ctx, d, regime, runs)
        yield regime, TrainingSet(f"{d.tag}_A_synthetic_{regime}{suffix}", (folder,), aug, d.seed, [],
                                  synthetic=True)
        if not ctx.cfg.ablation or regime != ctx.cfg.regimes[0]:
            continue
        # ablation: the same conditions and budget, generators with one CoSinGAN part off
        for part, over in ABLATIONS.items():
            ctx.log(f"repeat {r + 1}, k={d.k}: ablation without {part}")
            folder = _synthetic_set(ctx, generators(ctx, d, f"_no-{part}", over), _conditions(ctx, d, regime),
                                    f"{d.tag}_{regime}_no-{part}{_variant(ctx, d)}", d.seed)
            yield f"{regime}, no {part}", TrainingSet(f"{d.tag}_A_synthetic_{regime}_no-{part}{suffix}",
                                                      (folder,), aug, d.seed, None)


@register_arm("M", "M: synthetic + k real")
def mixed(ctx: Context, r: int, d: Draw) -> Iterator[tuple[str, TrainingSet]]:
    """The practitioner's recipe: arm A's synthetic set of the first regime plus the k real slices,
    repeated so that they make `mix_real_fraction` of the training pairs, with arm B's strong
    augmentation; same budget."""
    if not ctx.cfg.mixed:
        return
    regime = ctx.cfg.regimes[0]
    folder = _regime_set(ctx, d, regime, generators(ctx, d))  # arm A's set: made once, reused here
    f = ctx.cfg.mix_real_fraction
    copies = max(1, round(f / (1 - f) * ctx.cfg.n_synth / len(d.chosen)))
    real = repeat_folder(d.chosen, copies, ctx.out / "data" / f"{d.tag}_x{copies}")
    yield regime, TrainingSet(f"{d.tag}_M_mixed_{regime}{_variant(ctx, d)}", (folder, real), "strong", d.seed,
                              d.normals)
