"""The few-shot experiment end to end on tiny phantom data: report content, no test leakage, resume."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom


@pytest.fixture
def normals_folder(tmp_path):
    """Infection-free phantoms: the image without its lesions is not needed, only 'no infection'."""
    root = tmp_path / "normals"
    for k in range(4):
        img, _ = chest_phantom(40, seed=60 + k)
        save_png(img, root / f"n{k}.png")
    return root


def test_few_shot_experiment_report_and_no_leakage(tmp_path, phantom_folder, normals_folder, capsys, monkeypatch):
    out = tmp_path / "exp"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
            "--normals", str(normals_folder), "--preset", "tiny", "--n-synth", "6", "--seg-steps", "2",
            "--seg-size", "32", "--cls-steps", "2", "--quiet"]
    assert main(args) == 0
    rec = json.loads((out / "results.json").read_text())
    (sp,) = rec["splits"]
    pool, test = set(sp["pool"]), set(sp["test"])
    assert pool and test and not pool & test  # the split never leaks test slices into training
    assert len(pool) + len(test) == 6 and sp["key"] == "r0"
    for run in rec["runs"]:
        assert set(run["slices"]) <= pool and len(run["slices"]) == run["k"]
    arms = {(r["arm"], r["regime"]) for r in rec["table"]}
    # the default regimes: every pool map, and the prior (nothing annotated but the k maps)
    assert arms == {("A", "allmaps"), ("A", "prior"), ("B", ""), ("C", "")}
    for r in rec["table"]:
        for m in ("lung_dsc", "lung_nsd", "infection_dsc", "infection_nsd"):
            assert 0.0 <= r[m] <= 1.0
    # detection: every arm has a classifier scored on the test slices + the test half of the normals
    assert set(sp["normals_pool"]) | set(sp["normals_test"]) == {f"n{k}.png" for k in range(4)}
    assert not set(sp["normals_pool"]) & set(sp["normals_test"])
    for r in rec["table"]:
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0, r
    summary = json.loads((out / "eval_cls" / "r0_C_allreal_strongaug" / "summary.json").read_text())
    assert summary["negatives"] == 2 and summary["positives"] == len(test)
    assert json.loads((out / "cls" / "r0_k1_B_real_strongaug" / "train.json").read_text())["config"]["aug"] == "strong"
    for name in ("r0_k1_A_synthetic_allmaps_strongaug", "r0_C_allreal_strongaug"):  # every arm: strong by default
        assert json.loads((out / "seg" / name / "train.json").read_text())["config"]["aug"] == "strong"
    assert {(f["k"], f["regime"]) for f in rec["fidelity"]} == {(1, "allmaps"), (1, "prior")}
    assert all(0.0 <= f["infection_dsc"] <= 1.0 for f in rec["fidelity"])
    always = json.loads((out / "conditions" / "r0_k1_prior" / "conditions.json").read_text())["always"]
    assert always == ["mediastinum", "relayout"]  # the prior's lungs: a wider mediastinum, then new lesions
    for regime in ("allmaps", "prior"):  # the lesion-density step is on by default, recorded with each set
        assert json.loads((out / "synthetic" / f"r0_k1_{regime}" / "synthesize.json").read_text())["consolidation"] == 0.5
    md = (out / "report.md").read_text()
    assert "(50% with part of the infection made dense); classifier budget: 2 steps." in md
    assert "Condition fidelity" in md
    cov = rec["coverage"]["r0_k1_allmaps"]  # every pool map behind the all-maps set, every map used
    assert cov["maps_used"] == cov["maps"] and cov["real_used"] == cov["real"] == len(pool)
    assert f"conditions: {cov['maps']} of {cov['maps']} maps used, made from {len(pool)} of {len(pool)}" in md
    # the fidelity reference trains on the test slices (no arm does) and is scored on the real pool beside
    # the synthetic sets: it never saw a map it scores
    ref = json.loads((out / "seg" / "r0_F_fidelity_reference" / "train.json").read_text())
    assert ref["train_slices"] + ref["val_slices"] == len(test) and ref["config"]["steps"] == 2
    assert not (out / "eval" / "r0_F_fidelity_reference").exists()
    f = rec["fidelity"][0]
    lesions, real = f["infection_dsc_lesions"], f["real_infection_dsc_lesions"]
    assert 0.0 <= lesions <= 1.0 and 0.0 <= real <= 1.0 and 0.0 <= f["real_lung_dsc"] <= 1.0
    ratio = f"{lesions / real:.2f}" if real > 0 else "-"
    assert (f"| 0 | 1 | {f['regime']} | {f['lung_dsc']:.3f} | {f['infection_dsc']:.3f} | {lesions:.3f} | "
            f"{f['real_lung_dsc']:.3f} | {real:.3f} | {ratio} |") in md
    assert "| k | arm |" in md and "B: k real + strong aug" in md and "Timings" in md
    assert "detection AUC" in md and "roc.png" in md
    # same-source detection: lung patches of the same test slices, every arm, its own ROC figure
    assert all(0.0 <= r["patch_auc"] <= 1.0 for r in rec["table"]), rec["table"]
    assert "Same-source detection" in md and "roc_patch.png" in md and "positive and" in rec["patch_detection"]
    assert json.loads((out / "cls_patch" / "r0_C_allreal_strongaug" / "train.json").read_text())["config"]["crop"] is False
    assert "<table" in (out / "report.html").read_text()
    assert (out / "infection_dsc.png").stat().st_size > 0
    assert {p.name for p in (out / "data" / "r0" / "test" / "images").iterdir()} == test
    # a second run reuses everything and reports the same numbers, also in a folder moved elsewhere
    first = rec["table"]
    capsys.readouterr()
    moved = tmp_path / "moved"
    out.rename(moved)
    assert main([moved.as_posix() if a == str(out) else a for a in args]) == 0
    again = json.loads((moved / "results.json").read_text())
    assert again["table"] == first
    for step in ("gan_train", "seg_train", "cls_train"):
        assert again["timings_s"].get(step, 0.0) == 0.0
    # a study reads the finished folder, writing nothing: every U-Net of the repeat on its test slices
    from studies import error_location

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["error_location", str(moved), "--sites", "--ranking", "--thresholds"])
    error_location.main()
    table = capsys.readouterr().out
    assert "| infection AUC in the lung | infection AP in the lung | DSC argmax |" in table
    for line in (x for x in table.splitlines() if x.startswith("| r0_")):  # the argmax DSC is the one evaluated
        name, *cells = [c.strip() for c in line.strip("|").split("|")]
        evaluated = json.loads((moved / "eval" / name / "summary.json").read_text())["mean"]["infection_dsc"]
        argmax = float(cells[-len(error_location.THRESHOLDS) - 3])
        assert argmax == pytest.approx(evaluated, abs=1e-3, nan_ok=True), line
        assert (cells[-2] == "nan") == ("_C_" in name), line  # C was not drawn from k slices
    nets = [d.name for d in (moved / "seg").glob("r0_*")]
    assert all((f"| {n} | {len(test)} | " in table) == ("_F_" not in n) for n in nets), table  # F saw the test
    monkeypatch.setattr(sys, "argv", ["error_location", str(moved), "--thirds"])
    error_location.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| r0_")]
    per_net = {n: sum(int(r.split(" | ")[1]) for r in rows if r.startswith(f"| {n} (")) for n in nets}
    assert all(v == (len(test) if "_F_" not in n else 0) for n, v in per_net.items()), rows  # each slice once
    from studies import gap_by_case

    rows = gap_by_case.read_cases(moved)  # every test slice once, with every evaluated arm's infection DSC
    assert sorted(r["case"] + ".png" for r in rows) == sorted(test)
    per_case = {r["case"]: r for r in rows}
    for f in (moved / "eval").glob("r0_*"):
        for line in (f / "cases.csv").read_text().splitlines()[1:]:
            case, dsc = line.split(",")[0], float(line.split(",")[3])
            assert per_case[case][gap_by_case.arm_name(f.name)] == pytest.approx(dsc, nan_ok=True)
    shares = gap_by_case.training_shares(moved)  # what C and each synthetic arm trained on
    assert len(shares["C_allreal_strongaug"]) == len(pool)
    assert len(shares["A_synthetic_allmaps_strongaug"]) == len(list((moved / "synthetic" / "r0_k1_allmaps" /
                                                                     "labels").iterdir()))
    monkeypatch.setattr(sys, "argv", ["gap_by_case", str(moved)])
    gap_by_case.main()
    assert "| A_synthetic_prior_strongaug | " in capsys.readouterr().out


def test_gap_by_case_reads_traits_and_puts_each_arms_loss_in_the_third_of_its_slices():
    from studies.gap_by_case import arm_name, gap_table, traits

    label = np.zeros((10, 10), np.uint8)
    label[1:9, 1:9] = 1
    label[2:4, 2:6] = 2  # 8 px of a 64 px lung
    grey = np.where(label == 2, 120.0, np.where(label == 1, 40.0, 200.0))
    grey[7:9, 1:9] = 60.0  # 16 of the 56 normal-lung px denser: median 40, IQR 20
    t = traits(grey, label)
    assert t["infected share"] == pytest.approx(8 / 64) and t["lesion contrast"] == pytest.approx(80.0)
    assert t["lung median"] == pytest.approx(40.0) and t["lung IQR"] == pytest.approx(20.0)
    assert arm_name("r2_k2_A_synthetic_allmaps_strongaug") == "A_synthetic_allmaps_strongaug"
    assert arm_name("r10_C_allreal_strongaug") == "C_allreal_strongaug"
    # A loses 0.3 on the little-infected slices and nothing on the heavily infected: a negative correlation
    rows = [{"exp": "e", "repeat": 0, "case": str(i), "infected share": s, "lesion contrast": 50.0 + i,
             "lung median": 40.0, "lung IQR": 20.0, "C_all": 0.7, "A_syn": 0.7 - (0.3 if s < 0.2 else 0.0)}
            for i, s in enumerate([0.05, 0.1, 0.15, 0.3, 0.4, 0.5])]
    cuts, table = gap_table(rows)
    assert cuts[0] < 0.15 < cuts[1] < 0.4
    assert table["A_syn"]["thirds"][0] == pytest.approx((0.4, 0.3))
    assert table["A_syn"]["thirds"][2][1] == pytest.approx(0.0)
    assert table["A_syn"]["rho"]["infected share"] < -0.8 and table["A_syn"]["n"] == 6


def test_error_location_counts_false_positives_inside_and_outside_the_lung():
    from studies.error_location import errors, summary

    label = np.zeros((8, 8), np.uint8)
    label[1:7, 1:7] = 1
    label[2:4, 2:4] = 2  # 4 px of infection in a 36 px lung
    pred = label.copy()
    pred[2, 2] = 1  # one missed
    pred[5, 5] = 2  # one false positive in the lung
    pred[0, 0:2] = 2  # two outside it
    assert errors(pred, label).tolist() == [3, 1, 1, 2]
    assert summary(errors(pred, label)) == pytest.approx((3 / 6, 3 / 4, 1 / 4, 2 / 4))


def test_error_location_sites_split_lung_false_positives_by_distance_grey_and_place():
    from studies.error_location import SITES, sites

    label = np.zeros((256, 256), np.uint8)
    label[20:236, 20:236] = 1  # lung rows 20-235: the dependent third from row 164; medial columns 85-170
    label[40:60, 100:120] = 2
    image = np.linspace(-1, 0, 256 * 256, dtype=np.float32).reshape(256, 256)  # grey rises down the rows
    pred = label.copy()
    pred[40:60, 121:123] = 2  # 2 px from the lesion: edge
    pred[40:60, 130] = 2  # 10 px: near
    pred[100, 100:110] = 2  # far, mid-grey, interior, medial
    pred[231:233, 100:105] = 2  # far, the brightest rows, 4-5 px from the border, dependent
    pred[0:5, 0:5] = 2  # outside the lung: not counted
    got = dict(zip(SITES, sites(pred, label, image).tolist()))
    assert got == {"edge": 40, "near": 20, "far": 20, "far dense": 10, "far hazy": 0, "far dark": 10,
                   "far pleural": 10, "far medial": 20, "far dependent": 10}


def test_error_location_splits_false_positives_outside_the_lung_by_hull_and_wall():
    from studies.error_location import OUTSIDE, outside_sites

    label = np.zeros((256, 256), np.uint8)
    label[40:200, 30:100] = 1  # two lungs; the hull spans the gap between them (the mediastinum)
    label[40:200, 156:226] = 1
    pred = label.copy()
    pred[100:110, 120:130] = 2  # between the lungs: in the hull
    pred[100:110, 23:28] = 2  # 3-7 px lateral to the left lung: along the wall
    pred[100:102, 0:5] = 2  # 25 px out: farther
    pred[60:70, 50:60] = 2  # in the lung: not counted
    got = dict(zip(OUTSIDE, outside_sites(pred, label).tolist()))
    assert got == {"outside in the hull": 100, "outside along the wall": 50, "outside farther": 10}


def test_error_location_dice_at_a_threshold_and_at_the_argmax():
    from cosingan.data.readers import Slice
    from studies.error_location import dice_at

    label = np.zeros((4, 4), np.uint8)
    label[:, :2] = 1
    label[0, 0] = 2
    logits = np.zeros((3, 4, 4), np.float32)
    logits[0] = 1.0  # background wins everywhere but at
    logits[2, 0, 0] = 2.0  # the true lesion (infection probability 0.67)
    logits[2, 0, 1] = 0.9  # and a pixel at probability 0.40 (argmax: background)
    sl = Slice(np.zeros((4, 4), np.float32), label, None, "png")
    assert dice_at([logits], [sl], None) == pytest.approx(1.0)
    assert dice_at([logits], [sl], 0.5) == pytest.approx(1.0)
    assert dice_at([logits], [sl], 0.25) == pytest.approx(2 / 3)
    assert np.isnan(dice_at([logits], [Slice(sl.image, label.clip(0, 1), None, "png")], 0.9))  # both empty


def test_each_repeat_has_its_own_split_unless_fixed(tmp_path, phantom_folder, capsys):
    """Every repeat draws its own pool / test split (seeded) and then its k slices; arm C trains once per
    split. `--split fixed` keeps one split (the seeded one of earlier versions) for every repeat."""
    base = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--repeats", "3", "--preset", "tiny",
            "--regimes", "kmaps", "--n-synth", "2", "--seg-steps", "1", "--seg-size", "32", "--cls-steps", "1",
            "--no-quality", "--quiet"]
    out = tmp_path / "per"
    assert main(base + ["--out", str(out)]) == 0
    rec = json.loads((out / "results.json").read_text())
    splits = rec["splits"]
    assert [s["key"] for s in splits] == ["r0", "r1", "r2"]
    assert len({tuple(s["test"]) for s in splits}) > 1  # three seeded splits, not one
    for r, (s, run) in enumerate(zip(splits, rec["runs"])):
        assert not set(s["pool"]) & set(s["test"]) and len(s["pool"]) + len(s["test"]) == 6
        assert set(run["slices"]) <= set(s["pool"])  # the k slices come from that repeat's pool
        for side in ("pool", "test"):
            assert {p.name for p in (out / "data" / f"r{r}" / side / "images").iterdir()} == set(s[side])
        trained = json.loads((out / "seg" / f"r{r}_C_allreal_strongaug" / "train.json").read_text())
        assert trained["train_slices"] + trained["val_slices"] == len(s["pool"])  # C: that split's pool
    assert "each repeat its own random split of the data" in (out / "report.md").read_text()
    fixed = tmp_path / "fixed"
    assert main(base + ["--out", str(fixed), "--split", "fixed"]) == 0
    rec = json.loads((fixed / "results.json").read_text())
    assert [s["key"] for s in rec["splits"]] == ["", "", ""] and len({tuple(s["test"]) for s in rec["splits"]}) == 1
    order = np.random.default_rng(0).permutation(6)  # the one seeded split of earlier versions
    assert rec["splits"][0]["test"] == [f"ph{i}.png" for i in sorted(order[:3])]
    assert "one split for every repeat (random (seed [0]))" in (fixed / "report.md").read_text()
    capsys.readouterr()
    assert main(base + ["--out", str(fixed)]) == 2  # a folder keeps its splits
    assert "another training/test split" in capsys.readouterr().err


def test_test_folder_overlapping_data_is_refused(tmp_path, phantom_folder):
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--test", str(phantom_folder),
                 "--k", "1", "--out", str(tmp_path / "e"), "--preset", "tiny", "--quiet"]) == 2


def test_a_folder_of_other_slices_is_refused_not_extended(tmp_path, phantom_folder):
    """A resumed run completes its slice folders; a run drawing other slices (another --select, say)
    into the same OUT is refused before linking, instead of adding its slices beside the old ones."""
    from cosingan.experiment.split import link_folder
    from cosingan.errors import InputError

    pairs = [(phantom_folder / "images" / f"ph{k}.png", phantom_folder / "labels" / f"ph{k}.png") for k in range(3)]
    out = tmp_path / "draw"
    link_folder(pairs[:1], out)
    assert link_folder(pairs[:2], out) == out  # interrupted and resumed: the missing links are added
    assert sorted(p.name for p in (out / "images").iterdir()) == ["ph0.png", "ph1.png"]
    with pytest.raises(InputError, match="holds ph1.png"):
        link_folder([pairs[0], pairs[2]], out)
    other = tmp_path / "copy"  # the same name from another folder is another file
    for sub in ("images", "labels"):
        (other / sub).mkdir(parents=True)
        (other / sub / "ph1.png").write_bytes((phantom_folder / sub / "ph1.png").read_bytes())
    with pytest.raises(InputError, match="holds ph1.png"):
        link_folder([pairs[0], (other / "images" / "ph1.png", other / "labels" / "ph1.png")], out)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["ph0.png", "ph1.png"]  # nothing linked


def test_a_model_trained_on_other_files_is_refused(tmp_path, phantom_folder, capsys):
    """Reuse is judged by the training files too, not only the settings: a slice edited in place after a
    run must not leave the U-Nets trained on its old pixels standing in for a new training."""
    out = tmp_path / "exp"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out), "--preset",
            "tiny", "--regimes", "kmaps", "--n-synth", "2", "--seg-steps", "2", "--seg-size", "32", "--cls-steps", "2",
            "--no-quality", "--quiet"]
    assert main(args) == 0
    assert json.loads((out / "seg" / "r0_C_allreal_strongaug" / "trained_on.json").read_text())["data"]
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("model.pt")}
    assert main(args) == 0  # the same files: every model reused
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.pt")} == stamp
    pool = json.loads((out / "results.json").read_text())["splits"][0]["pool"]
    img, _ = chest_phantom(40, seed=99)
    save_png(img, phantom_folder / "images" / pool[0])  # the user's slice, changed under the same name
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "r0_C_allreal_strongaug: was trained on other files" in err and "\n" not in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.pt")} == stamp


def test_ablation_switches_each_part_off(tmp_path, phantom_folder):
    out = tmp_path / "abl"
    gan_cfg = tmp_path / "g.json"
    gan_cfg.write_text('{"train": {"iters": 4}, "seed": 99}')
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
                 "--preset", "tiny", "--gan-config", str(gan_cfg), "--regimes", "allmaps", "--ablation", "--n-synth", "3", "--seg-steps", "1",
                 "--cls-steps", "2", "--seg-size", "32", "--no-quality", "--synth-aug", "standard", "--real-aug", "standard",
                 "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    regimes = {r["regime"] for r in rec["table"] if r["arm"] == "A"}
    assert regimes == {"allmaps", "allmaps, no two-stage", "allmaps, no mixed-rec", "allmaps, no hier-aug"}
    # --synth-aug standard: every network of arm A (ablation sets too) trains with the lighter augmentation, in
    # folders of their own (_standardaug); --real-aug standard: arm C's too
    a_sets = sorted(p.name for p in (out / "seg").iterdir() if "_A_" in p.name)
    assert len(a_sets) == 4 and all(n.endswith("_standardaug") for n in a_sets), a_sets
    assert {json.loads((out / "seg" / n / "train.json").read_text())["config"]["aug"] for n in a_sets} == {"standard"}
    c_set = json.loads((out / "seg" / "r0_C_allreal_standardaug" / "train.json").read_text())
    assert c_set["config"]["aug"] == "standard"
    assert "C on all real pool slices (standard augmentation)" in (out / "report.md").read_text()
    cfgs = {p.name.split("_no-")[-1] if "_no-" in p.name else "full": json.loads((p / "config.json").read_text())
            for p in (out / "gan").iterdir()}
    assert cfgs["full"]["model"]["two_stage"] and cfgs["full"]["train"]["mixed_rec"] and cfgs["full"]["train"]["hier_aug"]
    assert not cfgs["two-stage"]["model"]["two_stage"]
    assert not cfgs["mixed-rec"]["train"]["mixed_rec"]
    assert not cfgs["hier-aug"]["train"]["hier_aug"]
    # --gan-config overrides the preset for every generator; the seed is still the repeat's (0), not the file's
    assert {(c["train"]["iters"], c["seed"]) for c in cfgs.values()} == {(4, 0)}
    assert 'preset: tiny with {"train": {"iters": 4}, "seed": 99}' in (out / "report.md").read_text()


def test_prior_regime_mixed_arm_paired_statistics_and_quality(tmp_path, phantom_folder):
    out = tmp_path / "mix"
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
                 "--preset", "tiny", "--regimes", "prior", "kmaps", "--mixed", "--repeats", "2", "--n-synth", "4",
                 "--seg-steps", "1", "--seg-size", "32", "--cls-steps", "2", "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert {(r["arm"], r["regime"]) for r in rec["table"]} == {
        ("A", "prior"), ("A", "kmaps"), ("M", "prior"), ("B", ""), ("C", "")}
    # the prior regime's conditions are new lesion layouts on the k maps' lungs
    masks = (out / "conditions" / "r0_k1_prior" / "masks.csv").read_text()
    assert "relayout" in masks
    # arm M trains on the synthetic set plus the k real slices repeated to a quarter of the pairs
    real = list((out / "data" / "r0_k1_x1" / "images").iterdir())
    assert len(real) == 1 and real[0].resolve().parent.parent.name == phantom_folder.name
    train = json.loads((out / "seg" / "r0_k1_M_mixed_prior" / "train.json").read_text())
    assert train["config"]["aug"] == "strong" and train["train_slices"] + train["val_slices"] == 4 + 1
    # paired A - B per repeat, and its interval over the two repeats
    by = {(r["repeat"], r["arm"], r["regime"]): r for r in rec["results"]}
    row = next(p for p in rec["paired"] if (p["arm"], p["regime"]) == ("A", "prior"))
    d = [by[(r, "A", "prior")]["infection_dsc"] - by[(r, "B", "")]["infection_dsc"] for r in (0, 1)]
    assert row["n"] == 2 and abs(row["infection_dsc_diff"] - sum(d) / 2) < 1e-12
    lo, hi = row["infection_dsc_ci"]
    assert lo <= row["infection_dsc_diff"] <= hi
    assert {(q["repeat"], q["slice"]) for q in rec["quality"]} == {(x["repeat"], x["slices"][0]) for x in rec["runs"]}
    assert all(0.0 <= q["realism_auc"] <= 1.0 and q["diversity_lung"] >= 0 for q in rec["quality"])
    md = (out / "report.md").read_text()
    assert "Paired differences" in md and "Generator quality" in md and "M: synthetic + k real" in md
    # the headline gives the paired interval beside the closure
    assert f"infection DSC arm - B {row['infection_dsc_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]" in md
    def mark(path, value, key=None, field=None):
        rec = json.loads(path.read_text())
        field = field or next(iter(rec["result"]))
        path.write_text(json.dumps({"key": key or rec["key"], "result": {**rec["result"], field: value}}))
        return field
    # generator quality is stored with the hash of the generator, the reference U-Net's weights, the
    # held-out slices and the budgets: a stale key (e.g. another reference) is measured again
    cache = sorted((out / "quality").glob("*.json"))[0]
    stored = json.loads(cache.read_text())
    assert stored["result"]["run"].endswith(cache.stem)
    mark(cache, -1.0, key="stale", field="fidelity_infection_dsc")
    kept = sorted((out / "quality").glob("*.json"))[1]
    kept_rec = json.loads(kept.read_text())
    mark(kept, -2.0, field="fidelity_infection_dsc")
    # scores are stored with the hash of what made them: reused for the same model and test data (a marked
    # value comes back), computed again when the hash differs (a stale value does not)
    seg_b, seg_c = out / "eval" / "r0_k1_B_real_strongaug" / "scored.json", out / "eval" / "r0_C_allreal_strongaug" / "scored.json"
    fid = out / "fidelity" / "r0_k1_A_synthetic_prior_strongaug.json"
    m_b, m_c, m_f = mark(seg_b, 0.123), mark(seg_c, 0.456, key="stale"), mark(fid, 0.789, key="stale")
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
                 "--preset", "tiny", "--regimes", "prior", "kmaps", "--mixed", "--repeats", "2", "--n-synth", "4",
                 "--seg-steps", "1", "--seg-size", "32", "--cls-steps", "2", "--quiet"]) == 0
    assert json.loads(cache.read_text()) == stored
    again = json.loads((out / "results.json").read_text())
    assert [q["fidelity_infection_dsc"] for q in again["quality"] if q["run"] == kept_rec["result"]["run"]] == [-2.0]
    by = {(r["repeat"], r["arm"], r["regime"]): r for r in again["results"]}
    assert by[(0, "B", "")][m_b] == 0.123
    assert by[(0, "C", "")][m_c] == rec_by(rec)[(0, "C", "")][m_c] != 0.456
    f0 = next(f for f in again["fidelity"] if (f["repeat"], f["regime"]) == (0, "prior"))
    assert f0[m_f] != 0.789 and json.loads(fid.read_text())["key"] != "stale"


def rec_by(rec):
    return {(r["repeat"], r["arm"], r["regime"]): r for r in rec["results"]}


def test_stored_scores_are_keyed_by_every_pixel():
    from cosingan.experiment.tasks import _digest

    a = np.zeros((64, 64), np.float32)
    b = a.copy()
    b[32, 32] = 1e-3  # an array's text form would hide this
    assert _digest([(a, None)], 1.0) == _digest([(a.copy(), None)], 1.0)
    assert _digest([(a, None)], 1.0) != _digest([(b, None)], 1.0)
    assert _digest([(a, (1.0, 1.0))], 1.0) != _digest([(a, None)], 1.0) != _digest([(a, None)], 2.0)


def test_paired_interval_matches_a_t_interval():
    from scipy import stats

    from cosingan.experiment.table import paired

    results = []
    for r, (a, b, c) in enumerate([(0.5, 0.4, 0.7), (0.6, 0.45, 0.72), (0.55, 0.5, 0.69)]):
        results += [{"repeat": r, "k": 2, "arm": "A", "regime": "kmaps", "infection_dsc": a},
                    {"repeat": r, "k": 2, "arm": "B", "regime": "", "infection_dsc": b},
                    {"repeat": r, "k": None, "arm": "C", "regime": "", "infection_dsc": c}]
    (row,) = paired(results)
    d = [0.1, 0.15, 0.05]
    half = stats.t.ppf(0.975, 2) * stats.tstd(d) / 3 ** 0.5
    assert abs(row["infection_dsc_diff"] - 0.1) < 1e-12
    assert abs(row["infection_dsc_ci"][0] - (0.1 - half)) < 1e-9 and abs(row["infection_dsc_ci"][1] - (0.1 + half)) < 1e-9
    assert abs(row["infection_dsc_closure"] - 0.1 / ((0.7 + 0.72 + 0.69) / 3 - 0.45)) < 1e-9
    from cosingan.experiment.table import table

    a_row = next(t for t in table(results) if t["arm"] == "A")  # mean ± the sample sd over repeats
    assert abs(a_row["infection_dsc_std"] - stats.tstd([0.5, 0.6, 0.55])) < 1e-12


def test_area_selection_prefers_large_lungs_with_some_infection(tmp_path):
    from cosingan.data.files import save_png
    from cosingan.data.layout import list_slice_folder
    from cosingan.experiment.split import teaching_candidates

    def write(name, lung_rows, inf_rows):
        lab = np.zeros((40, 40), np.uint8)
        lab[:lung_rows, 5:35] = 1
        lab[:inf_rows, 5:35] = 2
        save_png(np.zeros((40, 40), np.float32), tmp_path / "images" / f"{name}.png")
        save_png(lab, tmp_path / "labels" / f"{name}.png")

    write("basal", 8, 6)  # small lungs, mostly infected (like medseg_054)
    write("clean", 30, 0)  # no infection
    write("heavy", 30, 20)  # two thirds infected
    for i in range(4):
        write(f"good{i}", 28 + i, 4)  # large lungs, 13-15 % infected
    pool = list_slice_folder(tmp_path)
    assert {pool[i][0].stem for i in teaching_candidates(pool, 2)} == {f"good{i}" for i in range(4)}


def check_html_report(path):
    """Every image of report.html is embedded and decodes; every table row has one cell per heading."""
    import base64
    import io
    from html.parser import HTMLParser

    from PIL import Image

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.tables, self.row = [], [], None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "img":
                self.images.append(a)
            elif tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.row = 0
            elif tag in ("td", "th"):
                self.row += 1

        def handle_endtag(self, tag):
            if tag == "tr":
                self.tables[-1].append(self.row)

    r = Reader()
    r.feed(path.read_text())
    assert r.images and r.tables
    for img in r.images:
        assert img["src"].startswith("data:image/png;base64,") and img.get("alt")
        Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).load()
    for rows in r.tables:
        assert len(rows) >= 2 and len(set(rows)) == 1, rows
    return r


def test_html_report_is_self_contained_and_complete(tmp_path, phantom_folder, normals_folder):
    out = tmp_path / "rep"
    assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out),
                 "--normals", str(normals_folder), "--preset", "tiny", "--regimes", "kmaps", "--n-synth", "4",
                 "--seg-steps", "1", "--seg-size", "32", "--cls-steps", "2", "--quiet"]) == 0
    r = check_html_report(out / "report.html")
    alts = " ".join(i["alt"] for i in r.images)
    assert "ROC" in alts and "Bar charts" in alts and "Grid of real source" in alts and "overlays" in alts
    page = (out / "report.html").read_text()
    for title in ("What was compared", "Headline", "Results", "Paired differences", "Detection",
                  "Condition fidelity", "Generator quality", "Samples", "Per case", "Metric definitions",
                  "Settings, timings, versions"):
        assert f"<h2>{title}</h2>" in page
    assert "gap closure" in page and "surface-distance" in page and "torch" in page


def test_same_seed_same_table(tmp_path, phantom_folder, normals_folder):
    """Two runs into new folders with the same settings give the same table, detection included (the
    U-Nets' strong augmentation once made arm B differ from run to run)."""
    tables = []
    for name in ("a", "b"):
        assert main(["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(tmp_path / name),
                     "--normals", str(normals_folder), "--preset", "tiny", "--regimes", "kmaps", "--n-synth", "4",
                     "--seg-steps", "3", "--seg-size", "32", "--cls-steps", "2", "--no-quality", "--quiet"]) == 0
        tables.append(json.loads((tmp_path / name / "results.json").read_text())["table"])
    assert tables[0] == tables[1]


def test_shared_few_shot_generator_arm(tmp_path, phantom_folder):
    """--shared-generator: one generator trained on the k slices together; its sets and models are named
    apart from the per-slice ones, so both can live in one experiment folder."""
    out = tmp_path / "shared"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "2", "--out", str(out), "--preset",
            "tiny", "--regimes", "allmaps", "--mixed", "--n-synth", "4", "--seg-steps", "1", "--seg-size", "32",
            "--cls-steps", "2", "--quiet"]
    assert main(args + ["--shared-generator"]) == 0
    rec = json.loads((out / "results.json").read_text())
    chosen = rec["runs"][0]["slices"]
    runs = [p.name for p in (out / "gan").iterdir()]
    assert runs == ["+".join(n.removesuffix(".png") for n in chosen) + "_s0"]
    assert json.loads((out / "synthetic" / "r0_k2_allmaps_shared" / "synthesize.json").read_text())["runs"] == [
        str(out / "gan" / runs[0])]
    assert {p.name for p in (out / "seg").iterdir()} >= {"r0_k2_A_synthetic_allmaps_shared_strongaug",
                                                     "r0_k2_M_mixed_allmaps_shared"}
    assert [q["slice"] for q in rec["quality"]] == ["+".join(chosen)]
    assert "one few-shot CoSinGAN shared by the k real slices" in (out / "report.md").read_text()
    assert main(args) == 0  # the per-slice generators beside it: new runs, sets and models, nothing reused
    assert len(list((out / "gan").iterdir())) == 3 and (out / "seg" / "r0_k2_A_synthetic_allmaps_strongaug").is_dir()


def test_several_generators_per_slice_each_with_its_own_seed(tmp_path, phantom_folder, capsys):
    """--gan-seeds 2: two generators per chosen slice, the first named and seeded as ever, the second with
    its own seed; the synthetic set spreads over all of them and quality measures each."""
    from cosingan.gan.checkpoint import load_checkpoint

    out = tmp_path / "seeds"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out), "--preset",
            "tiny", "--regimes", "allmaps", "--n-synth", "4", "--seg-steps", "1", "--seg-size", "32", "--cls-steps",
            "2", "--quiet"]
    assert main(args + ["--gan-seeds", "2"]) == 0
    rec = json.loads((out / "results.json").read_text())
    stem = rec["runs"][0]["slices"][0].removesuffix(".png")
    runs = sorted(p.name for p in (out / "gan").iterdir())
    assert runs == [f"{stem}_s0", f"{stem}_s0_g1"]
    seeds = [load_checkpoint(out / "gan" / r, map_location="cpu")["config"]["seed"] for r in runs]
    assert seeds[0] == 0 and seeds[1] != 0
    rows = list(csv.DictReader(open(out / "synthetic" / "r0_k1_allmaps" / "manifest.csv")))
    assert {Path(r["run"]).name for r in rows} == set(runs)
    assert len(rec["quality"]) == 2
    capsys.readouterr()
    assert main(args) == 2  # one generator per slice in this folder: its sets were made from two
    assert "made with other settings" in capsys.readouterr().err


def test_fidelity_table_without_the_maps_with_infection_apart(tmp_path):
    """A set of infection-free maps has no infection measure (null in JSON), nor a pool without infection:
    both show '-' rather than failing or inventing a ratio."""
    from cosingan.experiment.report import _fidelity

    real = {"real_lung_dsc": 0.96, "real_infection_dsc": 0.7, "real_infection_dsc_lesions": 0.7}
    record = {"fidelity": [{"repeat": 0, "k": 1, "regime": "allmaps", "lung_dsc": 0.97, "infection_dsc": 0.5,
                            "infection_dsc_lesions": 0.5, **real, "real_infection_dsc_lesions": None},
                           {"repeat": 0, "k": 1, "regime": "kmaps", "lung_dsc": 0.97, "infection_dsc": 0.5,
                            "infection_dsc_lesions": None, **real},
                           {"repeat": 0, "k": 1, "regime": "prior", "lung_dsc": 0.97, "infection_dsc": 0.5,
                            "infection_dsc_lesions": 0.56, **real}]}
    rows = _fidelity(tmp_path, record).tables[0].rows
    assert [r[5] for r in rows] == ["0.500", "-", "0.560"] and [r[-1] for r in rows] == ["-", "-", "0.80"]


def test_unlabelled_regime_takes_lungs_from_unannotated_slices(tmp_path, phantom_folder, capsys):
    """--regimes unlabelled: the lungs of unannotated whole-body slices, found automatically, with lesion
    layouts imitating the k maps; refused without --unlabelled (and --unlabelled without the regime)."""
    import csv

    from test_conditions import _whole_body

    unl = tmp_path / "unannotated"
    for k in range(3):
        save_png(_whole_body(*chest_phantom(48, seed=70 + k))[0], unl / f"u{k}.png")
    out = tmp_path / "exp"
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--out", str(out), "--preset",
            "tiny", "--regimes", "unlabelled", "--n-synth", "6", "--seg-steps", "1", "--seg-size", "32",
            "--cls-steps", "2", "--no-quality", "--quiet"]
    assert main(args) == 2 and "needs --unlabelled DIR" in capsys.readouterr().err
    kmaps = [("kmaps" if a == "unlabelled" else a) for a in args]
    assert main(kmaps + ["--unlabelled", str(unl)]) == 2
    assert "only by the unlabelled regime" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--unlabelled", str(unl)]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert ("A", "unlabelled") in {(r["arm"], r["regime"]) for r in rec["table"]}
    assert rec["unlabelled"] == {"folder": str(unl), "slices": 3}
    masks = out / "conditions" / "r0_k1_unlabelled"
    chosen = rec["runs"][0]["slices"][0].removesuffix(".png")
    assert json.loads((masks / "conditions.json").read_text())["unlabelled"] == ["u0", "u1", "u2"]
    with open(masks / "masks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows} <= {str(unl / f"u{k}.png") for k in range(3)}
    assert all(r["name"].split("_m")[0].endswith("_" + chosen) for r in rows)  # the k map is the template
    assert "lungs found automatically in the --unlabelled slices" in (out / "report.md").read_text()


def test_seg_checkpoint_last_trains_every_arm_on_all_its_slices_and_keeps_the_last_step(tmp_path, phantom_folder,
                                                                                     capsys):
    """By default no arm holds slices out to pick a step (`--seg-checkpoint best`: an arm of >= 5 slices
    does), so every arm follows B's rule, and every U-Net's learning rate decays (poly); a folder trained
    under another rule or schedule is refused, not reused, and so is a model recorded before the schedule
    existed (folders of earlier versions are not guessed at)."""
    args = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--preset", "tiny", "--regimes",
            "kmaps", "--n-synth", "6", "--seg-steps", "2", "--seg-size", "32", "--cls-steps", "2", "--no-quality",
            "--quiet"]
    best, last = tmp_path / "best", tmp_path / "last"
    before = ["--seg-checkpoint", "best", "--seg-schedule", "constant"]  # this version's earlier defaults
    assert main(args + ["--out", str(best), *before]) == 0
    assert main(args + ["--out", str(last)]) == 0
    a = "r0_k1_A_synthetic_kmaps_strongaug"
    held = json.loads((best / "seg" / a / "train.json").read_text())
    assert (held["train_slices"], held["val_slices"]) == (5, 1)
    every = json.loads((last / "seg" / a / "train.json").read_text())
    assert (every["train_slices"], every["val_slices"], every["best_step"]) == (6, 0, 2)
    assert (held["config"]["schedule"], every["config"]["schedule"]) == ("constant", "poly")
    assert "decayed to 0 (poly); each keeps its last step" in (last / "report.md").read_text()
    assert "constant learning rate; each keeps the step that scores best on 10 %" in (best / "report.md").read_text()
    capsys.readouterr()
    assert main(args + ["--out", str(last), "--seg-checkpoint", "best"]) == 2
    assert "trained with other settings (val_fraction: 0.0 -> 0.1)" in capsys.readouterr().err
    assert main(args + ["--out", str(last), "--seg-schedule", "constant"]) == 2
    assert "trained with other settings (schedule: poly -> constant)" in capsys.readouterr().err
    for p in (best / "seg").glob("*/train.json"):  # as a model trained before the setting existed records it
        rec = json.loads(p.read_text())
        del rec["config"]["schedule"]
        p.write_text(json.dumps(rec))
    stamp = {p: p.stat().st_mtime_ns for p in best.rglob("model.pt")}
    capsys.readouterr()
    assert main(args + ["--out", str(best), *before]) == 2  # an earlier version's model is refused, not guessed at
    assert "trained with other settings (schedule: None -> constant); use another --out" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in best.rglob("model.pt")} == stamp


def test_experiment_config_refuses_unknown_unet_rules():
    """A config built in Python (not through the CLI's choices) is checked where it is made."""
    from cosingan.errors import InputError
    from cosingan.experiment.config import ExperimentConfig

    with pytest.raises(InputError, match="--seg-schedule must be one of constant, poly, got 'cosine'"):
        ExperimentConfig(seg_schedule="cosine")
    with pytest.raises(InputError, match="--seg-checkpoint must be one of best, last, got 'first'"):
        ExperimentConfig(seg_checkpoint="first")
    assert ExperimentConfig(seg_schedule="constant", seg_checkpoint="best").seg_val_fraction == 0.1


def test_ray_backend_gives_the_serial_results(tmp_path, phantom_folder):
    """--backend ray trains every generator, then every network, as Ray tasks on a local cluster; the same
    seeds give the same weights and the same table as the serial run (both with one thread per unit)."""
    pytest.importorskip("ray", reason="the Ray backend is an optional extra (pip install 'cosingan[ray]')")
    import torch

    base = ["experiment", "few-shot", "--data", str(phantom_folder), "--k", "1", "--repeats", "2", "--preset", "tiny",
            "--mixed", "--n-synth", "4", "--seg-steps", "2", "--seg-size", "32", "--cls-steps", "2", "--quiet"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray unit runs (--threads 1): the same float arithmetic
    try:
        assert main(base + ["--out", str(tmp_path / "serial")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main(base + ["--out", str(tmp_path / "ray"), "--backend", "ray", "--workers", "2"]) == 0
    serial, ray = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "ray"))
    assert ray["table"] == serial["table"] and ray["fidelity"] == serial["fidelity"]
    assert ray["timings_s"]["units on ray"] > 0 and "seg_train" not in ray["timings_s"]
    models = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial" / "seg").rglob("model.pt"))
    assert len(models) == 2 * 6  # C, F and per draw A (2 regimes), B, M
    for rel in models:
        a, b = (torch.load(tmp_path / d / rel, weights_only=True)["state"] for d in ("serial", "ray"))
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    for p in (tmp_path / "ray" / "seg").iterdir():  # the experiment's own record of the data stays beside the model
        assert (p / "trained_on.json").exists() and (p / "train.json").exists()


def test_error_location_ranking_scores_the_order_of_infection_above_healthy_lung():
    from studies.error_location import ranking

    target = np.array([1, 1, 0, 0, 0])
    assert ranking(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), target) == pytest.approx((1.0, 1.0))
    # one healthy pixel above one of the two infected: 5 of 6 pairs in order; precision 1 then 2/3
    assert ranking(np.array([0.9, 0.5, 0.6, 0.2, 0.1]), target) == pytest.approx((5 / 6, (1 + 2 / 3) / 2))
    assert ranking(np.array([0.5, 0.5, 0.5, 0.5, 0.5]), target)[0] == pytest.approx(0.5)  # ties: chance
    assert np.isnan(ranking(np.ones(3), np.zeros(3))[0])


def test_infection_probability_is_the_softmax_whose_argmax_is_the_prediction():
    from cosingan.data.readers import Slice
    from cosingan.downstream import seg

    img, lab = chest_phantom(40, seed=3)
    sl = Slice(img, lab, None, "png")
    net = seg.make_net(seg.SegConfig(size=32, channels=(4, 8, 16)))
    logits = seg.logits_at_slice_size(net, sl, 32)
    prob = seg.infection_probability(logits)
    assert prob.shape == lab.shape and np.all((prob >= 0) & (prob <= 1))
    assert np.array_equal(seg.predict(net, sl, 32), logits.argmax(0))
    assert np.allclose(prob, np.exp(logits[2]) / np.exp(logits).sum(0), atol=1e-6)
