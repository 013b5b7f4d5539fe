"""Commands of the GAN layer: train, train-many, sample, demo."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..devices import DEVICE_HELP
from ..gan.config import AMP_MODES
from ..errors import InputError


def add_gan_flags(p: argparse.ArgumentParser) -> None:
    """The generator's settings, shared by every command that trains one (train, train-many)."""
    p.add_argument("--preset", default="cpu", help="tiny (tests), cpu (256 px, minutes on a CPU), "
                   "paper (512 px, GPU); default cpu")
    p.add_argument("--config", help="JSON file with overrides, e.g. {\"train\": {\"iters\": 500}}")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--amp", choices=list(AMP_MODES), default=None,
                   help="mixed precision: bf16 autocast for the networks (GPU); default none")
    p.add_argument("--no-two-stage", action="store_true", help="ablation: single-stage generator per scale")
    p.add_argument("--no-mixed-rec", action="store_true", help="ablation: SinGAN's plain reconstruction loss")
    p.add_argument("--no-hier-aug", action="store_true", help="ablation: no hierarchical data augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    """The run's Config from the flags of `add_gan_flags`: preset, then --config, then single flags."""
    from ..gan.config import load_config_file, merge, preset

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


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a CoSinGAN on one slice and its label map (or resume a run)",
                       description="Train a conditional single-image GAN pyramid on one CT slice (or one "
                       "few-shot pyramid shared by several: give several --image and --label, in order).")
    p.add_argument("--image", nargs="+", help="slice: PNG/JPG (8-bit grey), NIfTI (HU, lung window), or .npy; "
                   "several slices train one shared generator")
    p.add_argument("--label", nargs="+", help="label map of the same size: 0 background, 1 lung, 2 infection "
                   "(one per --image)")
    p.add_argument("--lung", nargs="+", help="lung mask instead of --label (non-zero = lung; left/right merge)")
    p.add_argument("--infection", nargs="+", help="infection mask, with --lung")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder")
    add_gan_flags(p)


def cmd_train(args: argparse.Namespace) -> int:
    from ..data.readers import load_slice
    from ..gan.train import train

    t0 = time.time()
    if args.resume:
        if args.image or args.label or args.out:
            raise InputError("--resume takes only the run folder (its config and data are stored in it)")
        from ..gan.checkpoint import run_status

        if run_status(args.resume) == "done":
            print(f"{args.resume}: finished before; nothing to train")
            return 0
        trainer = train(args.resume, None, None, progress=not args.quiet)
        run = Path(args.resume)
    else:
        if not args.image or not args.out or not (args.label or args.lung):
            raise InputError("train needs --image, --label (or --lung [--infection]) and --out, or --resume RUN")
        cfg = build_config(args)
        n = len(args.image)
        for flag in ("label", "lung", "infection"):
            given = getattr(args, flag)
            if given is not None and len(given) != n:
                raise InputError(f"--{flag}: {len(given)} files for {n} --image; give one per image, in order")
        pick = lambda xs, i: xs[i] if xs else None  # noqa: E731
        slices = [load_slice(args.image[i], label=pick(args.label, i), lung=pick(args.lung, i),
                             infection=pick(args.infection, i)) for i in range(n)]
        run = Path(args.out)
        trainer = train(run, slices, cfg, progress=not args.quiet)
    print(f"trained {trainer.model.num_scales} scales {trainer.sizes[0]}..{trainer.sizes[-1]} in "
          f"{time.time() - t0:.0f} s; run folder: {run}")
    return 0


def add_train_many(sub) -> None:
    p = sub.add_parser("train-many", help="one generator per annotated slice, in parallel (local or Ray)",
                       description="Train one CoSinGAN per image/label pair; finished runs are skipped, "
                       "interrupted ones resume.")
    p.add_argument("--images", help="folder of slices")
    p.add_argument("--labels", help="folder of label maps with the same file names")
    p.add_argument("--data", help="instead of --images/--labels: a slice folder (images/ + labels/), or a "
                   "COVID-19-CT-Seg root (--per-volume slices of each volume)")
    p.add_argument("--per-volume", type=int, default=1, help="with a volume root: slices per volume, picked "
                   "as a person would (large lungs, 5-40%% of the lung infected, spread along the volume); "
                   "default 1")
    p.add_argument("--out", required=True, help="folder of run folders (RUNS/NAME) and summary.csv")
    p.add_argument("--workers", type=int, default=2, help="models trained at once (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores / workers)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local process pool (default) or Ray (pip install 'cosingan[ray]')")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    add_gan_flags(p)


def cmd_train_many(args: argparse.Namespace) -> int:
    from ..data.layout import IMAGES, LABELS, pair_folders, volume_root_kind
    from ..gan.many import train_many, train_volumes

    if args.address and args.backend != "ray":
        raise InputError("--address is for --backend ray")
    if bool(args.data) == bool(args.images or args.labels) or (args.images is None) != (args.labels is None):
        raise InputError("give --images and --labels, or --data")
    cfg = build_config(args)
    t0 = time.time()
    pool = (args.out, cfg, args.workers, args.backend, args.address, args.threads, not args.quiet)
    if args.data and volume_root_kind(args.data):
        rows = train_volumes(args.data, args.per_volume, *pool)
    else:
        images, labels = ((Path(args.data) / IMAGES, Path(args.data) / LABELS) if args.data
                          else (args.images, args.labels))
        rows = train_many(pair_folders(images, labels), *pool)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:{width}s}  {r['status']:28s} {r['seconds']:8.1f} s")
    failed = sum(r["status"].startswith("failed") for r in rows)
    print(f"{len(rows) - failed} of {len(rows)} runs ready in {args.out} ({time.time() - t0:.0f} s; "
          f"summary: {args.out}/summary.csv)")
    return 1 if failed else 0


def add_sample(sub) -> None:
    from ..gan.run import PRECISION_HELP, PRECISIONS

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
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--batch", type=int, default=None,
                   help="samples drawn at once (default: 2 on the CPU, 4 in bf16, 16 on a GPU; the images do not "
                   "depend on it)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP + "; default %(default)s")
    p.add_argument("--quiet", action="store_true")


def cmd_sample(args: argparse.Namespace) -> int:
    from ..synth.sample import sample_run

    t0 = time.time()
    files = sample_run(args.run, args.n, args.out, args.label, args.seed, args.device, args.body, args.batch,
                       progress=not args.quiet, precision=args.precision)
    dt = time.time() - t0
    print(f"wrote {len(files)} samples to {args.out}/images (label maps in {args.out}/labels), "
          f"grid: {args.out}/grid.png ({len(files) / dt:.1f} images/s)")
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and sample on a built-in chest-CT phantom (no data needed)")
    p.add_argument("--out", default="demo_run", help="folder for the run and samples (default demo_run)")
    p.add_argument("--preset", default="demo", help="default demo (the cpu preset, half the iterations)")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data.outputs import output

    t0 = time.time()
    with output(args.out, "demo") as out:
        return _demo(args, out, t0)


def _demo(args: argparse.Namespace, out: Path, t0: float) -> int:
    from ..data.files import save_png
    from ..data.layout import pair_paths
    from ..data.phantom import chest_phantom
    from ..data.readers import Slice
    from ..gan.config import merge, preset
    from ..gan.train import ensure_trained
    from ..synth.sample import sample_run

    run = out / "run"
    data = out / "phantom"
    labels = []
    for seed in (0, 1):  # phantom_1 is another map the model never saw
        img, lab = chest_phantom(256, seed=seed)
        ip, lp = pair_paths(data, f"phantom_{seed}")
        save_png(img, ip)
        save_png(lab, lp)
        labels.append(str(lp))
        if seed == 0:
            train_slice = Slice(img, lab, None, "png")
            print(f"demo: a procedurally drawn chest-CT phantom ({ip}), preset {args.preset}, run folder {run}")
    cfg = merge(preset(args.preset), {"device": args.device}, "demo")
    status = ensure_trained(run, train_slice, cfg, progress=not args.quiet)
    print({"trained": "demo: trained", "resumed": "demo: resumed the interrupted run and finished it",
           "done": "demo: reusing the trained run"}[status] + f" in {run}")
    samples = out / "samples"
    sample_run(run, 6, samples, labels, seed=0, device=args.device, progress=not args.quiet)
    print(f"demo done in {time.time() - t0:.0f} s")
    print(f"  training curves : {run}/curves.png")
    print(f"  per-stage grids : {run}/samples/")
    print(f"  samples         : {samples}/images  (label maps in {samples}/labels)")
    print(f"  grid            : {samples}/grid.png  (row 1: training map, row 2: an unseen map)")
    return 0


COMMANDS = {"train": (add_train, cmd_train), "train-many": (add_train_many, cmd_train_many),
            "sample": (add_sample, cmd_sample), "demo": (add_demo, cmd_demo)}
