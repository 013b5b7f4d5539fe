"""The few-shot experiment: synthetic-from-k-slices vs k real slices + strong augmentation vs all real.

For each k and repeat: choose k training slices from the training pool (seeded, recorded), train one
CoSinGAN per slice, make conditions, synthesize a dataset, then train the same U-Net with the same
budget on (A) synthetic, (B) the k real slices with strong augmentation, (C) all real training slices,
and evaluate all on the test slices. Everything lands in one folder and every step is resumable:
finished generators, datasets, models and evaluations are reused.

Condition regimes for (A): `kmaps` (only the k slices' own maps, deformed and edited) and `allmaps`
(every training-pool map, with the k images' generators).

Detection (with `normals`, a folder of infection-free images split in half into training and test
negatives): the same classifier and budget per arm, (A) synthetic positives and synthetic
infection-free negatives only, (B) the k real slices + k real normals with strong augmentation,
(C) all real training slices + all training normals; tested on the test slices + the test normals.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_path, list_slice_folder


@dataclass(frozen=True)
class ExperimentConfig:
    ks: tuple[int, ...] = (1, 2)
    repeats: int = 1
    preset: str = "cpu"
    regimes: tuple[str, ...] = ("kmaps", "allmaps")
    n_synth: int = 300
    seg_steps: int = 1200
    seg_size: int = 128
    cls_steps: int = 600
    test_fraction: float = 0.5  # used only without --test
    negatives: float = 0.1
    edits: tuple[str, ...] = ("deform", "flip", "move", "scale", "add", "remove", "merge")
    seed: int = 0
    ablation: bool = False  # also train generators with each CoSinGAN part off (first regime only)


# the three CoSinGAN parts, each switched off in turn by the ablation
ABLATIONS = {"two-stage": {"model": {"two_stage": False}}, "mixed-rec": {"train": {"mixed_rec": False}},
             "hier-aug": {"train": {"hier_aug": False}}}


def _link_folder(pairs: list[tuple[Path, Path]], out: Path) -> Path:
    """A slice folder of symlinks (no copies of the data)."""
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for ip, lp in pairs:
        for src, sub in ((ip, "images"), (lp, "labels")):
            dst = out / sub / src.name
            if not dst.exists():
                dst.symlink_to(src.resolve())
    return out


def split(data: Path, test: Path | None, cfg: ExperimentConfig) -> tuple[list, list]:
    """(train pool, test) pairs. Without a test folder the data is split (seeded)."""
    pool = list_slice_folder(data)
    if test is not None:
        tests = list_slice_folder(test)
        overlap = {p[0].resolve() for p in pool} & {p[0].resolve() for p in tests}
        if overlap:
            raise InputError(f"{test}: {len(overlap)} test slice(s) are also in --data {data}")
        return pool, tests
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pool))
    n_test = max(1, int(round(len(pool) * cfg.test_fraction)))
    if len(pool) - n_test < max(cfg.ks):
        raise InputError(f"{data}: {len(pool)} slices are too few for k={max(cfg.ks)} plus a test split")
    return [pool[i] for i in sorted(order[n_test:])], [pool[i] for i in sorted(order[:n_test])]


def split_normals(normals: Path, seed: int) -> tuple[list[Path], list[Path]]:
    """Infection-free images: (training half, test half), seeded."""
    from .io import SLICE_EXT, _suffix

    d = normals / "images" if (normals / "images").is_dir() else normals
    if not d.is_dir():
        raise InputError(f"{normals}: not a folder")
    files = sorted(p for p in d.iterdir() if _suffix(p) in SLICE_EXT)
    if len(files) < 2:
        raise InputError(f"{normals}: needs at least 2 images to split into training and test negatives")
    order = np.random.default_rng([seed, 7]).permutation(len(files))
    half = len(files) // 2
    return [files[i] for i in sorted(order[half:])], [files[i] for i in sorted(order[:half])]


def run_few_shot(data: str | Path, out: str | Path, cfg: ExperimentConfig, test: str | Path | None = None,
                 normals: str | Path | None = None, progress: bool = True, log=print) -> dict:
    from . import cls as clsmod
    from . import seg
    from .config import merge, preset
    from .dataset import Synthesizer, sources_from_folder, synthesize, write_masks
    from .io import load_slice, read_image
    from .train import CKPT, load_checkpoint, train

    t_start = time.time()
    out = Path(out)
    pool, tests = split(Path(data), Path(test) if test else None, cfg)  # validate before writing anything
    normal_pool, normal_test = split_normals(Path(normals), cfg.seed) if normals else ([], [])
    out.mkdir(parents=True, exist_ok=True)
    test_dir = _link_folder(tests, out / "data" / "test")
    pool_dir = _link_folder(pool, out / "data" / "pool")
    timings: dict[str, float] = {}
    results: list[dict] = []
    fidelity: list[dict] = []
    record = {"config": asdict(cfg), "data": str(data), "test": str(test) if test else None,
              "pool": [p[0].name for p in pool], "test_slices": [p[0].name for p in tests], "runs": []}

    def timed(key: str, fn):
        t = time.time()
        r = fn()
        timings[key] = timings.get(key, 0.0) + time.time() - t
        return r

    record["normals"] = {"folder": str(normals) if normals else None, "pool": [p.name for p in normal_pool],
                         "test": [p.name for p in normal_test]}
    test_slices = seg.load_folders([test_dir])  # read once: every arm is scored on them
    test_pos = [s.image for s in test_slices if (s.label == 2).any()]
    test_neg = [s.image for s in test_slices if not (s.label == 2).any()]
    test_neg += [read_image(p)[0] for p in normal_test]
    record["detection"] = (f"{len(test_pos)} test slices with infection, {len(test_neg)} without"
                           if test_pos and test_neg else
                           "not run: the test set needs slices with and without infection (pass --normals DIR)")

    def cls_arm(name: str, labelled: Path, negatives: list[Path], aug: str, seed: int) -> dict:
        """Detection scores of one arm, or {} when the test set cannot measure detection."""
        if not (test_pos and test_neg):
            return {}
        model_dir = out / "cls" / name
        if not (model_dir / "model.pt").exists() or not (model_dir / "train.json").exists():
            images, targets = clsmod.load_labelled([labelled])
            images += [read_image(p)[0] for p in negatives]
            targets += [0] * len(negatives)
            if len(set(targets)) < 2:
                log(f"{name}: no infection-free training slices, detection skipped")
                return {}
            ccfg = clsmod.ClsConfig(steps=cfg.cls_steps, aug=aug, seed=seed)
            timed("cls_train", lambda: clsmod.train_cls(images, targets, ccfg, model_dir, progress))
        net, ccfg = clsmod.load_cls(model_dir)
        m = timed("cls_eval", lambda: clsmod.evaluate_cls(net, ccfg, test_pos, test_neg, out / "eval_cls" / name))
        return {k: m[k] for k in DETECTION}

    def seg_arm(name: str, folder: Path, aug: str, seed: int) -> dict:
        model_dir = out / "seg" / name
        if not (model_dir / "model.pt").exists() or not (model_dir / "train.json").exists():
            scfg = seg.SegConfig(size=cfg.seg_size, steps=cfg.seg_steps, aug=aug, seed=seed)
            timed("seg_train", lambda: seg.train_seg(seg.load_folders([folder]), scfg, model_dir, progress))
        net, scfg = seg.load_seg(model_dir)
        summary = timed("seg_eval", lambda: seg.evaluate(net, scfg, test_slices, out / "eval" / name))
        return summary["mean"]

    for r in range(cfg.repeats):
        rseed = cfg.seed * 1000 + r
        log(f"repeat {r + 1}/{cfg.repeats}: arm C (all {len(pool)} real training slices)")
        c_scores = seg_arm(f"r{r}_C_allreal", pool_dir, "standard", rseed)
        c_det = cls_arm(f"r{r}_C_allreal", pool_dir, normal_pool, "standard", rseed)
        results.append({"repeat": r, "k": None, "arm": "C", "regime": "", **c_scores, **c_det})
        for k in cfg.ks:
            rng = np.random.default_rng([cfg.seed, r, k])
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
            names = [p[0].name for p in chosen]
            record["runs"].append({"repeat": r, "k": k, "slices": names})
            assert not {p[0].name for p in chosen} & {p[0].name for p in tests}  # never a test slice
            kdir = _link_folder(chosen, out / "data" / f"r{r}_k{k}")
            log(f"repeat {r + 1}, k={k}: {', '.join(names)}")
            def gans(variant: str, overrides: dict) -> list[str]:
                """One generator per chosen slice (reused when already trained)."""
                paths = []
                for ip, lp in chosen:
                    run = out / "gan" / f"{ip.stem}_s{rseed}{variant}"
                    if (run / CKPT).exists():
                        if not load_checkpoint(run).get("done"):
                            timed("gan_train", lambda: train(run, None, None, progress=progress))
                    else:
                        c = merge(replace(preset(cfg.preset), seed=rseed), overrides, "ablation")
                        sl = load_slice(ip, lp)
                        timed("gan_train", lambda: train(run, sl, c, progress=progress))
                    paths.append(str(run))
                return paths

            runs = gans("", {})
            b_scores = seg_arm(f"r{r}_k{k}_B_real_strongaug", kdir, "strong", rseed)
            b_normals = [normal_pool[i] for i in sorted(rng.choice(len(normal_pool), size=min(k, len(normal_pool)),
                                                                   replace=False))] if normal_pool else []
            b_det = cls_arm(f"r{r}_k{k}_B_real_strongaug", kdir, b_normals, "strong", rseed)
            results.append({"repeat": r, "k": k, "arm": "B", "regime": "", **b_scores, **b_det})
            for regime in cfg.regimes:
                cond_src = kdir if regime == "kmaps" else pool_dir
                masks = out / "conditions" / f"r{r}_k{k}_{regime}"
                if not (masks / "masks.csv").exists():
                    timed("masks", lambda: write_masks(sources_from_folder(cond_src), masks, cfg.n_synth,
                                                       list(cfg.edits), cfg.negatives, rseed, progress))
                syn_dir = out / "synthetic" / f"r{r}_k{k}_{regime}"
                syn = Synthesizer(runs, str(masks), [], 0.0, rseed)
                timed("synthesize", lambda: synthesize(syn, cfg.n_synth, syn_dir, "png", progress))
                a_scores = seg_arm(f"r{r}_k{k}_A_synthetic_{regime}", syn_dir, "standard", rseed)
                a_det = cls_arm(f"r{r}_k{k}_A_synthetic_{regime}", syn_dir, [], "standard", rseed)
                results.append({"repeat": r, "k": k, "arm": "A", "regime": regime, **a_scores, **a_det})
                # condition fidelity: the all-real U-Net (arm C) should recover the maps it is shown
                net_c, cfg_c = seg.load_seg(out / "seg" / f"r{r}_C_allreal")
                fid = timed("seg_eval", lambda: seg.evaluate(net_c, cfg_c, seg.load_folders([syn_dir])))
                fidelity.append({"repeat": r, "k": k, "regime": regime,
                                 **{m: fid["mean"][m] for m in ("lung_dsc", "infection_dsc")}})
                if not cfg.ablation or regime != cfg.regimes[0]:
                    continue
                # ablation: the same conditions and budget, generators with one CoSinGAN part off
                for part, over in ABLATIONS.items():
                    log(f"repeat {r + 1}, k={k}: ablation without {part}")
                    syn_dir = out / "synthetic" / f"r{r}_k{k}_{regime}_no-{part}"
                    syn = Synthesizer(gans(f"_no-{part}", over), str(masks), [], 0.0, rseed)
                    timed("synthesize", lambda: synthesize(syn, cfg.n_synth, syn_dir, "png", progress))
                    scores = seg_arm(f"r{r}_k{k}_A_synthetic_{regime}_no-{part}", syn_dir, "standard", rseed)
                    results.append({"repeat": r, "k": k, "arm": "A", "regime": f"{regime}, no {part}", **scores})
    record["results"] = results
    record["fidelity"] = fidelity
    record["timings_s"] = timings
    record["wall_s"] = time.time() - t_start  # this invocation (work reused from earlier ones is not counted)
    record["table"] = table(results)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    write_report(out, record)
    return record


ARM_NAMES = {"A": "A: synthetic (CoSinGAN)", "B": "B: k real + strong aug", "C": "C: all real"}
METRICS = ("lung_dsc", "lung_nsd", "infection_dsc", "infection_nsd")
DETECTION = ("auc", "accuracy", "sensitivity", "specificity")
COLUMNS = {"lung_dsc": "lung DSC", "lung_nsd": "lung NSD", "infection_dsc": "infection DSC",
           "infection_nsd": "infection NSD", "auc": "detection AUC", "accuracy": "accuracy",
           "sensitivity": "sensitivity", "specificity": "specificity"}


def table(results: list[dict]) -> list[dict]:
    """Mean and std over repeats per (k, arm, regime)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["k"] if r["k"] is not None else 0, r["arm"], r["regime"]), []).append(r)
    rows = []
    for (k, arm, regime), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        row = {"k": k or None, "arm": arm, "regime": regime, "n": len(rs)}
        for m in METRICS + DETECTION:
            if not all(m in x for x in rs):
                continue
            v = [x[m] for x in rs]
            row[m] = float(np.mean(v))
            row[m + "_std"] = float(np.std(v))
        rows.append(row)
    return rows


def write_report(out: Path, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["table"]
    cols = [m for m in METRICS + DETECTION if any(m in r for r in rows)]

    def cells(r: dict) -> list[str]:
        def fmt(m: str) -> str:
            if m not in r:
                return "-"
            return f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if r["n"] > 1 else f"{r[m]:.3f}"

        return [str(r["k"] or "all"), ARM_NAMES[r["arm"]], r["regime"] or "-"] + [fmt(m) for m in cols]

    heads = ["k", "arm", "conditions"] + [COLUMNS[m] for m in cols]
    lines = ["# Few-shot experiment", "",
             f"Training pool: {len(record['pool'])} slices; test: {len(record['test_slices'])} slices; "
             f"repeats: {record['config']['repeats']}; preset: {record['config']['preset']}; "
             f"U-Net budget: {record['config']['seg_steps']} steps at {record['config']['seg_size']} px; "
             f"classifier budget: {record['config']['cls_steps']} steps.", "",
             f"Detection: {record.get('detection', 'not run')}." + (
                 " Caution: the test negatives come from the --normals folder; an arm trained with real "
                 "normals from that same folder can learn to tell the two sources apart (scanner, "
                 "windowing, compression) instead of infection, so read B's and C's detection scores "
                 "as upper bounds; arm A never sees that folder." if record.get("normals", {}).get("folder")
                 else ""), "",
             "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    if record.get("fidelity"):
        lines += ["", "Condition fidelity: DSC of the all-real U-Net (arm C) on synthetic images against "
                  "the label maps they were generated from.", "",
                  "| repeat | k | conditions | lung DSC | infection DSC |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {f['repeat']} | {f['k']} | {f['regime']} | {f['lung_dsc']:.3f} | {f['infection_dsc']:.3f} |"
                  for f in record["fidelity"]]
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in record["timings_s"].items())
              + (f"; wall time of this invocation {record['wall_s']:.0f}" if "wall_s" in record else ""), "",
              "Chosen slices: " + "; ".join(f"repeat {x['repeat']} k={x['k']}: {', '.join(x['slices'])}"
                                            for x in record["runs"]), "",
              "![infection DSC](infection_dsc.png)", ""]
    grids = sorted((out / "synthetic").glob("*/grid.png")) + sorted((out / "eval_cls").glob("*/roc.png"))
    for g in grids:
        lines.append(f"![{g.parent.name}]({g.relative_to(out)})")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"{r['arm']}{'' if not r['regime'] else '/' + r['regime']} k={r['k'] or 'all'}" for r in rows]
    ax.bar(range(len(rows)), [r["infection_dsc"] for r in rows], yerr=[r["infection_dsc_std"] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("infection DSC (test)")
    fig.tight_layout()
    with atomic_path(out / "infection_dsc.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    import html as _html

    head = "".join(f"<th>{h}</th>" for h in heads)
    trs = "".join("<tr>" + "".join(f"<td>{_html.escape(c)}</td>" for c in cells(r)) + "</tr>" for r in rows)
    text = [line for line in lines[2:] if line and not line.startswith("|") and not line.startswith("![")]
    imgs = ["infection_dsc.png"] + [str(g.relative_to(out)) for g in grids]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>cosingan few-shot</title></head><body>"
            "<h1>Few-shot experiment</h1>" + "".join(f"<p>{_html.escape(t)}</p>" for t in text)
            + f"<table border=1 cellpadding=4><tr>{head}</tr>{trs}</table>"
            + ("<h2>Condition fidelity</h2><table border=1 cellpadding=4><tr><th>repeat</th><th>k</th>"
               "<th>conditions</th><th>lung DSC</th><th>infection DSC</th></tr>"
               + "".join(f"<tr><td>{f['repeat']}</td><td>{f['k']}</td><td>{f['regime']}</td>"
                         f"<td>{f['lung_dsc']:.3f}</td><td>{f['infection_dsc']:.3f}</td></tr>"
                         for f in record.get("fidelity", [])) + "</table>" if record.get("fidelity") else "")
            + "".join(f"<p><img src='{_html.escape(i)}' style='max-width:100%'></p>" for i in imgs)
            + "</body></html>\n")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page)
