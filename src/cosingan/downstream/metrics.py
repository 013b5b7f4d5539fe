"""Metrics of the downstream tasks: segmentation (DSC, NSD per region) and detection (AUC, ...).

Segmentation follows the COVID-19-CT-Seg protocol in 2-D: per image, DSC and normalized surface Dice
(NSD; tolerance 1 mm for lung, 3 mm for infection) with the pixel spacing, then the mean over images.
Regions: lung = label >= 1 (the whole lung, infection included), infection = label == 2.

Empty-mask policy (written in every summary): when a region is absent from both truth and prediction
the image scores 1 for that region (nothing to find, nothing found); absent from one of them, 0.
When spacing is unknown (PNG slices) 1 mm per pixel is used, and the report says so.
"""

from __future__ import annotations

import numpy as np
import torch

REGIONS = ("lung", "infection")
TOLERANCE_MM = {"lung": 1.0, "infection": 3.0}
EMPTY_POLICY = ("region absent from truth and prediction: DSC = NSD = 1; absent from only one: 0; "
                "unknown spacing: 1 mm per pixel")
SEG_METRICS = tuple(f"{r}_{m}" for r in REGIONS for m in ("dsc", "nsd"))
DETECTION_METRICS = ("auc", "accuracy", "sensitivity", "specificity")


def region_masks(label: np.ndarray) -> dict[str, np.ndarray]:
    return {"lung": label >= 1, "infection": label == 2}


def score_case(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None) -> dict[str, float]:
    """DSC and NSD per region with the empty-mask policy (module docstring)."""
    from monai.metrics import compute_surface_dice
    from monai.metrics.meandice import compute_dice

    sp = spacing or (1.0, 1.0)
    out = {}
    for r in REGIONS:
        p, t = region_masks(pred)[r], region_masks(truth)[r]
        if not p.any() and not t.any():
            out[f"{r}_dsc"] = out[f"{r}_nsd"] = 1.0
            continue
        if not p.any() or not t.any():
            out[f"{r}_dsc"] = out[f"{r}_nsd"] = 0.0
            continue
        yp = torch.from_numpy(np.stack([~p, p]))[None].float()
        yt = torch.from_numpy(np.stack([~t, t]))[None].float()
        out[f"{r}_dsc"] = float(compute_dice(yp, yt, include_background=False)[0, 0])
        out[f"{r}_nsd"] = float(compute_surface_dice(yp, yt, class_thresholds=[TOLERANCE_MM[r]],
                                                     include_background=False, spacing=list(sp))[0, 0])
    return out


def detection_metrics(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict:
    from monai.metrics import compute_roc_auc

    y = np.asarray(y).astype(int)
    pred = p >= threshold
    tp, tn = int((pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    auc = float(compute_roc_auc(torch.from_numpy(p), torch.from_numpy(y))) if npos and nneg else float("nan")
    return {"auc": auc, "accuracy": (tp + tn) / len(y), "sensitivity": tp / npos if npos else float("nan"),
            "specificity": tn / nneg if nneg else float("nan"), "positives": npos, "negatives": nneg}
