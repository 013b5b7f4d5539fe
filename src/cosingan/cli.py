"""The `cosingan` command: train, sample, demo."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import InputError


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a CoSinGAN on one slice and its label map (or resume a run)",
                       description="Train a conditional single-image GAN pyramid on one CT slice.")
    p.add_argument("--image", help="slice: PNG/JPG (8-bit grey), NIfTI (HU, lung window), or .npy")
    p.add_argument("--label", help="label map of the same size: 0 background, 1 lung, 2 infection")
    p.add_argument("--lung", help="lung mask instead of --label (non-zero = lung; left/right merge)")
    p.add_argument("--infection", help="infection mask, with --lung")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder")
    p.add_argument("--preset", default="cpu", help="tiny (tests), cpu (256 px, minutes on a CPU), "
                   "paper (512 px, GPU); default cpu")
    p.add_argument("--config", help="JSON file with overrides, e.g. {\"train\": {\"iters\": 500}}")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default cpu)")
    p.add_argument("--amp", choices=["none", "bf16"], default=None,
                   help="mixed precision: bf16 autocast for the networks (GPU); default none")
    p.add_argument("--no-two-stage", action="store_true", help="ablation: single-stage generator per scale")
    p.add_argument("--no-mixed-rec", action="store_true", help="ablation: SinGAN's plain reconstruction loss")
    p.add_argument("--no-hier-aug", action="store_true", help="ablation: no hierarchical data augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_train_many(sub) -> None:
    p = sub.add_parser("train-many", help="one generator per annotated slice, in parallel (local or Ray)",
                       description="Train one CoSinGAN per image/label pair; finished runs are skipped, "
                       "interrupted ones resume.")
    p.add_argument("--images", required=True, help="folder of slices")
    p.add_argument("--labels", required=True, help="folder of label maps with the same file names")
    p.add_argument("--out", required=True, help="folder of run folders (RUNS/NAME) and summary.csv")
    p.add_argument("--workers", type=int, default=2, help="models trained at once (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores / workers)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local process pool (default) or Ray (pip install 'cosingan[ray]')")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--config", help="JSON file with overrides")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--amp", choices=["none", "bf16"], default=None)
    p.add_argument("--no-two-stage", action="store_true")
    p.add_argument("--no-mixed-rec", action="store_true")
    p.add_argument("--no-hier-aug", action="store_true")
    p.add_argument("--quiet", action="store_true")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate slices from a trained run",
                       description="Generate N slices for the training label map or for each --label.")
    p.add_argument("run", help="run folder made by `cosingan train`")
    p.add_argument("--n", type=int, default=8, help="samples per label map (default 8)")
    p.add_argument("--out", required=True, help="output folder (images/, labels/, grid.png)")
    p.add_argument("--label", nargs="+", default=None, help="label maps to condition on (default: the "
                   "training map); any size, resized to the model's pixel scale")
    p.add_argument("--body", choices=["auto", "image", "label"], default="auto",
                   help="where the body outline comes from: the slice at ../images/NAME.* next to a "
                   "labels/ folder (image), an estimate from the lungs (label), or image when found (auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--quiet", action="store_true")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and sample on a built-in chest-CT phantom (no data needed)")
    p.add_argument("--out", default="demo_run", help="folder for the run and samples (default demo_run)")
    p.add_argument("--preset", default="demo", help="default demo (the cpu preset, half the iterations)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def _add_masks(sub) -> None:
    p = sub.add_parser("masks", help="make new plausible label maps from real ones (conditions)",
                       description="Deform and edit real label maps; lesions stay inside the lung.")
    p.add_argument("--data", nargs="+", required=True, help="slice folders (images/ + labels/) or label folders")
    p.add_argument("--out", required=True, help="output folder: labels/, bodies/, masks.csv")
    p.add_argument("--n", type=int, default=100, help="maps to make (default 100)")
    p.add_argument("--edits", default="deform,flip,move,scale,add,remove,merge",
                   help="comma-separated edits to draw from (default: all)")
    p.add_argument("--negatives", type=float, default=0.0, help="fraction of infection-free maps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def _add_synthesize(sub) -> None:
    p = sub.add_parser("synthesize", help="a synthetic image/label dataset from trained generators",
                       description="N paired samples spread over the runs, with a manifest to regenerate each.")
    p.add_argument("--runs", nargs="+", required=True, help="trained run folders")
    p.add_argument("--n", type=int, required=True, help="number of pairs")
    p.add_argument("--out", required=True, help="dataset folder (for nnunet: DatasetXXX_Name)")
    p.add_argument("--conditions", help="folder of label maps to condition on (slice folder, or the output "
                   "of `cosingan masks`); default: each run's own training map")
    p.add_argument("--edit", default="", help="comma-separated edits applied on the fly (e.g. deform,move,add)")
    p.add_argument("--negatives", type=float, default=0.0, help="fraction of infection-free conditions")
    p.add_argument("--format", default="png", choices=["png", "nnunet"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def _add_seg(sub) -> None:
    p = sub.add_parser("seg", help="lung + infection segmentation (MONAI 2-D U-Net): train, eval")
    ss = p.add_subparsers(dest="seg_command", required=True)
    t = ss.add_parser("train", help="train a U-Net on slice folders (real or synthetic)")
    t.add_argument("--data", nargs="+", action="extend", required=True, help="slice folders (images/ + labels/)")
    t.add_argument("--out", required=True, help="model folder (model.pt, train.json)")
    t.add_argument("--steps", type=int, default=None, help="optimisation steps (default 1200): the budget")
    t.add_argument("--epochs", type=int, default=None, help="alternatively, passes over the training slices")
    t.add_argument("--aug", default="strong", choices=["none", "standard", "strong"])
    t.add_argument("--size", type=int, default=128, help="input size (long side resized, padded square)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    e = ss.add_parser("eval", help="DSC and NSD (1 mm lung, 3 mm infection) on real slices")
    e.add_argument("--model", required=True)
    e.add_argument("--data", nargs="+", required=True)
    e.add_argument("--out", required=True, help="report folder: cases.csv, summary.json, cases.png")


def _add_cls(sub) -> None:
    p = sub.add_parser("cls", help="infection detection (MONAI classifier on body-cropped slices): train, eval")
    ss = p.add_subparsers(dest="cls_command", required=True)
    for name, helptext in (("train", "train on labelled slice folders (+ unlabelled negatives)"),
                           ("eval", "AUC, accuracy, sensitivity, specificity, ROC plot")):
        c = ss.add_parser(name, help=helptext)
        c.add_argument("--data", nargs="+", default=[], help="slice folders: target = infection in the label map")
        c.add_argument("--negatives", nargs="+", default=[], help="folders of infection-free images (no labels)")
        c.add_argument("--out", required=True)
        if name == "train":
            c.add_argument("--steps", type=int, default=600)
            c.add_argument("--size", type=int, default=128)
            c.add_argument("--aug", default="standard", choices=["standard", "strong"])
            c.add_argument("--seed", type=int, default=0)
            c.add_argument("--quiet", action="store_true")
        else:
            c.add_argument("--model", required=True)


def _add_experiment(sub) -> None:
    p = sub.add_parser("experiment", help="the few-shot experiment (synthetic vs k real vs all real)")
    ss = p.add_subparsers(dest="exp_command", required=True)
    f = ss.add_parser("few-shot", help="one command: GANs, conditions, synthetic data, U-Nets, report")
    f.add_argument("--data", required=True, help="slice folder: the training pool (and test, without --test)")
    f.add_argument("--test", help="slice folder of test slices (default: split --data, seeded)")
    f.add_argument("--normals", help="folder of infection-free images (e.g. MosMed CT-0) for the detection "
                   "arms: split in half, seeded, into training negatives and test negatives")
    f.add_argument("--k", nargs="+", type=int, default=[1, 2], help="numbers of real slices (default 1 2)")
    f.add_argument("--out", required=True, help="experiment folder (report.md, report.html, results.json)")
    f.add_argument("--preset", default="cpu", help="CoSinGAN preset (default cpu)")
    f.add_argument("--repeats", type=int, default=1)
    f.add_argument("--regimes", nargs="+", default=["kmaps", "allmaps"], choices=["kmaps", "allmaps"],
                   help="conditions for the synthetic arm: the k maps only, and/or all training-pool maps")
    f.add_argument("--n-synth", type=int, default=300, help="synthetic pairs per dataset")
    f.add_argument("--seg-steps", type=int, default=1200, help="U-Net budget for every arm")
    f.add_argument("--seg-size", type=int, default=128)
    f.add_argument("--cls-steps", type=int, default=600, help="classifier budget for every arm")
    f.add_argument("--ablation", action="store_true", help="also generators with each CoSinGAN part off "
                   "(two-stage, mixed reconstruction, hierarchical augmentation), on the first regime")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quiet", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cosingan", description=__doc__)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cosingan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_train_many(sub)
    _add_sample(sub)
    _add_demo(sub)
    _add_masks(sub)
    _add_synthesize(sub)
    _add_seg(sub)
    _add_experiment(sub)
    _add_cls(sub)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace):
    from .config import load_config_file, merge, preset

    cfg = preset(args.preset)
    if args.config:
        cfg = merge(cfg, load_config_file(args.config), args.config)
    over: dict = {"model": {}, "train": {}}
    if args.seed is not None:
        over["seed"] = args.seed
    if args.device is not None:
        over["device"] = args.device
    if args.amp is not None:
        over["train"]["amp"] = args.amp
    if args.no_two_stage:
        over["model"]["two_stage"] = False
    if args.no_mixed_rec:
        over["train"]["mixed_rec"] = False
    if args.no_hier_aug:
        over["train"]["hier_aug"] = False
    return merge(cfg, over, "command line")


def cmd_train(args: argparse.Namespace) -> int:
    from .io import load_slice
    from .train import train

    t0 = time.time()
    if args.resume:
        if args.image or args.label or args.out:
            raise InputError("--resume takes only the run folder (its config and data are stored in it)")
        trainer = train(args.resume, None, None, progress=not args.quiet)
        run = Path(args.resume)
    else:
        if not args.image or not args.out or not (args.label or args.lung):
            raise InputError("train needs --image, --label (or --lung [--infection]) and --out, or --resume RUN")
        cfg = build_config(args)
        sl = load_slice(args.image, label=args.label, lung=args.lung, infection=args.infection)
        run = Path(args.out)
        trainer = train(run, sl, cfg, progress=not args.quiet)
    print(f"trained {trainer.model.num_scales} scales {trainer.sizes[0]}..{trainer.sizes[-1]} in "
          f"{time.time() - t0:.0f} s; run folder: {run}")
    return 0


def cmd_train_many(args: argparse.Namespace) -> int:
    from .io import pair_folders
    from .many import train_many

    if args.address and args.backend != "ray":
        raise InputError("--address is for --backend ray")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    cfg = build_config(args)
    t0 = time.time()
    rows = train_many(pair_folders(args.images, args.labels), args.out, cfg, args.workers, args.backend,
                      args.address, args.threads, progress=not args.quiet)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}s}  {r['status']:28s} {r['seconds']:8.1f} s")
    failed = sum(r["status"].startswith("failed") for r in rows)
    print(f"{len(rows) - failed} of {len(rows)} runs ready in {args.out} ({time.time() - t0:.0f} s; "
          f"summary: {args.out}/summary.csv)")
    return 1 if failed else 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .sample import sample_run

    t0 = time.time()
    files = sample_run(args.run, args.n, args.out, args.label, args.seed, args.device, args.body, args.batch,
                       progress=not args.quiet)
    dt = time.time() - t0
    print(f"wrote {len(files)} samples to {args.out}/images (label maps in {args.out}/labels), "
          f"grid: {args.out}/grid.png ({len(files) / dt:.1f} images/s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .config import merge, preset
    from .io import Slice, save_png
    from .phantom import chest_phantom
    from .sample import sample_run
    from .train import CKPT, load_checkpoint, train

    out = Path(args.out)
    run = out / "run"
    t0 = time.time()
    data = out / "phantom"
    img, lab = chest_phantom(256, seed=0)
    save_png(img, data / "images" / "phantom_0.png")
    save_png(lab, data / "labels" / "phantom_0.png")
    img1, lab1 = chest_phantom(256, seed=1)  # another map the model never saw
    save_png(img1, data / "images" / "phantom_1.png")
    save_png(lab1, data / "labels" / "phantom_1.png")
    if (run / CKPT).exists():
        if not load_checkpoint(run).get("done"):
            train(run, None, None, progress=not args.quiet)
        print(f"demo: reusing the trained run in {run}")
    else:
        cfg = merge(preset(args.preset), {"device": args.device}, "demo")
        print(f"demo: training on a procedurally drawn chest-CT phantom ({data}/images/phantom_0.png), "
              f"preset {args.preset}")
        train(run, Slice(img, lab, None, "png"), cfg, progress=not args.quiet)
    samples = out / "samples"
    sample_run(run, 6, samples, [str(data / "labels" / "phantom_0.png"), str(data / "labels" / "phantom_1.png")],
               seed=0, device=args.device, progress=not args.quiet)
    print(f"demo done in {time.time() - t0:.0f} s")
    print(f"  training curves : {run}/curves.png")
    print(f"  per-stage grids : {run}/samples/")
    print(f"  samples         : {samples}/images  (label maps in {samples}/labels)")
    print(f"  grid            : {samples}/grid.png  (row 1: training map, row 2: an unseen map)")
    return 0


def _edit_list(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def _rejections(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def cmd_masks(args: argparse.Namespace) -> int:
    from .dataset import sources_from_folder, write_masks

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    sources = [s for d in args.data for s in sources_from_folder(d)]
    t0 = time.time()
    rep = write_masks(sources, Path(args.out), args.n, _edit_list(args.edits), args.negatives, args.seed,
                      progress=not args.quiet)
    print(f"made {rep['made']} of {rep['asked']} maps from {len(sources)} sources in {time.time() - t0:.0f} s "
          f"-> {args.out}/labels; rejected attempts: {_rejections(rep['rejected'])}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from .dataset import Synthesizer, synthesize

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    t0 = time.time()
    syn = Synthesizer(args.runs, args.conditions, _edit_list(args.edit), args.negatives, args.seed, args.device)
    rep = synthesize(syn, args.n, args.out, args.format, progress=not args.quiet)
    print(f"{rep['made']} new pairs, {rep['kept']} kept from before, {rep['total']} in {args.out} "
          f"({time.time() - t0:.0f} s); rejected edit attempts: {_rejections(rep['rejected'])}")
    return 0


def cmd_seg(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import seg

    if args.seg_command == "train":
        slices = seg.load_folders(args.data)
        cfg = seg.SegConfig(size=args.size, aug=args.aug, batch=args.batch, seed=args.seed)
        if args.epochs is not None and args.steps is not None:
            raise InputError("give --steps or --epochs, not both")
        if args.epochs is not None:
            cfg = replace(cfg, steps=max(1, args.epochs * -(-len(slices) // args.batch)))
        elif args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        if cfg.steps < 1:
            raise InputError("--steps must be at least 1")
        meta = seg.train_seg(slices, cfg, args.out, progress=not args.quiet)
        print(f"trained on {meta['train_slices']} slices ({meta['val_slices']} held out for validation), "
              f"{cfg.steps} steps in {meta['seconds']:.0f} s; best at step {meta['best_step']} -> {args.out}/model.pt")
        return 0
    net, cfg = seg.load_seg(args.model)
    summary = seg.evaluate(net, cfg, seg.load_folders(args.data), args.out)
    m = summary["mean"]
    print(f"{summary['n']} slices: lung DSC {m['lung_dsc']:.3f} NSD {m['lung_nsd']:.3f}, infection DSC "
          f"{m['infection_dsc']:.3f} NSD {m['infection_nsd']:.3f}"
          + ("" if summary["spacing_known"] else " (spacing unknown: 1 mm per pixel)") + f" -> {args.out}")
    return 0


def cmd_cls(args: argparse.Namespace) -> int:
    from . import cls

    images, targets = cls.load_labelled(args.data) if args.data else ([], [])
    negatives = cls.load_images(args.negatives) if args.negatives else []
    if not images and not negatives:
        raise InputError("give --data and/or --negatives")
    if args.cls_command == "train":
        if args.steps < 1:
            raise InputError("--steps must be at least 1")
        cfg = cls.ClsConfig(size=args.size, steps=args.steps, aug=args.aug, seed=args.seed)
        meta = cls.train_cls(images + negatives, targets + [0] * len(negatives), cfg, args.out, not args.quiet)
        print(f"trained on {meta['n']} slices ({meta['positives']} with infection) in {meta['seconds']:.0f} s "
              f"-> {args.out}/model.pt")
        return 0
    net, cfg = cls.load_cls(args.model)
    pos = [im for im, t in zip(images, targets) if t]
    neg = [im for im, t in zip(images, targets) if not t] + negatives
    m = cls.evaluate_cls(net, cfg, pos, neg, args.out)
    print(f"{m['positives']} positives, {m['negatives']} negatives: AUC {m['auc']:.3f}, accuracy {m['accuracy']:.3f}, "
          f"sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f} -> {args.out}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .config import preset
    from .experiment import ARM_NAMES, ExperimentConfig, run_few_shot

    preset(args.preset)  # a clear error before any work
    if min(args.k) < 1 or args.repeats < 1 or args.n_synth < 1 or args.seg_steps < 1:
        raise InputError("--k, --repeats, --n-synth and --seg-steps must be at least 1")
    cfg = ExperimentConfig(ks=tuple(args.k), repeats=args.repeats, preset=args.preset,
                           regimes=tuple(args.regimes), n_synth=args.n_synth, seg_steps=args.seg_steps,
                           seg_size=args.seg_size, cls_steps=args.cls_steps, seed=args.seed,
                           ablation=args.ablation)
    t0 = time.time()
    rec = run_few_shot(args.data, args.out, cfg, args.test, normals=args.normals, progress=not args.quiet,
                       log=(lambda *a: None) if args.quiet else print)
    for r in rec["table"]:
        print(f"k={r['k'] or 'all':>3} {ARM_NAMES[r['arm']]:26s} {r['regime'] or '':22s} lung DSC {r['lung_dsc']:.3f} "
              f"NSD {r['lung_nsd']:.3f} | infection DSC {r['infection_dsc']:.3f} NSD {r['infection_nsd']:.3f}"
              + (f" | detection AUC {r['auc']:.3f}" if "auc" in r else ""))
    print(f"report: {args.out}/report.md, {args.out}/report.html ({time.time() - t0:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        commands = {"train": cmd_train, "train-many": cmd_train_many, "sample": cmd_sample, "demo": cmd_demo,
                    "masks": cmd_masks,
                    "synthesize": cmd_synthesize, "seg": cmd_seg, "experiment": cmd_experiment,
                    "cls": cmd_cls}
        return commands[args.command](args)
    except InputError as e:
        print(f"cosingan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cosingan: interrupted (a run folder resumes with `cosingan train --resume RUN`)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
