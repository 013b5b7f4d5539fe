"""The few-shot experiment end to end on tiny phantom data: report content, no test leakage, resume."""

from __future__ import annotations

import json

import pytest

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom


@pytest.fixture
def phantom_folder(tmp_path):
    root = tmp_path / "slices"
    for k in range(6):
        img, lab = chest_phantom(40, seed=20 + k)
        save_png(img, root / "images" / f"ph{k}.png")
        save_png(lab, root / "labels" / f"ph{k}.png")
    return root


@pytest.fixture
def normals_folder(tmp_path):
    """Infection-free phantoms: the image without its lesions is not needed, only 'no infection'."""
    root = tmp_path / "normals"
    for k in range(4):
        img, _ = chest_phantom(40, seed=60 + k)
        save_png(img, root / f"n{k}.png")
    return root


def test_few_shot_experiment_report_and_no_leakage(tmp_path, phantom_folder, normals_folder, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
            "--normals", str(normals_folder), "--preset", "tiny", "--n-synth", "6", "--seg-steps", "2",
            "--seg-size", "32", "--cls-steps", "2", "--quiet"]
    assert main(args) == 0
    rec = json.loads((out / "results.json").read_text())
    pool, test = set(rec["pool"]), set(rec["test_slices"])
    assert pool and test and not pool & test  # the split never leaks test slices into training
    assert len(pool) + len(test) == 6
    for run in rec["runs"]:
        assert set(run["slices"]) <= pool and len(run["slices"]) == run["k"]
    arms = {(r["arm"], r["regime"]) for r in rec["table"]}
    assert arms == {("A", "kmaps"), ("A", "allmaps"), ("B", ""), ("C", "")}
    for r in rec["table"]:
        for m in ("lung_dsc", "lung_nsd", "infection_dsc", "infection_nsd"):
            assert 0.0 <= r[m] <= 1.0
    # detection: every arm has a classifier scored on the test slices + the test half of the normals
    assert set(rec["normals"]["pool"]) | set(rec["normals"]["test"]) == {f"n{k}.png" for k in range(4)}
    assert not set(rec["normals"]["pool"]) & set(rec["normals"]["test"])
    for r in rec["table"]:
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0, r
    summary = json.loads((out / "eval_cls" / "r0_C_allreal" / "summary.json").read_text())
    assert summary["negatives"] == 2 and summary["positives"] == len(test)
    assert json.loads((out / "cls" / "r0_k1_B_real_strongaug" / "train.json").read_text())["config"]["aug"] == "strong"
    assert {(f["k"], f["regime"]) for f in rec["fidelity"]} == {(1, "kmaps"), (1, "allmaps")}
    assert all(0.0 <= f["infection_dsc"] <= 1.0 for f in rec["fidelity"])
    md = (out / "report.md").read_text()
    assert "Condition fidelity" in md
    assert "| k | arm |" in md and "B: k real + strong aug" in md and "Timings" in md
    assert "detection AUC" in md and "roc.png" in md
    assert "<table" in (out / "report.html").read_text()
    assert (out / "infection_dsc.png").stat().st_size > 0
    assert {p.name for p in (out / "data" / "test" / "images").iterdir()} == test
    # a second run reuses everything and reports the same numbers
    first = rec["table"]
    capsys.readouterr()
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == first
    for step in ("gan_train", "seg_train", "cls_train"):
        assert again["timings_s"].get(step, 0.0) == 0.0


def test_test_folder_overlapping_data_is_refused(tmp_path, phantom_folder):
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--test", str(phantom_folder),
                 "--k", "1", "--out", str(tmp_path / "e"), "--preset", "tiny", "--quiet"]) == 2


def test_ablation_switches_each_part_off(tmp_path, phantom_folder):
    out = tmp_path / "abl"
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
                 "--preset", "tiny", "--regimes", "allmaps", "--ablation", "--n-synth", "3", "--seg-steps", "1",
                 "--seg-size", "32", "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    regimes = {r["regime"] for r in rec["table"] if r["arm"] == "A"}
    assert regimes == {"allmaps", "allmaps, no two-stage", "allmaps, no mixed-rec", "allmaps, no hier-aug"}
    cfgs = {p.name.split("_no-")[-1] if "_no-" in p.name else "full": json.loads((p / "config.json").read_text())
            for p in (out / "gan").iterdir()}
    assert cfgs["full"]["model"]["two_stage"] and cfgs["full"]["train"]["mixed_rec"] and cfgs["full"]["train"]["hier_aug"]
    assert not cfgs["two-stage"]["model"]["two_stage"]
    assert not cfgs["mixed-rec"]["train"]["mixed_rec"]
    assert not cfgs["hier-aug"]["train"]["hier_aug"]
