"""Volume datasets end to end, on NIfTI volumes written here: COVID-19-CT-Seg (HU with left/right lung
labels and anisotropic voxels; a Radiopaedia case in 0..255 with separate masks) and MosMedData
(infection only): export to a slice folder with spacing kept, train on a root, score per volume in 3-D."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from cosingan.cli import main
from cosingan.data.readers import load_slice


def _volume(z=6, h=40, w=36, hu=True):
    vol = np.full((w, h, z), -1000.0, np.float32)
    vol[4:32, 4:36] = 40.0
    mask = np.zeros((w, h, z), np.uint8)
    mask[6:16, 8:32, 1:5] = 1  # left lung
    mask[20:30, 8:32, 1:5] = 2  # right lung
    mask[8:12, 20:26, 2:4] = 3  # infection
    vol[mask > 0] = -850.0
    vol[mask == 3] = -300.0
    if not hu:
        vol = np.clip((vol + 1250) / 1500 * 255, 0, 255).round()
    return vol, mask


def _save(arr, path, spacing):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), path)


@pytest.fixture
def ctseg(tmp_path):
    root = tmp_path / "ctseg"
    vol, mask = _volume()
    _save(vol, root / "COVID-19-CT-Seg_20cases" / "coronacases_001.nii.gz", (0.7, 0.7, 5.0))
    _save(mask, root / "Lung_and_Infection_Mask" / "coronacases_001.nii.gz", (0.7, 0.7, 5.0))
    rvol, rmask = _volume(hu=False)
    _save(rvol, root / "COVID-19-CT-Seg_20cases" / "radiopaedia_7_85703_0.nii.gz", (0.8, 0.8, 6.0))
    _save(np.where(rmask == 3, 1, rmask).astype(np.uint8), root / "Lung_Mask" / "radiopaedia_7_85703_0.nii.gz",
          (0.8, 0.8, 6.0))
    _save((rmask == 3).astype(np.uint8), root / "Infection_Mask" / "radiopaedia_7_85703_0.nii.gz", (0.8, 0.8, 6.0))
    return root


@pytest.fixture
def mosmed(tmp_path):
    vol, mask = _volume()
    _save(vol, tmp_path / "mosmed" / "studies" / "CT-1" / "study_0255.nii.gz", (0.7, 0.7, 8.0))
    _save((mask == 3).astype(np.uint8), tmp_path / "mosmed" / "masks" / "study_0255_mask.nii.gz", (0.7, 0.7, 8.0))
    return tmp_path / "mosmed"


def test_slices_exports_a_slice_folder_that_keeps_the_spacing(tmp_path, ctseg, capsys):
    out = tmp_path / "sl"
    assert main(["slices", str(ctseg), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "slices.csv")))
    assert len(rows) == 8 and {r["volume"] for r in rows} == {"coronacases_001", "radiopaedia_7_85703_0"}
    assert sum(int(r["infection"]) for r in rows) == 4
    sp = json.loads((out / "spacing.json").read_text())
    assert sp["coronacases_001_z002"] == [pytest.approx(0.7)] * 2 and sp["radiopaedia_7_85703_0_z001"][0] == pytest.approx(0.8)
    sl = load_slice(out / "images" / "coronacases_001_z002.png", out / "labels" / "coronacases_001_z002.png")
    assert sl.spacing == (pytest.approx(0.7), pytest.approx(0.7)) and set(np.unique(sl.label)) == {0, 1, 2}
    # the exported folder is a training set as it stands, and a re-export into it is allowed
    assert main(["slices", str(ctseg), "--out", str(out), "--infection", "with", "--quiet"]) == 0


def test_train_on_a_volume_root_and_score_per_volume_in_3d(tmp_path, ctseg, mosmed, capsys):
    model = tmp_path / "m"
    assert main(["seg", "train", "--data", str(ctseg), "--out", str(model), "--steps", "2", "--size", "32",
                 "--quiet"]) == 0
    meta = json.loads((model / "train.json").read_text())
    assert meta["train_slices"] + meta["val_slices"] == 8  # every slice with lungs of both volumes
    capsys.readouterr()
    assert main(["seg", "eval", "--model", str(model), "--data", str(ctseg), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "2 volumes (3-D)" in out
    s = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert s["cases"] == "3-D volumes" and [c["case"] for c in s["metric_per_case"]] == [
        "coronacases_001", "radiopaedia_7_85703_0"]
    assert all(0 <= s["mean"][k] <= 1 for k in s["mean"] if s["mean"][k] is not None)
    # COVID-19-CT-Seg tells the lungs apart: left and right lung scored as the benchmark does
    assert {"left_lung_dsc", "left_lung_nsd", "right_lung_dsc", "right_lung_nsd"} <= set(s["metric_per_case"][0])
    assert "left lung DSC" in out and "right lung DSC" in out
    # MosMedData: infection only; lung is not annotated there and is left out, not scored 0
    assert main(["seg", "eval", "--model", str(model), "--data", str(mosmed), "--out", str(tmp_path / "m2")]) == 0
    s = json.loads((tmp_path / "m2" / "summary.json").read_text())
    assert s["excluded"]["lung"] == 1 and s["mean"]["lung_dsc"] is None and s["mean"]["infection_dsc"] is not None
    assert "left_lung_dsc" not in s["mean"]


def test_the_lungs_sides_come_from_the_masks(ctseg, mosmed):
    """Left (1) and right (2) lung as the masks give them; infection voxels of a combined mask (label 3, no
    side of their own) take the side of the lung they lie in; MosMedData has none."""
    from cosingan.data.volumes import read_volumes

    combined, separate = read_volumes(ctseg)
    for v in (combined, separate):
        assert ((v.sides > 0) == (v.label > 0)).all()
        assert set(np.unique(v.sides[v.label == 2])) == {1}  # the infection lies in the left lung
        assert (v.sides == 1).sum() == (v.sides == 2).sum() == 10 * 24 * 4  # each lung whole, as `_volume` draws it
    (m,) = read_volumes(mosmed)
    assert m.sides is None


def test_experiment_on_a_covid19_ct_seg_root_with_the_task1_split(tmp_path):
    """All 20 case names of the benchmark, as small written phantoms; fold 0: 4 training, 16 test volumes."""
    from cosingan.experiment.split import task1_fold

    train, test = task1_fold(0)
    root = tmp_path / "ctseg"
    for i, name in enumerate(train + test):
        vol, mask = _volume(z=4, h=32, w=32)
        _save(vol, root / "COVID-19-CT-Seg_20cases" / f"{name}.nii.gz", (0.7 + 0.01 * i, 0.7 + 0.01 * i, 5.0))
        _save(mask, root / "Lung_and_Infection_Mask" / f"{name}.nii.gz", (0.7 + 0.01 * i, 0.7 + 0.01 * i, 5.0))
    out = tmp_path / "e"
    assert main(["experiment", "few-shot", "--data", str(root), "--split", "task1", "--fold", "0", "--k", "1",
                 "--out", str(out), "--preset", "tiny", "--regimes", "kmaps", "--n-synth", "3", "--seg-steps", "1",
                 "--seg-size", "32", "--cls-steps", "2", "--no-quality", "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    (sp,) = {json.dumps(s) for s in rec["splits"]}  # the fold is the one split of every repeat
    sp = json.loads(sp)
    assert sp["volumes"]["train"] == train and sp["volumes"]["test"] == test
    assert sp["how"] == "Task-1 fold 0" and sp["key"] == ""
    cases = json.loads((out / "eval" / "r0_C_allreal_strongaug" / "summary.json").read_text())
    assert cases["cases"] == "3-D volumes" and [c["case"] for c in cases["metric_per_case"]] == test
    # the k slices come from the training volumes and have infection
    (chosen,) = rec["runs"][0]["slices"]
    assert chosen.rsplit("_z", 1)[0] in train and chosen.endswith(("_z002.png", "_z003.png"))
    # detection runs on infection-free slices of the same test volumes (no --normals needed)
    assert "with infection" in rec["detection"] and all("auc" in r for r in rec["table"] if r["arm"] in "BC")
    report = (out / "report.md").read_text()
    assert "per 3-D test volume" in report
    assert "## Per case" in report and "Per-volume scores of every arm: eval/r0_C_allreal_strongaug/cases.csv" in report


def test_masks_synthesize_and_train_many_take_a_volume_root(tmp_path, ctseg, mosmed, tiny_run, capsys):
    """COVID-19-CT-Seg roots work where slice folders do: conditions (masks, synthesize --conditions)
    and one generator per picked slice (train-many --data ROOT --per-volume N); MosMedData (no lungs)
    is refused with one line and nothing written."""
    masks = tmp_path / "masks"
    assert main(["masks", "--data", str(ctseg), "--out", str(masks), "--n", "6", "--quiet"]) == 0
    rows = list(csv.DictReader(open(masks / "masks.csv")))
    assert len(rows) >= 4 and all("#z=" in r["source"] for r in rows)  # tiny maps: some edits fail
    syn = tmp_path / "syn"
    assert main(["synthesize", "--runs", str(tiny_run), "--conditions", str(ctseg), "--n", "3", "--out", str(syn),
                 "--quiet"]) == 0
    man = list(csv.DictReader(open(syn / "manifest.csv")))
    assert len(man) == 3 and all("Lung_" in r["condition"] and "#z=" in r["condition"] for r in man)
    runs = tmp_path / "runs"
    assert main(["train-many", "--data", str(ctseg), "--per-volume", "1", "--out", str(runs), "--preset", "tiny",
                 "--workers", "1", "--quiet"]) == 0
    made = sorted(p.name for p in runs.iterdir() if p.is_dir())
    # one per volume, among its slices with infection (z = 2, 3 in both phantoms)
    assert len(made) == 2 and all(n.rsplit("_z", 1)[1] in ("002", "003") for n in made), made
    assert {n.rsplit("_z", 1)[0] for n in made} == {"coronacases_001", "radiopaedia_7_85703_0"}
    capsys.readouterr()
    for argv in (["masks", "--data", str(mosmed), "--out", str(tmp_path / "mm"), "--n", "2"],
                 ["train-many", "--data", str(mosmed), "--out", str(tmp_path / "mr"), "--preset", "tiny"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "no lung labels" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "mm").exists() and not (tmp_path / "mr").exists()
    assert main(["train-many", "--images", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
