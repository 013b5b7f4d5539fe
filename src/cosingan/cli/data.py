"""Commands of the data and synthesis layers: slices, masks, synthesize, quality."""

from __future__ import annotations

import argparse
import time

from ..data.outputs import output
from ..devices import DEVICE_HELP, resolve_device
from ..errors import InputError
from .flags import add_flags, from_args


def edit_list(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def rejections(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def add_masks(sub) -> None:
    from ..data.edits import default_edits, user_edits

    p = sub.add_parser("masks", help="make new plausible label maps from real ones (conditions)",
                       description="Deform and edit real label maps; lesions stay inside the lung.")
    p.add_argument("--data", nargs="+", required=True, help="slice folders (images/ + labels/) or label folders")
    p.add_argument("--out", required=True, help="output folder: labels/, bodies/, masks.csv")
    p.add_argument("--n", type=int, default=100, help="maps to make (default 100)")
    p.add_argument("--edits", default=",".join(default_edits()),
                   help=f"comma-separated edits to draw from: {', '.join(user_edits())} (default: {','.join(default_edits())})")
    p.add_argument("--negative-share", type=float, default=0.0, help="share of infection-free maps (0-1)")
    p.add_argument("--lungs-from", metavar="DIR", help="unannotated slices showing the whole body (e.g. normal "
                   "chest CT): their lungs, found automatically, replace the --data maps' lungs, and each map gets "
                   "new lesion layouts imitating a --data map's lesions (edit relayout; of --edits only the "
                   "whole-map ones apply)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def cmd_masks(args: argparse.Namespace) -> int:
    from ..data.conditions import check_edits, sources_from_folder, sources_from_unlabelled, with_lesions_of, write_masks
    from ..data.edits import whole_map_edits

    sources = [s for d in args.data for s in sources_from_folder(d)]
    edits, always = edit_list(args.edits), ()
    if not edits:
        raise InputError(f"--edits {args.edits!r}: no edit names; choose from the list in --help")
    check_edits(edits)  # before the output folder is made
    if args.lungs_from:  # the unlabelled slices' lungs with the annotated maps' kind of lesions
        sources = with_lesions_of(sources_from_unlabelled(args.lungs_from), sources)
        edits, always = whole_map_edits(edits), ("relayout",)
    t0 = time.time()
    with output(args.out, "masks", tuple(args.data) + ((args.lungs_from,) if args.lungs_from else ())) as out:
        rep = write_masks(sources, out, args.n, edits, args.negative_share, args.seed,
                          progress=not args.quiet, always=always)
    print(f"made {rep['made']} of {rep['asked']} maps from {len(sources)} sources in {time.time() - t0:.0f} s "
          f"-> {args.out}/labels; rejected attempts: {rejections(rep['rejected'])}")
    return 0


def add_synthesize(sub) -> None:
    from ..gan.run import PRECISION_HELP, PRECISIONS
    from ..synth.anatomy import ANATOMY
    from ..synth.density import ImageSteps

    p = sub.add_parser("synthesize", help="a synthetic image/label dataset from trained generators",
                       description="N paired samples spread over the runs, with a manifest to regenerate each.")
    p.add_argument("--runs", nargs="+", required=True, help="trained run folders")
    p.add_argument("--n", type=int, required=True, help="number of pairs")
    p.add_argument("--out", required=True, help="dataset folder (for nnunet: DatasetXXX_Name)")
    p.add_argument("--conditions", help="folder of label maps to condition on (slice folder, or the output "
                   "of `cosingan masks`); default: each run's own training map")
    p.add_argument("--edits", default="", help="comma-separated edits applied on the fly (e.g. deform,move,add)")
    p.add_argument("--negative-share", type=float, default=0.0, help="share of infection-free conditions (0-1)")
    p.add_argument("--anatomy", choices=list(ANATOMY), default="generated",
                   help="the body outside the lungs: generated (the generator's own), transplant (the "
                   "training slice's spine, heart, vessels and airways, warped onto the condition; lungs, "
                   "lesions and labels untouched) or inject (the same carried in at a coarse scale, the finer "
                   "scales drawing over it); default %(default)s")
    add_flags(p, ImageSteps)  # --consolidation, --lesion-margins, ...
    p.add_argument("--format", default="png", choices=["png", "nnunet"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP + "; default %(default)s")
    p.add_argument("--quiet", action="store_true")


def cmd_synthesize(args: argparse.Namespace) -> int:
    from ..synth.dataset import Synthesizer, coverage_text, dataset_spec, synthesize
    from ..synth.density import ImageSteps

    t0 = time.time()
    syn = Synthesizer(args.runs, args.conditions, edit_list(args.edits), args.negative_share, args.seed, args.device,
                      from_args(ImageSteps, args), args.anatomy, args.precision)
    dataset_spec(syn, args.out, args.format)  # refuses misfits before the output folder is made
    with output(args.out, "synthesize", (args.conditions, *args.runs)) as out:
        rep = synthesize(syn, args.n, out, args.format, progress=not args.quiet)
    print(f"{rep['made']} new pairs, {rep['kept']} kept from before, {rep['total']} in {args.out} "
          f"({time.time() - t0:.0f} s); rejected edit attempts: {rejections(rep['rejected'])}")
    print(coverage_text(rep["coverage"]))
    return 0


def add_quality(sub) -> None:
    from ..synth.anatomy import ANATOMY

    p = sub.add_parser("quality", help="is a generator any good? fidelity, realism, intensity, diversity",
                       description="Graded quality measures of trained generators against real slices "
                       "(minutes on a CPU): condition fidelity (a segmenter trained on half the real "
                       "slices, applied to synthetic images of the other half's maps), realism (classifier "
                       "two-sample test, held-out AUC; 0.5 = indistinguishable), grey-level distances per "
                       "region, and diversity between samples of one map.")
    p.add_argument("runs", nargs="+", help="trained run folders")
    p.add_argument("--data", required=True, help="slice folder of real slices (images/ + labels/), not the "
                   "generators' training slices")
    p.add_argument("--out", required=True, help="folder: quality.json, quality.md, the cached segmenter")
    p.add_argument("--maps", type=int, default=24, help="held-out maps used (default 24)")
    p.add_argument("--seg-steps", type=int, default=600, help="reference segmenter budget (default 600)")
    p.add_argument("--c2st-steps", type=int, default=300, help="realism classifier budget (default 300)")
    p.add_argument("--c2st-seeds", type=int, default=3, help="realism classifiers per measure, each with its own "
                   "seed: the AUC is their mean, beside its sd (the test's own noise); default %(default)s, 1 for "
                   "a third of the time")
    p.add_argument("--anatomy", choices=list(ANATOMY), default="generated",
                   help="the samples' body outside the lungs, as `synthesize --anatomy` makes it; default %(default)s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true")


def cmd_quality(args: argparse.Namespace) -> int:
    from ..synth.quality import QualityConfig, markdown, quality

    resolve_device(args.device)
    t0 = time.time()
    cfg = QualityConfig(maps=args.maps, seg_steps=args.seg_steps, c2st_steps=args.c2st_steps,
                        c2st_seeds=args.c2st_seeds, seed=args.seed, anatomy=args.anatomy)
    rec = quality(args.runs, args.data, args.out, cfg, progress=not args.quiet, device=args.device)
    print(markdown(rec), end="")
    print(f"({time.time() - t0:.0f} s) -> {args.out}/quality.json, {args.out}/quality.md")
    return 0


def add_slices(sub) -> None:
    p = sub.add_parser("slices", help="export the slices of CT volumes as a slice folder (spacing kept)",
                       description="Read a COVID-19-CT-Seg root (COVID-19-CT-Seg_20cases/ with "
                       "Lung_and_Infection_Mask/ or Lung_Mask/ + Infection_Mask/) or a MosMedData root "
                       "(studies/CT-1/ + masks/) and write every slice with lungs (MosMedData: with infection) "
                       "as images/NAME_zNNN.png + labels/NAME_zNNN.png, with spacing.json and slices.csv.")
    p.add_argument("root", help="COVID-19-CT-Seg or MosMedData root folder")
    p.add_argument("--out", required=True, help="slice folder to write")
    p.add_argument("--infection", choices=["any", "with", "without"], default="any",
                   help="keep slices with infection, without, or both (default any)")
    p.add_argument("--quiet", action="store_true")


def cmd_slices(args: argparse.Namespace) -> int:
    from ..data.volumes import export_slices, read_volumes

    t0 = time.time()
    volumes = read_volumes(args.root)
    with output(args.out, "slices", (args.root,)) as out:
        rows = export_slices(volumes, out, args.infection, progress=not args.quiet)
    print(f"wrote {len(rows)} slices of {len(volumes)} volumes to {args.out} ({sum(r['infection'] for r in rows)} "
          f"with infection; spacing in {args.out}/spacing.json) in {time.time() - t0:.0f} s")
    return 0


COMMANDS = {"slices": (add_slices, cmd_slices), "masks": (add_masks, cmd_masks), "synthesize": (add_synthesize, cmd_synthesize),
            "quality": (add_quality, cmd_quality)}
