"""Where does the realism test tell synthetic from real: in the lungs or outside them?

For the real test slices' own label maps, one sample of each generator of a finished experiment (drawn as
`cosingan quality` draws them) and three composites against the real slices of the same maps:

- whole: the synthetic image as it is (what `cosingan quality` tests);
- lungs: the real slice with its lungs (lung and infection) replaced by the synthetic lungs;
- body: the synthetic image with the real lungs put back (everything outside the lungs synthetic).

Each is the classifier two-sample test of `cosingan quality` (same CNN, budget, flips/affine
augmentation and cross-fitting over two halves of the maps), on all the test maps. 0.5 =
indistinguishable. A region whose composite is told apart as well as the whole image carries the giveaway.

    python -m studies.realism_by_region EXP [--repeat 0] [--runs RUN ...]

The same measures are now part of `cosingan quality` (`synth.quality.realism`); this script applies them
to a finished experiment's generators. EXP is a finished `cosingan experiment few-shot` folder with
quality on; nothing in it is written (the classifiers go to a temporary folder). `--runs` tests other generators (e.g. a variant trained on the
same slice) on EXP's test maps instead of that repeat's own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from studies.common import open_repeat, test_folder


def main() -> None:
    from cosingan.data.labelmap import LUNG, body_from_image
    from cosingan.downstream import seg
    from cosingan.gan.run import TrainedRun, sample_seed
    from cosingan.data.pictures import resize
    from cosingan.synth.quality import REALISM, QualityConfig, realism, run_labels

    rep = open_repeat(__doc__, lambda ap: ap.add_argument("--runs", nargs="+", help="generators to test"))
    runs = rep.args.runs or [q["run"] for q in rep.results["quality"] if q["repeat"] == rep.repeat]
    test = seg.load_folders([test_folder(rep)])
    q = QualityConfig()
    print(f"{len(test)} test maps; held-out AUC of a real-vs-synthetic classifier, mean of {q.c2st_folds} folds (0.5 best)")
    print("| generator | " + " | ".join(REALISM.values()) + " |")
    print("| --- " * (len(REALISM) + 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for run, name in zip(runs, run_labels(runs)):
            tr = TrainedRun.from_pretrained(run)
            reals, fakes, lungs = [], [], []
            for j, sl in enumerate(test):
                label4 = tr.condition(sl.label, body_from_image(sl.image, sl.label))
                fakes.append(tr(label4, [sample_seed(q.seed, j, 0)])[0])
                reals.append(resize(sl.image, label4.shape))
                lungs.append(label4 >= LUNG)
            row = realism(reals, fakes, lungs, q, Path(tmp) / name.replace("/", "__"), False, "cpu")
            print(f"| {name} | " + " | ".join(f"{row['realism_auc' + k]:.3f}" for k in REALISM) + " |", flush=True)


if __name__ == "__main__":
    main()
