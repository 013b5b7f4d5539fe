"""Infection classifier: body cropping against the framing shortcut, metrics, train/eval commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosingan.cli import main
from cosingan.downstream.cls import body_crop
from cosingan.downstream.metrics import detection_metrics
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom


def test_body_crop_removes_the_framing():
    img, _ = chest_phantom(64, seed=0)
    tight = np.pad(img, 4, constant_values=-1.0)  # cropped close to the body, like the COVID slices
    framed = np.full((160, 160), -1.0, np.float32)  # the same body in a full field of view
    framed[40:104, 50:114] = img
    a, b = body_crop(tight), body_crop(framed)
    assert a.shape == b.shape and np.array_equal(a, b)


def test_detection_metrics_hand_computed():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    m = detection_metrics(p, y)
    assert m["auc"] == pytest.approx(8 / 9)  # one of 9 pos/neg pairs misordered (0.3 < 0.6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_cls_train_and_eval(tmp_path):
    data, neg = tmp_path / "data", tmp_path / "neg"
    for k in range(4):
        img, lab = chest_phantom(48, seed=30 + k)
        save_png(img, data / "images" / f"p{k}.png")
        save_png(lab, data / "labels" / f"p{k}.png")
        save_png(chest_phantom(48, seed=60 + k)[0], neg / f"n{k}.png")  # other slices: never both labels
    assert main(["cls", "train", "--data", str(data), "--negatives", str(neg), "--out", str(tmp_path / "m"),
                 "--steps", "3", "--size", "32", "--quiet"]) == 0
    assert main(["cls", "eval", "--model", str(tmp_path / "m"), "--data", str(data), "--negatives", str(neg),
                 "--out", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["positives"] == 4 and s["negatives"] == 4 and 0.0 <= s["auc"] <= 1.0
    assert (tmp_path / "r" / "roc.png").stat().st_size > 0
    # positives only: refused with a clear error
    assert main(["cls", "train", "--data", str(data), "--out", str(tmp_path / "m2"), "--steps", "2", "--quiet"]) == 2
