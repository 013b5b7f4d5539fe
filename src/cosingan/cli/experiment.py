"""Command of the experiment layer: experiment few-shot."""

from __future__ import annotations

import argparse
import time

from ..devices import DEVICE_HELP, resolve_device
from ..errors import InputError


def add_experiment(sub) -> None:
    from ..downstream.seg import MIN_SLICES_TO_HOLD_OUT, SCHEDULES
    from ..experiment.config import AUGS, CHECKPOINTS, REGIMES, SELECTIONS, SPLITS, ExperimentConfig
    from ..experiment.jobs import BACKENDS
    from ..synth.anatomy import ANATOMY

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
    f.add_argument("--k", nargs="+", type=int, default=list(ExperimentConfig.ks),
                   help=f"numbers of real slices (default {' '.join(map(str, ExperimentConfig.ks))})")
    f.add_argument("--out", required=True, help="experiment folder (report.md, report.html, results.json)")
    f.add_argument("--preset", default=ExperimentConfig.preset, help="CoSinGAN preset (default %(default)s)")
    f.add_argument("--gan-config", help="JSON file of overrides of the preset for every generator, as for "
                   "`cosingan train --config` (e.g. {\"train\": {\"iters\": 100}})")
    f.add_argument("--repeats", type=int, default=ExperimentConfig.repeats)
    f.add_argument("--regimes", nargs="+", default=list(ExperimentConfig.regimes), choices=list(REGIMES),
                   help="conditions for the synthetic arm: " + "; ".join(f"{k}: {v}" for k, v in REGIMES.items())
                   + f" (default {' '.join(ExperimentConfig.regimes)})")
    f.add_argument("--mixed", action="store_true", help="also arm M: the synthetic set of the first regime plus the k "
                   "real slices (a quarter of the pairs), with B's strong augmentation and the same budget")
    f.add_argument("--shared-generator", action="store_true", help="one few-shot CoSinGAN trained on all k "
                   "slices (one pyramid shared by the k pairs) instead of one per slice")
    f.add_argument("--synth-aug", choices=list(AUGS), default=ExperimentConfig.synth_aug,
                   help="augmentation of the networks trained on synthetic data (arm A): strong (as every arm) "
                   "or standard (lighter: flips and small affine moves); default %(default)s")
    f.add_argument("--real-aug", choices=list(AUGS), default=ExperimentConfig.real_aug,
                   help="augmentation of the networks trained on all real slices (arm C): strong (as every arm) "
                   "or standard; default %(default)s")
    f.add_argument("--select", choices=list(SELECTIONS), default=ExperimentConfig.select,
                   help="how the k slices are drawn: random, or area: at random among slices with large lungs "
                   "and 5-40%% of the lung infected, as a person would pick them; default %(default)s")
    f.add_argument("--n-synth", type=int, default=ExperimentConfig.n_synth,
                   help="synthetic pairs per dataset (default %(default)s)")
    f.add_argument("--anatomy", choices=list(ANATOMY), default=ExperimentConfig.anatomy,
                   help="the synthetic sets' body outside the lungs: generated (the generators' own) or transplant "
                   "(each generator's training slice's anatomy, warped onto the condition); default %(default)s")
    f.add_argument("--consolidation", type=float, default=ExperimentConfig.consolidation,
                   help="fraction of synthetic slices with part of their infection rendered as dense "
                   "consolidation (a prior on lesion density; default %(default)s; 0: off)")
    f.add_argument("--seg-steps", type=int, default=ExperimentConfig.seg_steps,
                   help="U-Net budget for every arm (default %(default)s)")
    f.add_argument("--seg-size", type=int, default=ExperimentConfig.seg_size)
    f.add_argument("--seg-checkpoint", choices=list(CHECKPOINTS), default=ExperimentConfig.seg_checkpoint,
                   help="the U-Net weights each arm keeps: last (every arm trains on all its slices and keeps its "
                   f"last step) or best (the step that scores best on {round(CHECKPOINTS['best'] * 100)}%% of its training "
                   f"slices, held out; arms with under {MIN_SLICES_TO_HOLD_OUT} slices keep the last); default %(default)s")
    f.add_argument("--seg-schedule", choices=list(SCHEDULES), default=ExperimentConfig.seg_schedule,
                   help="the U-Nets' learning rate over the steps: constant, or poly (decays to 0 as nnU-Net's "
                   "does); default %(default)s")
    f.add_argument("--cls-steps", type=int, default=ExperimentConfig.cls_steps,
                   help="classifier budget for every arm (default %(default)s)")
    f.add_argument("--ablation", action="store_true", help="also generators with each CoSinGAN part off "
                   "(two-stage, mixed reconstruction, hierarchical augmentation), on the first regime")
    f.add_argument("--spacing", type=float, default=ExperimentConfig.spacing_mm,
                   help="mm per original pixel for test slices whose files carry no spacing (PNG/JPG; default "
                   "%(default)s), for NSD")
    f.add_argument("--split", choices=list(SPLITS), default=ExperimentConfig.split,
                   help="how --data is split into training pool and test set (slices, or the cases of a volume "
                   "root), unless --test is given: " + "; ".join(f"{k}: {v}" for k, v in SPLITS.items())
                   + "; default %(default)s")
    f.add_argument("--fold", type=int, default=ExperimentConfig.fold,
                   help="the Task-1 fold, 0..4 (default %(default)s)")
    f.add_argument("--no-quality", action="store_true", help="skip the quality measures of the generators "
                   "(`cosingan quality`: fidelity, realism, grey levels, diversity)")
    f.add_argument("--seed", type=int, default=ExperimentConfig.seed)
    f.add_argument("--device", default=ExperimentConfig.device,
                   help="every network (generators, U-Nets, classifiers): " + DEVICE_HELP)
    f.add_argument("--backend", choices=list(BACKENDS), default="serial",
                   help="where generators, U-Nets and classifiers train: serial (here, one after another; the "
                   "default) or ray (as Ray tasks, side by side: every generator, then every network; same seeds, "
                   "same results)")
    f.add_argument("--address", help="with --backend ray: a running Ray cluster (default: a local one)")
    f.add_argument("--workers", type=int, default=2, help="with --backend ray and no --address: units at once "
                   "(default %(default)s)")
    f.add_argument("--threads", type=int, default=1, help="with --backend ray: torch threads (Ray CPUs) per unit "
                   "(default %(default)s)")
    f.add_argument("--quiet", action="store_true")


def cmd_experiment(args: argparse.Namespace) -> int:
    from ..experiment.arms import ARMS
    from ..experiment.config import ExperimentConfig
    from ..experiment.runner import run_few_shot
    from ..gan.config import load_config_file, merge, preset

    gan_config = load_config_file(args.gan_config) if args.gan_config else {}
    merge(preset(args.preset), gan_config, args.gan_config or "--preset")  # a clear error before any work
    resolve_device(args.device)
    if not args.spacing > 0:
        raise InputError(f"--spacing must be a positive number of mm, got {args.spacing}")
    if min(args.k) < 1 or args.repeats < 1 or args.n_synth < 1 or args.seg_steps < 1:
        raise InputError("--k, --repeats, --n-synth and --seg-steps must be at least 1")
    if len(set(args.k)) < len(args.k):
        raise InputError(f"--k {' '.join(map(str, args.k))}: each number of slices once")
    from ..downstream.seg import SegConfig, check_config

    check_config(SegConfig(size=args.seg_size, schedule=args.seg_schedule))  # the U-Net's settings, before any work
    cfg = ExperimentConfig(ks=tuple(args.k), repeats=args.repeats, preset=args.preset, gan_config=gan_config,
                           regimes=tuple(args.regimes), n_synth=args.n_synth, consolidation=args.consolidation,
                           anatomy=args.anatomy,
                           seg_steps=args.seg_steps, seg_size=args.seg_size, seg_checkpoint=args.seg_checkpoint,
                           seg_schedule=args.seg_schedule, cls_steps=args.cls_steps, seed=args.seed,
                           ablation=args.ablation, mixed=args.mixed, select=args.select,
                           synth_aug=args.synth_aug, real_aug=args.real_aug, shared_generator=args.shared_generator,
                           quality=not args.no_quality, spacing_mm=args.spacing, split=args.split,
                           fold=args.fold, device=args.device)
    from ..experiment.jobs import Jobs

    jobs = Jobs(args.backend, args.address, args.workers, args.threads,
                gpus=1.0 if args.device.startswith("cuda") else 0.0)
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
