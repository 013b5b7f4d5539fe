"""Metrics of the downstream tasks: segmentation (DSC, NSD per region) and detection (AUC, ...).

Segmentation follows the COVID-19-CT-Seg benchmark: per case (a slice, or a volume in 3-D), DSC and
normalized surface Dice (NSD; tolerance 1 mm for lung, 3 mm for infection) with the pixel or voxel
spacing, then the mean over cases. NSD is the surface-element definition of DeepMind's
`surface-distance` package, which the benchmark uses: MONAI's `compute_surface_dice` with
`use_subvoxels=True` matches it to 1e-7 (`tests/test_metrics.py` pins reference values); MONAI's default
pixel-border variant differs by up to 0.75. Regions: lung = label >= 1 (the whole lung, infection
included), infection = label == 2; volumes whose masks tell the lungs apart also score the left and right
lung (`score_sides`).

Empty masks (as in the benchmark and nnU-Net): a region absent from both truth and prediction is not
scored (NaN), left out of the means and counted per region; absent from only one of them, DSC = NSD = 0.
"""

from __future__ import annotations

import numpy as np
import torch

REGIONS = ("lung", "infection")
TOLERANCE_MM = {"lung": 1.0, "infection": 3.0}
EMPTY_POLICY = ("a region absent from truth and prediction alike is not scored (NaN, left out of the means, "
                "counted as excluded), as in the COVID-19-CT-Seg benchmark and nnU-Net; absent from only one: "
                "DSC = NSD = 0")
NSD_DEFINITION = ("normalized surface Dice at 1 mm (lung) and 3 mm (infection), surface-element definition of "
                  "DeepMind's surface-distance (the benchmark's), MONAI compute_surface_dice(use_subvoxels=True)")
# Bump when a score's definition or the way test cases are scored changes: the experiment's stored scores
# carry it, and scores of another version are computed again.
SCORING_VERSION = 2
SEG_METRICS = tuple(f"{r}_{m}" for r in REGIONS for m in ("dsc", "nsd"))
SIDE_METRICS = tuple(f"{r}_{m}" for r in ("left_lung", "right_lung") for m in ("dsc", "nsd"))  # volumes with sides
REGION_DEFINITION = ("lung: one region, both lungs with the infection in them (label >= 1); infection: label 2; "
                     "on volumes whose masks tell the lungs apart (COVID-19-CT-Seg) also the left and right lung "
                     "as the benchmark scores them, the predicted lung split at the midline between the true "
                     "lungs' centres")
DETECTION_METRICS = ("auc", "accuracy", "sensitivity", "specificity")


def region_masks(label: np.ndarray) -> dict[str, np.ndarray]:
    return {"lung": label >= 1, "infection": label == 2}


def score_case(pred: np.ndarray, truth: np.ndarray, spacing) -> dict[str, float]:
    """DSC and NSD per region of one case (2-D slice or 3-D volume; `spacing` in mm per axis, None = 1 mm),
    with the empty-mask policy (module docstring)."""
    out = {}
    for r in REGIONS:
        out[f"{r}_dsc"], out[f"{r}_nsd"] = _score_region(region_masks(pred)[r], region_masks(truth)[r],
                                                         TOLERANCE_MM[r], spacing)
    return out


def _score_region(p: np.ndarray, t: np.ndarray, tolerance_mm: float, spacing) -> tuple[float, float]:
    """(DSC, NSD) of one region's predicted and true masks, with the empty-mask policy."""
    import warnings

    from monai.metrics import compute_surface_dice
    from monai.metrics.meandice import compute_dice

    if not p.any() and not t.any():
        return float("nan"), float("nan")
    if not p.any() or not t.any():
        return 0.0, 0.0
    sp = list(spacing) if spacing is not None else [1.0] * p.ndim
    yp = torch.from_numpy(np.stack([~p, p]))[None].float()
    yt = torch.from_numpy(np.stack([~t, t]))[None].float()
    dsc = float(compute_dice(yp, yt, include_background=False)[0, 0])
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own internal argument
        warnings.filterwarnings("ignore", category=FutureWarning)
        nsd = float(compute_surface_dice(yp, yt, class_thresholds=[tolerance_mm], include_background=False,
                                         spacing=sp, use_subvoxels=True)[0, 0])
    return dsc, nsd


def score_sides(pred: np.ndarray, sides: np.ndarray, spacing) -> dict[str, float]:
    """DSC and NSD of the left and right lung apart, as the COVID-19-CT-Seg benchmark scores them, for a
    prediction of one lung region (label >= 1) against the true sides (`Volume.sides`): the predicted lung
    is split at the midline between the true lungs' centres (`labelmap.midline_sides`). 1 mm tolerance."""
    from ..data.labelmap import LEFT_LUNG, RIGHT_LUNG, midline_sides

    split = midline_sides(pred >= 1, sides)
    out = {}
    for side, name in ((LEFT_LUNG, "left_lung"), (RIGHT_LUNG, "right_lung")):
        out[f"{name}_dsc"], out[f"{name}_nsd"] = _score_region(split == side, sides == side, TOLERANCE_MM["lung"],
                                                               spacing)
    return out


def summarize(cases: list[dict], keys=SEG_METRICS) -> dict:
    """Means and standard deviations over the scored cases, and how many cases each region left out."""
    mean, std, excluded = {}, {}, {}
    for k in keys:
        v = np.array([c.get(k, np.nan) for c in cases], dtype=float)
        ok = v[~np.isnan(v)]
        mean[k] = float(ok.mean()) if ok.size else float("nan")
        std[k] = float(ok.std()) if ok.size else float("nan")
        excluded[k.rsplit("_", 1)[0]] = int(np.isnan(v).sum())
    return {"mean": mean, "std": std, "excluded": excluded}


def detection_metrics(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    from monai.metrics import compute_roc_auc

    y = np.asarray(y).astype(int)
    pred = p >= threshold
    tp, tn = int((pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    auc = float(compute_roc_auc(torch.from_numpy(p), torch.from_numpy(y))) if npos and nneg else float("nan")
    return {"auc": auc, "accuracy": (tp + tn) / len(y), "sensitivity": tp / npos if npos else float("nan"),
            "specificity": tn / nneg if nneg else float("nan"), "positives": npos, "negatives": nneg}
