"""How low can the realism test go for a generator trained on one slice? Two controls beside the generators.

`cosingan quality` tells a generator's samples from the real held-out slices of the same maps. Those real
slices come from many patients, scanners and display windows; a generator trained on one slice draws with
that slice's grey levels, noise and anatomy. This study runs the same whole-image test
(`synth.quality.realism`: same maps, halves, CNN, budget and classifier seeds) on two stand-ins for the
synthetic images:

- other real slices: the real slices of the reference half (other patients), each resized to a held-out
  map's frame. The test's floor: real against real.
- the training slice, deformed: each generator's own training slice, deformed as the hierarchical
  augmentation deforms it (`synth.quality.training_copies`: flip, affine, elastic; one copy per map),
  resized to the map's frame. Real anatomy and texture, one patient's look: roughly the best a generator
  that reproduces its single slice could score; `cosingan quality` now reports it beside every generator.
  (Its lungs are not the map's, so only the whole image is tested: the region composites would paste
  mismatched lungs.)

With `--samples`, each generator's own samples too (every region; the numbers `cosingan quality` reports).

    python -m studies.realism_ceiling RUN [RUN ...] --data TEST_FOLDER [--c2st-seeds 3] [--samples]

TEST_FOLDER is the real-slice folder given to `cosingan quality --data` (split into halves the same way).
Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    from cosingan.data.labelmap import LUNG, body_from_image
    from cosingan.data.pictures import resize
    from cosingan.data.readers import load_slice
    from cosingan.gan.run import TrainedRun, sample_seed
    from cosingan.synth.quality import (REALISM, QualityConfig, cell, realism, run_labels, split_folder,
                                        training_copies)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="trained generators (their training slices are the copies)")
    ap.add_argument("--data", required=True, help="real slices, as for `cosingan quality --data`")
    ap.add_argument("--c2st-seeds", type=int, default=3)
    ap.add_argument("--samples", action="store_true", help="also the generators' own samples")
    a = ap.parse_args()
    q = QualityConfig(c2st_seeds=a.c2st_seeds)
    ref_pairs, held_pairs = split_folder(Path(a.data), q)
    ref = [load_slice(i, lb).image for i, lb in ref_pairs]
    held = [load_slice(i, lb) for i, lb in held_pairs]
    print(f"{len(held)} held-out maps, {len(ref)} other real slices; held-out AUC (0.5 best), mean ± sd over "
          f"{q.c2st_seeds} classifier seeds")
    print("| images tested against the real slices | " + " | ".join(REALISM.values()) + " |")
    print("| --- " * (len(REALISM) + 1) + "|")

    def report(name, tr, make, tmp, regions=("",)):
        """`make(label4s)`: the images tested against the real slices of these maps."""
        label4s = [tr.condition(sl.label, body_from_image(sl.image, sl.label)) for sl in held]
        reals = [resize(sl.image, m.shape) for sl, m in zip(held, label4s)]
        row = realism(reals, make(label4s), [m >= LUNG for m in label4s], q,
                      Path(tmp) / name.replace("/", "_").replace(" ", "_"), False, "cpu", regions)
        cells = [cell(row, "realism_auc" + k) if k in regions else "" for k in REALISM]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        runs = [TrainedRun.from_pretrained(r) for r in a.runs]
        report("other real slices", runs[0], lambda ms: [resize(ref[j % len(ref)], m.shape) for j, m in enumerate(ms)],
               tmp)
        for tr, name in zip(runs, run_labels(a.runs)):
            report(f"{name}: its training slice, deformed", tr,
                   lambda ms, tr=tr: training_copies(tr, [m.shape for m in ms], q.seed), tmp)
            if a.samples:
                report(f"{name}: its samples", tr,
                       lambda ms, tr=tr: [tr(m, [sample_seed(q.seed, j, 0)])[0] for j, m in enumerate(ms)], tmp,
                       tuple(REALISM))


if __name__ == "__main__":
    main()
