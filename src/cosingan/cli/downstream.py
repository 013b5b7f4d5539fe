"""Commands of the downstream layer: seg (train, eval) and cls (train, eval)."""

from __future__ import annotations

import argparse

from ..data.outputs import output
from ..devices import DEVICE_HELP, resolve_device
from ..errors import InputError


def add_seg(sub) -> None:
    from ..downstream.seg import SCHEDULES, SegConfig

    p = sub.add_parser("seg", help="lung + infection segmentation (MONAI 2-D U-Net): train, eval")
    ss = p.add_subparsers(dest="seg_command", required=True)
    t = ss.add_parser("train", help="train a U-Net on slice folders (real or synthetic)")
    t.add_argument("--data", nargs="+", action="extend", required=True, help="slice folders (images/ + labels/)")
    t.add_argument("--out", required=True, help="model folder (model.pt, train.json)")
    t.add_argument("--steps", type=int, default=None, help="optimisation steps (default 1200): the budget")
    t.add_argument("--epochs", type=int, default=None, help="alternatively, passes over the training slices")
    t.add_argument("--aug", default="strong", choices=["none", "standard", "strong"])
    t.add_argument("--schedule", default=SegConfig.schedule, choices=list(SCHEDULES),
                   help="learning rate over the steps: poly (decays to 0, as nnU-Net's) or constant")
    t.add_argument("--size", type=int, default=128, help="input size (long side resized, padded square)")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help=DEVICE_HELP)
    t.add_argument("--quiet", action="store_true")
    e = ss.add_parser("eval", help="DSC and NSD (1 mm lung, 3 mm infection) on real slices")
    e.add_argument("--model", required=True)
    e.add_argument("--data", nargs="+", required=True)
    e.add_argument("--out", required=True, help="report folder: cases.csv, summary.json, cases.png")
    e.add_argument("--spacing", type=float, default=1.0, help="mm per original pixel for slices whose files "
                   "carry no spacing (PNG/JPG; default 1)")
    e.add_argument("--device", default="cpu", help=DEVICE_HELP)


def cmd_seg(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from ..data.readers import content_hash
    from ..downstream import seg
    from ..downstream.nets import reuse_or_claim

    resolve_device(args.device)  # a clear error before any work
    if args.seg_command == "train":
        slices = seg.load_folders(args.data)
        cfg = seg.SegConfig(size=args.size, aug=args.aug, batch=args.batch, seed=args.seed, schedule=args.schedule)
        if args.epochs is not None and args.steps is not None:
            raise InputError("give --steps or --epochs, not both")
        if args.epochs is not None:
            cfg = replace(cfg, steps=max(1, args.epochs * -(-len(slices) // args.batch)))
        elif args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        seg.check_config(cfg)  # before the output folder is made
        data = content_hash(*(a for s in slices for a in (s.image, s.label, np.asarray(s.spacing or (0, 0)))))
        with output(args.out, "seg train", tuple(args.data)) as out:
            if reuse_or_claim(out, cfg, data):
                print(f"{args.out}: trained before with these settings and slices; nothing to do")
                return 0
            meta = seg.train_seg(slices, cfg, out, progress=not args.quiet, device=args.device)
        print(f"trained on {meta['train_slices']} slices ({meta['val_slices']} held out for validation), "
              f"{cfg.steps} steps in {meta['seconds']:.0f} s; best at step {meta['best_step']} -> {args.out}/model.pt")
        return 0
    net, cfg = seg.load_seg(args.model, args.device)
    from ..data.layout import volume_root_kind
    from ..data.volumes import read_volumes

    roots = [d for d in args.data if volume_root_kind(d)]
    if roots and len(roots) != len(args.data):
        raise InputError("--data: give volume roots or slice folders, not both (volumes are scored per volume)")
    volumes = [v for d in roots for v in read_volumes(d)]
    slices = [] if volumes else seg.load_folders(args.data)
    with output(args.out, "seg eval", (args.model, *args.data)) as out:
        summary = (seg.evaluate_volumes(net, cfg, volumes, out) if volumes
                   else seg.evaluate(net, cfg, slices, out, args.spacing))
    m, ex = summary["mean"], summary["excluded"]
    left_out = ", ".join(f"{r} {n}" for r, n in ex.items() if n)
    print(f"{summary['n']} {'volumes (3-D)' if volumes else 'slices'}: lung DSC {m['lung_dsc']:.3f} NSD {m['lung_nsd']:.3f}, infection DSC "
          f"{m['infection_dsc']:.3f} NSD {m['infection_nsd']:.3f}"
          + "".join(f", {side} lung DSC {m[f'{side}_lung_dsc']:.3f} NSD {m[f'{side}_lung_nsd']:.3f}"
                    for side in ("left", "right") if f"{side}_lung_dsc" in m)
          + ("" if summary["spacing_known"] else f" (spacing unknown: {args.spacing:g} mm per pixel)")
          + (f"; left out (region absent from truth and prediction): {left_out}" if left_out else "")
          + f" -> {args.out}")
    return 0


def add_cls(sub) -> None:
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
        c.add_argument("--device", default="cpu", help=DEVICE_HELP)


def cmd_cls(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.readers import content_hash
    from ..downstream import cls
    from ..downstream.nets import reuse_or_claim

    resolve_device(args.device)  # a clear error before any work
    images, targets = cls.load_labelled(args.data) if args.data else ([], [])
    negatives = cls.load_images(args.negatives) if args.negatives else []
    if not images and not negatives:
        raise InputError("give --data and/or --negatives")
    if args.cls_command == "train":
        cfg = cls.ClsConfig(size=args.size, steps=args.steps, aug=args.aug, seed=args.seed)
        cls.check_config(cfg)
        cls.check_targets(targets + [0] * len(negatives))  # before the output folder is made
        overlap = cls.shared_images(images, negatives)
        if overlap:
            raise InputError(f"--negatives: {overlap} image(s) are also in --data; the same slice cannot be both "
                             "a positive and a negative")
        data = content_hash(*images, *negatives, np.asarray(targets + [0] * len(negatives)))
        with output(args.out, "cls train", (*args.data, *args.negatives)) as out:
            if reuse_or_claim(out, cfg, data):
                print(f"{args.out}: trained before with these settings and images; nothing to do")
                return 0
            meta = cls.train_cls(images + negatives, targets + [0] * len(negatives), cfg, out, not args.quiet,
                                 args.device)
        print(f"trained on {meta['n']} slices ({meta['positives']} with infection) in {meta['seconds']:.0f} s "
              f"-> {args.out}/model.pt")
        return 0
    net, cfg = cls.load_cls(args.model, args.device)
    pos = [im for im, t in zip(images, targets) if t]
    neg = [im for im, t in zip(images, targets) if not t] + negatives
    with output(args.out, "cls eval", (args.model, *args.data, *args.negatives)) as out:
        m = cls.evaluate_cls(net, cfg, pos, neg, out)
    print(f"{m['positives']} positives, {m['negatives']} negatives: AUC {m['auc']:.3f}, accuracy {m['accuracy']:.3f}, "
          f"sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f} -> {args.out}")
    return 0


COMMANDS = {"seg": (add_seg, cmd_seg), "cls": (add_cls, cmd_cls)}
