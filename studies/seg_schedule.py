"""Does a U-Net's last step stand for its training? The test scores of arm C's training set (the pool) and
arm A's (the all-maps synthetic set) of a finished experiment, every `--every` steps, for a constant
learning rate and for poly decay (`SegConfig.schedule`), each trained on all its slices (no validation
split) with the experiment's budget, size, strong augmentation and the repeat's seed.

    python -m studies.seg_schedule EXP --out DIR [--repeats 0 1] [--sets C A] [--every 100]

EXP is read, never written. Prints per set and schedule the test infection DSC at the last step, its best
(and where), and its mean, sd and range over the second half of the training: how far a checkpoint rule
can move a score. docs/results.md gives the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from studies.common import split_folder


def main() -> None:
    from cosingan.downstream import seg
    from cosingan.experiment.config import ExperimentConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("exp")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, nargs="+", default=[0])
    ap.add_argument("--sets", nargs="+", choices=["C", "A"], default=["C", "A"])
    ap.add_argument("--every", type=int, default=100)
    a = ap.parse_args()
    exp, out = Path(a.exp), Path(a.out)
    rec = json.loads((exp / "results.json").read_text())
    cfg, k = rec["config"], rec["runs"][0]["k"]
    for r in a.repeats:
        test = seg.load_folders([split_folder(exp, rec, r, "test")])
        seed = ExperimentConfig(seed=cfg["seed"]).repeat_seed(r)
        folders = {"C": split_folder(exp, rec, r, "pool"), "A": exp / "synthetic" / f"r{r}_k{k}_allmaps"}
        for name in a.sets:
            slices = seg.load_folders([folders[name]])
            for schedule in ("constant", "poly"):
                scfg = seg.SegConfig(size=cfg["seg_size"], steps=cfg["seg_steps"], aug="strong", seed=seed,
                                     schedule=schedule, val_every=a.every)
                log = seg.train_seg(slices, scfg, out / f"r{r}_{name}_{schedule}", progress=False,
                                    val_slices=test)["log"]
                v = np.array([e["val_infection_dsc"] for e in log])
                late = v[len(v) // 2:]
                best = int(np.argmax(v))
                print(f"repeat {r} {name} {schedule:8s}: infection DSC last {v[-1]:.3f}, best {v[best]:.3f} "
                      f"(step {log[best]['step']}), second half {late.mean():.3f} ± {late.std(ddof=1):.3f} "
                      f"[{late.min():.3f}, {late.max():.3f}]; lung DSC last {log[-1]['val_lung_dsc']:.3f}", flush=True)
                print("    " + " ".join(f"{e['step']}:{e['val_infection_dsc']:.3f}" for e in log), flush=True)


if __name__ == "__main__":
    main()
