"""Does the lesion-density step help any arm, or the synthetic one only? Arm B's k real slices, each
copied 150 times with every second copy given a dense patch (`cosingan.synth.density.consolidate`, the
step synthesis applies to half its pairs), trained with B's recipe (strong augmentation, the
experiment's budget and size, seed = repeat, no validation split: B has none) and scored on the
experiment's test slices, beside B's own stored scores.

    python -m studies.density_on_real EXP --out DIR [--repeats 0 1 2] [--k 2]

EXP is a finished `cosingan experiment few-shot` folder (its data/rN_kK folders, test slices and B's
scores are read; nothing in it is written). docs/results.md, "Lesion density on", gives the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from studies.common import split_folder

COPIES = 150


def main() -> None:
    from cosingan.data.files import save_png
    from cosingan.data.readers import read_image, read_label
    from cosingan.downstream import seg
    from cosingan.synth.density import consolidate

    ap = argparse.ArgumentParser()
    ap.add_argument("exp")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--k", type=int, default=2)
    a = ap.parse_args()
    exp, out = Path(a.exp), Path(a.out)
    results = json.loads((exp / "results.json").read_text())
    cfg = results["config"]
    for r in a.repeats:
        test = seg.load_folders([split_folder(exp, results, r, "test")])
        src, dst = exp / "data" / f"r{r}_k{a.k}", out / f"r{r}_dense"
        for p in sorted((src / "images").iterdir()):
            img, lab = read_image(p)[0], read_label(src / "labels" / p.name)
            for c in range(COPIES):
                im = consolidate(img, lab, np.random.default_rng([r, c, 13]), 1.0) if c % 2 else img
                save_png(im, dst / "images" / f"{p.stem}_{c:03d}.png")
                save_png(lab.astype(np.uint8), dst / "labels" / f"{p.stem}_{c:03d}.png")
        scfg = seg.SegConfig(size=cfg["seg_size"], steps=cfg["seg_steps"], aug="strong", seed=r, val_fraction=0.0)
        seg.train_seg(seg.load_folders([dst]), scfg, out / f"seg_r{r}", progress=False)
        net, scfg = seg.load_seg(out / f"seg_r{r}", "cpu")
        dense = seg.evaluate(net, scfg, test, out / f"eval_r{r}", cfg["spacing_mm"])["mean"]
        plain = json.loads((exp / "eval" / f"r{r}_k{a.k}_B_real_strongaug" / "summary.json").read_text())["mean"]
        print(f"repeat {r}: infection DSC B {plain['infection_dsc']:.3f}, B + density {dense['infection_dsc']:.3f} "
              f"(ratio {dense['infection_dsc'] / plain['infection_dsc']:.3f}); lung DSC {plain['lung_dsc']:.3f}, "
              f"{dense['lung_dsc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
