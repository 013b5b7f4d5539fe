"""The few-shot experiment: synthetic-from-k-slices vs k real slices + strong augmentation vs all real.

For each repeat: arm C trains on all real pool slices; then for each k, k training slices are drawn
from the pool (seeded, recorded) and arms B (the k real slices, strong augmentation) and A (one
CoSinGAN per slice, conditions, a synthetic dataset per condition regime) build their training sets.
Every registered task (segmentation, detection) trains the same network with the same budget on each
set and is scored on the test slices. Everything lands in one folder and every step is resumable:
finished generators, datasets, models and evaluations are reused.

Condition regimes for (A): `config.REGIMES` (by default `allmaps`, every training-pool map with the k
images' generators, and `prior`, new lesion layouts on the k maps' lungs: nothing annotated but the k maps).

Detection (with `normals`, a folder of infection-free images split in half into training and test
negatives): (A) synthetic positives and synthetic infection-free negatives only, (B) the k real slices
+ k real normals with strong augmentation, (C) all real training slices + all training normals; tested
on the test slices + the test normals.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ..data.conditions import sources_from_unlabelled
from ..data.files import write_json
from ..data.outputs import check_output, claim_output, locked
from ..downstream.patches import PATCH_DEFINITION
from ..downstream.seg import load_seg
from ..errors import InputError
from ..gan.checkpoint import CKPT, versions
from ..synth.quality import QualityConfig, assess
from .arms import ARMS, Arm, anatomy_suffix, generator_runs
from .config import ExperimentConfig
from .context import Context
from .jobs import Jobs, Pending
from .report import write_report
from .split import Draw, draw, make_splits
from .table import paired, table
from .tasks import TASKS, condition_fidelity, scored


def prepare(data: Path, out: Path, cfg: ExperimentConfig, test: Path | None, normals: Path | None,
            progress: bool, log) -> Context:
    """Validate and split the inputs (every repeat's split, before anything is written), then link each
    split's folders (a volume root's slices exported) and read its test set."""
    splits = make_splits(data, test, normals, cfg)
    earlier = out / "results.json"
    if earlier.exists():
        prev = json.loads(earlier.read_text()).get("splits")
        if prev is None:
            raise InputError(f"{out}: holds an experiment of an earlier version of cosingan (one split for every "
                             "repeat, recorded otherwise); run it again in a new --out")
        for p, s in zip(prev, splits):
            ident = s.identity()
            if {k: p.get(k) for k in ident} != ident:
                raise InputError(f"{out}: holds an experiment on another training/test split; use a new --out")
    claim_output(out, "experiment", (data, test, normals))
    for s in dict.fromkeys(splits):  # each split once (repeats may share one)
        s.link(out, progress)
        if s.test_volumes:
            log(f"volumes{' ' + s.key if s.key else ''}: {len(s.train_volumes)} training ({len(s.pool)} slices "
                f"with lungs), {len(s.test_volumes)} test ({len(s.tests)} slices), split {s.how}")
    return Context(cfg, out, splits, progress=progress, log=log)


def run_arm(ctx: Context, arm: Arm, r: int, d: Draw | None, reference: dict[int, str]) -> None:
    """Every task on every training set of one arm (`ctx` at repeat r); condition fidelity for synthetic sets.
    A set whose networks (or generators) are training elsewhere (`Pending`) is left for the next walk,
    once every task of it has been sent out."""
    try:
        for regime, ts in arm.build(ctx, r, d):
            row, pending = {"repeat": r, "k": d.k if d else None, "arm": arm.key, "regime": regime}, False
            for task in TASKS.values():
                try:
                    row.update(task.run(ctx, ts))
                except Pending:
                    pending = True
            if pending:
                continue
            ctx.results.append(row)
            if arm.reference:
                reference[r] = ts.name
            if ts.synthetic:
                try:
                    ctx.fidelity.append({"repeat": r, "k": row["k"], "regime": regime, **condition_fidelity(ctx, ts)})
                except Pending:
                    pass
    except Pending:  # the arm's generators: its sets follow on the next walk
        pass


def generator_quality(ctx: Context, d: Draw, reference: str) -> list[dict]:
    """`cosingan quality` measures of this draw's generators: the reference arm's U-Net judges fidelity,
    the test slices are the real maps and images (stored in OUT/quality/, keyed by the generator's
    checkpoint, the reference's weights, the held-out slices and the budgets)."""
    rows = []
    c = ctx.cfg
    qcfg = QualityConfig(c2st_steps=max(1, c.cls_steps // 2), c2st_size=c.seg_size, seed=d.seed,
                         anatomy=c.anatomy)  # budgets follow the experiment's
    held = ctx.split.test_slices[: qcfg.maps]
    ref = ctx.out / "seg" / reference / "model.pt"
    for group, run, _ in generator_runs(ctx, d):
        if not (run / CKPT).exists():  # still training elsewhere
            raise Pending(run)

        name = run.name + anatomy_suffix(c.anatomy)

        def measure(run=run, name=name) -> dict:
            return assess(run, held, load_seg(ref.parent, c.device), qcfg, ctx.out / "quality", ctx.progress, c.device,
                          name)

        row = ctx.timed("quality", lambda: scored(ctx.out / "quality" / f"{name}.json",
                                                  [run / CKPT, ref, [(s.image, s.label) for s in held], asdict(qcfg)],
                                                  measure))
        rows.append({"repeat": d.repeat, "k": d.k, "slice": "+".join(ip.name for ip, _ in group), **row})
    return rows


def run_few_shot(data: str | Path, out: str | Path, cfg: ExperimentConfig, test: str | Path | None = None,
                 normals: str | Path | None = None, progress: bool = True, log=print,
                 unlabelled: str | Path | None = None, jobs: Jobs | None = None) -> dict:
    """`unlabelled`: a folder of unannotated slices showing the whole body, the lungs of the `unlabelled`
    condition regime (found automatically, once, before anything is written). `jobs`: where generators
    and networks train (default: here, one after another)."""
    t_start = time.time()
    out = Path(out)
    if ("unlabelled" in cfg.regimes) != (unlabelled is not None):
        raise InputError("the unlabelled regime needs --unlabelled DIR (unannotated slices showing the whole body)"
                         if unlabelled is None else "--unlabelled is used only by the unlabelled regime; add it "
                         "to --regimes")
    lungs = []
    if unlabelled is not None:
        check_output(out, "experiment", (unlabelled,))
        lungs = sources_from_unlabelled(unlabelled)
    ctx = prepare(Path(data), out, cfg, Path(test) if test else None, Path(normals) if normals else None,
                  progress, log)
    ctx.unlabelled = lungs
    ctx.jobs = jobs or Jobs()
    with locked(out):
        try:
            return _run(ctx, data, test, normals, t_start, unlabelled)
        finally:
            ctx.jobs.close()


def _walk(ctx: Context, record: dict) -> list[dict]:
    """Every repeat, draw, arm and task once, into ctx.results (and the record's draws); returns the
    generators' quality rows."""
    cfg = ctx.cfg
    ctx.results.clear()
    ctx.fidelity.clear()
    record["runs"] = []
    reference: dict[int, str] = {}  # repeat -> training set of the reference arm's U-Net
    quality_rows: list[dict] = []
    for r in range(cfg.repeats):
        rc = ctx.at(r)
        test_names = {p[0].name for p in rc.split.tests}
        for arm in ARMS.values():
            if not arm.per_k:
                run_arm(rc, arm, r, None, reference)
        for k in cfg.ks:
            d = draw(cfg, rc.split.pool, rc.split.normal_pool, r, k, ctx.out)
            assert not set(d.names) & test_names  # never a test slice
            record["runs"].append({"repeat": r, "k": k, "slices": d.names})
            ctx.log(f"repeat {r + 1}, k={k}: {', '.join(d.names)}")
            for arm in ARMS.values():
                if arm.per_k:
                    run_arm(rc, arm, r, d, reference)
            if cfg.quality and r in reference:
                try:
                    quality_rows += generator_quality(rc, d, reference[r])
                except Pending:
                    pass
    return quality_rows


def _run(ctx: Context, data, test, normals, t_start: float, unlabelled=None) -> dict:
    cfg, out = ctx.cfg, ctx.out
    splits = list(dict.fromkeys(ctx.splits))
    record = {"config": asdict(cfg), "data": str(data), "test": str(test) if test else None,
              "splits": [s.record() for s in ctx.splits], "runs": [],
              "normals": {"folder": str(normals) if normals else None},
              **({"unlabelled": {"folder": str(unlabelled), "slices": len(ctx.unlabelled)}} if unlabelled else {}),
              "detection": ("; ".join(dict.fromkeys(f"{len(s.test_pos)} test slices with infection, {len(s.test_neg)} "
                                                    "without" for s in splits))
                            if all(s.can_detect for s in splits) else "not run: the test set needs slices with and "
                            "without infection (pass --normals DIR)")}
    while True:  # one walk serially; with Ray, walks until nothing is left training elsewhere
        quality_rows = _walk(ctx, record)
        if not ctx.jobs.wait(ctx.progress):
            break
    if ctx.jobs.backend != "serial":
        ctx.add_time(f"units on {ctx.jobs.backend}", ctx.jobs.seconds)
    counts = [f"{sum(t)} positive and {len(t) - sum(t)} negative test patches from {len(s.test_slices)} test "
              "slices" for s in splits if s.test_patches is not None for t in [s.test_patches[1]]]
    if counts:
        record["patch_detection"] = f"{PATCH_DEFINITION}; " + "; ".join(dict.fromkeys(counts))
    record["results"] = ctx.results
    record["fidelity"] = ctx.fidelity
    record["coverage"] = ctx.coverage
    record["quality"] = quality_rows
    record["timings_s"] = ctx.timings
    record["versions"] = versions()
    record["wall_s"] = time.time() - t_start  # this invocation (work reused from earlier ones is not counted)
    record["table"] = table(ctx.results)
    record["paired"] = paired(ctx.results)
    write_json(out / "results.json", record)
    write_report(out, record)
    return record
