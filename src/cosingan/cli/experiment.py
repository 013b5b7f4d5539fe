"""Command of the experiment layer: experiment few-shot."""

from __future__ import annotations

import argparse
import time

from .flags import add_flags, from_args


def add_experiment(sub) -> None:
    from ..experiment.config import ExperimentConfig
    from ..experiment.jobs import Jobs

    p = sub.add_parser("experiment", help="the few-shot experiment (synthetic vs k real vs all real)")
    ss = p.add_subparsers(dest="exp_command", required=True)
    f = ss.add_parser("few-shot", help="one command: GANs, conditions, synthetic data, U-Nets, report")
    f.add_argument("--data", required=True, help="slice folder, or a COVID-19-CT-Seg / MosMedData root: the "
                   "training pool (and test, without --test)")
    f.add_argument("--test", help="slice folder (or volume root) of test slices, the same for every repeat "
                   "(default: split --data anew for every repeat, seeded; see --split)")
    f.add_argument("--normals", help="folder of infection-free images (e.g. MosMed CT-0) for the detection "
                   "arms: split in half, seeded (with the data's split), into training negatives and test negatives")
    f.add_argument("--unlabelled", help="folder of unannotated slices showing the whole body (e.g. normal chest CT): "
                   "the lungs of the unlabelled regime, found automatically")
    f.add_argument("--out", required=True, help="experiment folder (report.md, report.html, results.json)")
    add_flags(f, ExperimentConfig)  # every setting of the experiment, declared once in its config
    add_flags(f, Jobs)  # where its units train
    f.add_argument("--quiet", action="store_true")


def cmd_experiment(args: argparse.Namespace) -> int:
    from ..experiment.arms import ARMS
    from ..experiment.config import ExperimentConfig
    from ..experiment.jobs import Jobs
    from ..experiment.runner import run_few_shot

    cfg = from_args(ExperimentConfig, args)  # checked where it is made, before any work
    jobs = from_args(Jobs, args, gpus=1.0 if cfg.device.startswith("cuda") else 0.0)
    t0 = time.time()
    rec = run_few_shot(args.data, args.out, cfg, args.test, normals=args.normals, progress=not args.quiet,
                       log=(lambda *a: None) if args.quiet else print, unlabelled=args.unlabelled, jobs=jobs)
    for r in rec["table"]:
        print(f"k={r['k'] or 'all':>3} {ARMS[r['arm']].title:26s} {r['regime'] or '':22s} lung DSC {r['lung_dsc']:.3f} "
              f"NSD {r['lung_nsd']:.3f} | infection DSC {r['infection_dsc']:.3f} NSD {r['infection_nsd']:.3f}"
              + (f" | detection AUC {r['auc']:.3f}" if "auc" in r else "")
              + (f" | patch AUC {r['patch_auc']:.3f}" if "patch_auc" in r else ""))
    print(f"report: {args.out}/report.md, {args.out}/report.html ({time.time() - t0:.0f} s)")
    return 0


COMMANDS = {"experiment": (add_experiment, cmd_experiment)}
