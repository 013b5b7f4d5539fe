"""Where does an arm's U-Net err on the real test slices: inside the lung or outside it?

A synthetic arm can score a lower infection DSC because it misses lesions (recall) or because it calls
healthy tissue infection (precision); false-positive infection outside the true lung (heart, mediastinum,
chest wall) says the synthetic conditions taught it infection where real lesions never lie. For every
arm's U-Net of the chosen repeats (not the fidelity reference, which trained on these slices), pooled over
the repeat's test slices: infection precision and recall, and the false-positive infection inside and
outside the true lung, each as a share of the true infection.

With --sites, the false positives inside the lung are split by where they lie (distances in pixels of the
slice scaled to a 256 px long side): on the true lesions' edge (within 3 px, where the labels' fading-edge
convention decides), near them (3-15 px), or far from every lesion; the far ones by their grey level among
the slice's healthy lung pixels (dense: its top 5 %, vessels and other bright structures; hazy: 75-95 %;
dark: below) and by place (pleural: within 5 px of the lung border; medial: the central 40 % of the lungs'
width, hila and mediastinal border; dependent: the lungs' lowest third of rows, posterior in these
slices), each as a share of the true infection; and the false positives outside the true lung by where they
lie: inside the lungs' convex hull (mediastinum, heart, hila), along the chest wall (outside the hull, within
8 px of the lung) or farther.

With --ranking, two measures that no threshold decides: how well the U-Net's infection probability ranks
the true lung's pixels, infection above healthy lung (the ROC AUC and the average precision over the
pixels of the true lung of the repeat's test slices). A change that only moves where the U-Net draws the
line between faint infection and healthy lung moves precision and recall, not these.

With --thresholds, each U-Net's mean infection DSC on the test slices (the benchmark's empty-mask policy)
with its argmax prediction, then with infection called where its probability reaches each of THRESHOLDS;
for the k-slice arms, also the threshold their own k real training slices would choose (the best mean DSC
on them) and the test DSC at it: how much the U-Net's threshold leaves on the table, and whether the k
slices could find it.

With --thirds, each U-Net gets a row per third of the test slices' infected share of the lung (light,
middle, heavy; cut where `studies.lesion_layouts.THIRDS` cuts, the dev test slices' thirds) instead of one.

    python -m studies.error_location EXP [--repeats 0 1 2] [--arms allreal prior] [--sites] [--ranking]
        [--thresholds] [--thirds]

EXP is a finished `cosingan experiment few-shot` folder; nothing in it is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from studies.common import split_folder
from studies.lesion_layouts import THIRDS

SITES = ("edge", "near", "far", "far dense", "far hazy", "far dark", "far pleural", "far medial", "far dependent")
OUTSIDE = ("outside in the hull", "outside along the wall", "outside farther")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


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


def sites(pred: np.ndarray, label: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Infection pixels called in the true healthy lung, counted per SITES entry (see the module text)."""
    healthy = label == 1
    fp = (pred == 2) & healthy
    scale = 256.0 / max(label.shape)
    lesion = label == 2
    to_lesion = ndimage.distance_transform_edt(~lesion) * scale if lesion.any() else np.full(label.shape, np.inf)
    to_border = ndimage.distance_transform_edt(label >= 1) * scale
    ref = np.sort(image[healthy])
    rank = np.searchsorted(ref, image, side="right") / max(ref.size, 1)
    rows, cols = np.nonzero((label >= 1).any(1))[0], np.nonzero((label >= 1).any(0))[0]
    dependent, medial = np.zeros(label.shape, bool), np.zeros(label.shape, bool)
    if rows.size:
        dependent[rows[0] + 2 * (rows[-1] + 1 - rows[0]) // 3:] = True
        width = cols[-1] + 1 - cols[0]
        medial[:, cols[0] + round(0.3 * width): cols[0] + round(0.7 * width)] = True
    far = fp & (to_lesion > 15)
    masks = (fp & (to_lesion <= 3), fp & (to_lesion > 3) & (to_lesion <= 15), far, far & (rank >= 0.95),
             far & (rank >= 0.75) & (rank < 0.95), far & (rank < 0.75), far & (to_border <= 5), far & medial,
             far & dependent)
    return np.array([m.sum() for m in masks], dtype=np.int64)


def outside_sites(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Infection pixels called outside the true lung, counted per OUTSIDE entry (see the module text)."""
    from cosingan.data.edits import hull_depth

    lung = label >= 1
    fp = (pred == 2) & ~lung
    hull = hull_depth(lung) > 0 if lung.any() else np.zeros(label.shape, bool)
    near = ndimage.distance_transform_edt(~lung) * 256.0 / max(label.shape) <= 8 if lung.any() else hull
    return np.array([(fp & hull).sum(), (fp & ~hull & near).sum(), (fp & ~hull & ~near).sum()], dtype=np.int64)


def dice_at(logits: list, slices: list, threshold: float | None) -> float:
    """Mean infection DSC over slices (NaN where prediction and truth are both empty, left out, as the
    benchmark does): the argmax prediction (`threshold` None), or infection where its probability reaches
    `threshold`."""
    from cosingan.downstream import seg

    out = []
    for x, s in zip(logits, slices):
        if threshold is None:
            p = x.argmax(0) == 2
        else:
            p = seg.infection_probability(x) >= threshold
        t = s.label == 2
        out.append(np.nan if not p.any() and not t.any() else 2.0 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.nanmean(out)) if not np.isnan(out).all() else float("nan")


def ranking(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, average precision) of scores for a 0/1 target (pixels). The AUC is Mann-Whitney's, ties
    counted half; for the average precision tied scores are ranked in the order given."""
    from scipy.stats import rankdata

    positive = positive.astype(bool)
    if not positive.any() or positive.all():
        return float("nan"), float("nan")
    hits = positive[np.argsort(-scores, kind="stable")]
    tp = np.cumsum(hits)
    ap = float(np.sum(tp[hits] / (np.nonzero(hits)[0] + 1)) / hits.sum())
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    auc = (rankdata(scores)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc), ap


def main() -> None:
    from cosingan.data import labelmap
    from cosingan.downstream import seg

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exp", help="a finished experiment folder")
    ap.add_argument("--repeats", type=int, nargs="+", default=None, help="repeats (default every one)")
    ap.add_argument("--arms", nargs="+", default=None,
                    help="U-Nets whose folder name contains one of these (default every arm)")
    ap.add_argument("--sites", action="store_true", help="split the false positives in the lung by site")
    ap.add_argument("--ranking", action="store_true",
                    help="the infection probability's ROC AUC and average precision over the true lung's pixels")
    ap.add_argument("--thresholds", action="store_true",
                    help="infection DSC at probability thresholds, and the one the k real slices would choose")
    ap.add_argument("--thirds", action="store_true", help="a row per third of the test slices' infected share")
    a = ap.parse_args()
    exp = Path(a.exp)
    results = json.loads((exp / "results.json").read_text())
    repeats = a.repeats if a.repeats is not None else range(len(results["splits"]))
    head = ["precision", "recall", "FP in lung / truth", "FP outside lung / truth"]
    head += list(SITES) + list(OUTSIDE) if a.sites else []
    head += ["infection AUC in the lung", "infection AP in the lung"] if a.ranking else []
    head += (["DSC argmax"] + [f"DSC at {t}" for t in THRESHOLDS] + ["k slices' threshold", "DSC at it"]
             if a.thresholds else [])
    print("| U-Net | test slices | " + " | ".join(head) + " |")
    print("| --- " * (len(head) + 2) + "|")
    for r in repeats:
        test = seg.load_folders([split_folder(exp, results, r, "test")])
        groups = [("", list(range(len(test))))]
        if a.thirds:
            third = np.digitize([labelmap.areas(s.label)[1] for s in test], THIRDS)
            groups = [(f" ({n})", list(np.nonzero(third == t)[0])) for t, n in enumerate(("light", "middle", "heavy"))]
        for d in sorted((exp / "seg").glob(f"r{r}_*")):
            arm = d.name.split("_", 1)[1]
            if arm.startswith("F_") or (a.arms and not any(x in arm for x in a.arms)):
                continue
            net, scfg = seg.load_seg(d, "cpu")
            logits = [seg.logits_at_slice_size(net, s, scfg.size) for s in test]
            preds = [x.argmax(0) for x in logits]
            pick = k_threshold(exp, results, r, arm, net, scfg) if a.thresholds else None
            for name, idx in (g for g in groups if g[1]):
                row = table_row([logits[i] for i in idx], [preds[i] for i in idx], [test[i] for i in idx], a, pick)
                print(f"| {d.name}{name} | {len(idx)} | " + " | ".join(f"{x:.3f}" for x in row) + " |", flush=True)


def k_threshold(exp: Path, results: dict, r: int, arm: str, net, scfg) -> float:
    """The threshold of THRESHOLDS with the best mean infection DSC on the arm's own k real slices (the
    repeat's draw for the arm's k); NaN for arms not drawn from k slices (C)."""
    from cosingan.downstream import seg

    run = next((x for x in results["runs"] if x["repeat"] == r and arm.startswith(f"k{x['k']}_")), None)
    if run is None:
        return float("nan")
    pool = seg.load_folders([split_folder(exp, results, r, "pool")])
    ks = [s for s in pool if Path(s.image_path).name in run["slices"]]
    if not ks:
        return float("nan")
    logits = [seg.logits_at_slice_size(net, s, scfg.size) for s in ks]
    return THRESHOLDS[int(np.nanargmax([dice_at(logits, ks, t) for t in THRESHOLDS]))]


def table_row(logits: list, preds: list, test: list, a: argparse.Namespace, pick: float | None = None) -> list[float]:
    """One table row over the given test slices (their logits and predictions): the columns `main` prints.
    `pick`: the threshold the k slices chose (`k_threshold`), with --thresholds."""
    from cosingan.downstream import seg

    counts = sum(errors(p, s.label) for p, s in zip(preds, test))
    row = list(summary(counts))
    if a.sites:
        truth = max(float(counts[0] + counts[1]), 1.0)
        row += list(sum(sites(p, s.label, s.image) for p, s in zip(preds, test)) / truth)
        row += list(sum(outside_sites(p, s.label) for p, s in zip(preds, test)) / truth)
    if a.ranking:
        lung = [s.label >= 1 for s in test]
        scores = np.concatenate([seg.infection_probability(x)[m] for x, m in zip(logits, lung)])
        row += list(ranking(scores, np.concatenate([s.label[m] == 2 for s, m in zip(test, lung)])))
    if a.thresholds:
        row += [dice_at(logits, test, None)] + [dice_at(logits, test, t) for t in THRESHOLDS]
        row += [pick, float("nan") if np.isnan(pick) else dice_at(logits, test, pick)]
    return row


if __name__ == "__main__":
    main()
