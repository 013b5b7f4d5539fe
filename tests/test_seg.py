"""Segmentation metrics against hand-computed cases, and seg train/eval on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosingan.cli import main
from cosingan.data.phantom import chest_phantom
from cosingan.downstream.metrics import score_case


def _square(h, w, top, left, size, value):
    a = np.zeros((h, w), np.uint8)
    a[top: top + size, left: left + size] = value
    return a


def test_dice_of_two_shifted_squares():
    truth = _square(40, 40, 10, 10, 10, 1)
    pred = _square(40, 40, 10, 15, 10, 1)  # overlap 10 x 5 = 50 px of 100 + 100
    s = score_case(pred, truth, (1.0, 1.0))
    assert s["lung_dsc"] == pytest.approx(2 * 50 / 200)


def test_nsd_tolerance_in_mm_uses_the_spacing():
    truth = _square(60, 60, 20, 20, 20, 1)
    pred = _square(60, 60, 20, 22, 20, 1)  # boundary shifted by 2 px
    # 2 px at 0.4 mm/px = 0.8 mm < 1 mm tolerance: every boundary pixel within tolerance
    assert score_case(pred, truth, (0.4, 0.4))["lung_nsd"] == pytest.approx(1.0)
    # 2 px at 1 mm/px = 2 mm > 1 mm: the shifted left/right edges fall outside, top/bottom mostly inside
    nsd = score_case(pred, truth, (1.0, 1.0))["lung_nsd"]
    assert 0.3 < nsd < 0.8


def test_infection_uses_3mm_tolerance():
    truth = _square(60, 60, 20, 20, 20, 1)
    truth[25:35, 25:35] = 2
    pred = truth.copy()
    pred[25:35, 25:35] = 1
    pred[25:35, 27:37] = 2  # infection shifted by 2 px (2 mm < 3 mm)
    s = score_case(pred, truth, (1.0, 1.0))
    assert s["infection_nsd"] == pytest.approx(1.0)
    assert s["infection_dsc"] == pytest.approx(2 * 80 / 200)
    assert s["lung_dsc"] == pytest.approx(1.0)  # lung = label >= 1, unchanged


def test_empty_mask_policy():
    lung = _square(30, 30, 5, 5, 10, 1)
    s = score_case(lung, lung, None)  # no infection anywhere: not scored (the benchmark's NaN, issue 12)
    assert np.isnan(s["infection_dsc"]) and np.isnan(s["infection_nsd"])
    pred = lung.copy()
    pred[6:8, 6:8] = 2  # infection predicted where there is none
    s = score_case(pred, lung, None)
    assert s["infection_dsc"] == 0.0 and s["infection_nsd"] == 0.0
    s = score_case(lung, pred, None)  # infection missed
    assert s["infection_dsc"] == 0.0


def test_seg_train_and_eval_commands(tmp_path, phantom_files, capsys):
    ip, lp = phantom_files
    data = ip.parent.parent
    model = tmp_path / "model"
    assert main(["seg", "train", "--data", str(data), "--out", str(model), "--steps", "3", "--size", "32",
                 "--batch", "2", "--quiet"]) == 0
    assert (model / "model.pt").exists()
    meta = json.loads((model / "train.json").read_text())
    assert meta["config"]["steps"] == 3 and meta["config"]["aug"] == "strong"
    rep = tmp_path / "rep"
    assert main(["seg", "eval", "--model", str(model), "--data", str(data), "--out", str(rep)]) == 0
    out = capsys.readouterr().out
    assert "spacing unknown: 1 mm per pixel" in out
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["n"] == 1 and set(summary["mean"]) == {"lung_dsc", "lung_nsd", "infection_dsc", "infection_nsd"}
    assert all(0.0 <= v <= 1.0 for v in summary["mean"].values())
    assert "absent from truth and prediction" in summary["policy"]
    assert (rep / "cases.csv").read_text().startswith("case,lung_dsc")
    assert (rep / "cases.png").stat().st_size > 0
    assert main(["seg", "eval", "--model", str(tmp_path / "none"), "--data", str(data), "--out", str(rep)]) == 2


@pytest.mark.parametrize("aug", ["strong", "standard"])
def test_seg_train_same_seed_same_weights(tmp_path, aug):
    """Same seed, same bytes, with augmentation too (testing a MONAI Compose for truth re-seeds it at random:
    this differed from the first step before the fix)."""
    import torch

    from cosingan.data.readers import Slice
    from cosingan.downstream import seg

    slices = []
    for k in range(6):
        img, lab = chest_phantom(40, seed=20 + k)
        slices.append(Slice(img.astype(np.float32) / 127.5 - 1, lab, None, "png", image_path=f"p{k}"))
    cfg = seg.SegConfig(size=32, steps=4, aug=aug, val_every=2)
    states = []
    for rep in range(2):
        seg.train_seg(slices, cfg, tmp_path / f"m{rep}", progress=False)
        states.append(torch.load(tmp_path / f"m{rep}" / "model.pt", weights_only=True)["state"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_poly_schedule_and_given_validation_slices(tmp_path):
    """`schedule="poly"` decays the learning rate (other weights than a constant one from the same seed);
    `val_slices` validate instead of a held-out share (every training slice trains) and the log keeps their
    lung and infection DSC apart."""
    import torch

    from cosingan.data.readers import Slice
    from cosingan.downstream import seg
    from cosingan.errors import InputError

    slices = []
    for k in range(7):
        img, lab = chest_phantom(40, seed=30 + k)
        slices.append(Slice(img.astype(np.float32) / 127.5 - 1, lab, None, "png", image_path=f"p{k}"))
    states = {}
    for schedule in ("constant", "poly"):
        cfg = seg.SegConfig(size=32, steps=6, aug="none", val_every=3, schedule=schedule)
        meta = seg.train_seg(slices[:5], cfg, tmp_path / schedule, progress=False, val_slices=slices[5:])
        assert (meta["train_slices"], meta["val_slices"]) == (5, 2)
        assert [set(e) >= {"val", "val_lung_dsc", "val_infection_dsc"} for e in meta["log"]] == [True, True]
        assert json.loads((tmp_path / schedule / "train.json").read_text())["config"]["schedule"] == schedule
        states[schedule] = torch.load(tmp_path / schedule / "model.pt", weights_only=True)["state"]
    assert not all(torch.equal(states["constant"][k], states["poly"][k]) for k in states["poly"])
    with pytest.raises(InputError, match="schedule must be one of constant, poly"):
        seg.check_config(seg.SegConfig(schedule="cosine"))
