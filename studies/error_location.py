"""Where does an arm's U-Net err on the real test slices: inside the lung or outside it?

A synthetic arm can score a lower infection DSC because it misses lesions (recall) or because it calls
healthy tissue infection (precision); false-positive infection outside the true lung (heart, mediastinum,
chest wall) says the synthetic conditions taught it infection where real lesions never lie. For every
arm's U-Net of the chosen repeats (not the fidelity reference, which trained on these slices), pooled over
the repeat's test slices: infection precision and recall, and the false-positive infection inside and
outside the true lung, each as a share of the true infection.

    python -m studies.error_location EXP [--repeats 0 1 2] [--arms allreal prior]

EXP is a finished `cosingan experiment few-shot` folder; nothing in it is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from studies.common import split_folder


def errors(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(true positive, false negative, false positive in the lung, false positive outside it) infection
    pixels of one predicted and one true 0/1/2 map."""
    p, t, lung = pred == 2, label == 2, label >= 1
    return np.array([(p & t).sum(), (~p & t).sum(), (p & ~t & lung).sum(), (p & ~lung).sum()], dtype=np.int64)


def summary(counts: np.ndarray) -> tuple[float, float, float, float]:
    """(precision, recall, false positives in the lung / truth, outside the lung / truth) of pooled counts."""
    tp, fn, fp_in, fp_out = (float(c) for c in counts)
    truth = max(tp + fn, 1.0)
    return tp / max(tp + fp_in + fp_out, 1.0), tp / truth, fp_in / truth, fp_out / truth


def main() -> None:
    from cosingan.downstream import seg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", help="a finished experiment folder")
    ap.add_argument("--repeats", type=int, nargs="+", default=None, help="repeats (default every one)")
    ap.add_argument("--arms", nargs="+", default=None,
                    help="U-Nets whose folder name contains one of these (default every arm)")
    a = ap.parse_args()
    exp = Path(a.exp)
    results = json.loads((exp / "results.json").read_text())
    repeats = a.repeats if a.repeats is not None else range(len(results["splits"]))
    print("| U-Net | test slices | precision | recall | FP in lung / truth | FP outside lung / truth |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in repeats:
        test = seg.load_folders([split_folder(exp, results, r, "test")])
        for d in sorted((exp / "seg").glob(f"r{r}_*")):
            arm = d.name.split("_", 1)[1]
            if arm.startswith("F_") or (a.arms and not any(x in arm for x in a.arms)):
                continue
            net, scfg = seg.load_seg(d, "cpu")
            counts = sum(errors(seg.predict(net, s, scfg.size), s.label) for s in test)
            print(f"| {d.name} | {len(test)} | " + " | ".join(f"{x:.3f}" for x in summary(counts)) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
