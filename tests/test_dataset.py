"""cosingan masks / synthesize / nnU-Net export, end to end on tiny runs."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from cosingan.cli import main
from cosingan.synth.dataset import Synthesizer
from cosingan.synth.density import tissue_level
from cosingan.synth.nnunet import verify_nnunet
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for k in range(2):
        img, lab = chest_phantom(48, seed=10 + k)
        save_png(img, root / "data" / "images" / f"p{k}.png")
        save_png(lab, root / "data" / "labels" / f"p{k}.png")
        run = root / f"run{k}"
        assert main(["train", "--image", str(root / "data" / "images" / f"p{k}.png"), "--label",
                     str(root / "data" / "labels" / f"p{k}.png"), "--out", str(run), "--preset", "tiny",
                     "--seed", str(k), "--quiet"]) == 0
        runs.append(str(run))
    return root, runs


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_masks_command_writes_valid_maps_and_counts(two_runs, tmp_path, capsys):
    root, _ = two_runs
    out = tmp_path / "masks"
    assert main(["masks", "--data", str(root / "data"), "--out", str(out), "--n", "12", "--negative-share", "0.25",
                 "--quiet"]) == 0
    msg = capsys.readouterr().out
    assert "made" in msg and "rejected attempts" in msg
    rows = _rows(out / "masks.csv")
    labels = sorted((out / "labels").glob("*.png"))
    assert len(rows) == len(labels) >= 10
    for r in rows:
        lab = np.asarray(Image.open(out / "labels" / f"{r['name']}.png"))
        body = np.asarray(Image.open(out / "bodies" / f"{r['name']}.png")) > 0
        assert set(np.unique(lab)) <= {0, 1, 2} and (lab > 0).any()
        assert body[lab > 0].all()
        if r["edits"].endswith("negative"):
            assert not (lab == 2).any()
    assert sum(r["edits"].endswith("negative") for r in rows) == 3


def test_synthesize_png_manifest_regenerates_and_resumes(two_runs, tmp_path, capsys):
    root, runs = two_runs
    out = tmp_path / "syn"
    args = ["synthesize", "--runs", *runs, "--n", "6", "--out", str(out), "--conditions", str(root / "data"),
            "--edits", "deform,move", "--negative-share", "0.3", "--seed", "4", "--quiet"]
    assert main(args) == 0
    rows = _rows(out / "manifest.csv")
    assert len(rows) == 6 and {r["run"] for r in rows} == set(runs)
    for r in rows:
        lab = np.asarray(Image.open(out / "labels" / f"{r['name']}.png"))
        img = np.asarray(Image.open(out / "images" / f"{r['name']}.png"))
        assert img.shape == lab.shape and set(np.unique(lab)) <= {0, 1, 2}
        if r["negative"] == "1":
            assert not (lab == 2).any()
    grid = np.asarray(Image.open(out / "grid.png"))  # real source | condition | synthetic, 2 pairs a row
    assert grid.shape[1] == 2 + 6 * (32 + 2) and grid.shape[0] == 2 + 3 * (32 + 2)
    # a manifest row regenerates its pair byte for byte
    syn = Synthesizer(runs, str(root / "data"), ["deform", "move"], 0.3, 4)
    img, lab, _ = syn.make(rows[3])
    again = tmp_path / "again.png"
    save_png(img, again)
    assert again.read_bytes() == (out / "images" / f"{rows[3]['name']}.png").read_bytes()
    # resume: delete one pair and truncate another; a re-run remakes just those, identically
    before = (out / "images" / "syn_00002.png").read_bytes()
    (out / "images" / "syn_00002.png").unlink()
    (out / "labels" / "syn_00004.png").write_bytes(b"")
    capsys.readouterr()
    assert main(args) == 0
    assert "2 new pairs, 4 kept" in capsys.readouterr().out
    assert (out / "images" / "syn_00002.png").read_bytes() == before
    # other settings into the same folder are refused
    assert main(args[:-3] + ["--seed", "5", "--quiet"]) == 2


def test_every_condition_map_and_source_is_used_by_every_generator(two_runs, tmp_path, capsys):
    """k generators and n maps: every map is used as evenly as n allows and every generator sees maps of
    every real source (it once used only the first n / k maps in name order: one source's maps alone)."""
    root, runs = two_runs
    data = tmp_path / "three"
    for k in range(3):
        img, lab = chest_phantom(48, seed=30 + k)
        save_png(img, data / "images" / f"s{k}.png")
        save_png(lab, data / "labels" / f"s{k}.png")
    masks = tmp_path / "masks"
    assert main(["masks", "--data", str(data), "--out", str(masks), "--n", "12", "--edits", "deform", "--quiet"]) == 0
    syn = Synthesizer(runs, str(masks), [], 0.0, 0)
    given = {s.origin: s.real for s in syn.shared}
    assert len(given) == 12 and len(set(given.values())) == 3
    plans = [syn.plan(i) for i in range(12)]
    assert sorted(p["condition"] for p in plans) == sorted(given)  # n = maps: each map once
    for run in runs:  # each generator renders maps of every source
        assert {given[p["condition"]] for p in plans if p["run"] == run} == set(given.values())
    twice = [syn.plan(i) for i in range(30)]  # n = 2.5 x maps: each map 2 or 3 times, on both generators
    counts = {m: sum(p["condition"] == m for p in twice) for m in given}
    assert set(counts.values()) == {2, 3}
    assert {(p["condition"], p["run"]) for p in twice} >= {(m, r) for m in given for r in runs}
    assert syn.coverage(6) == {"maps": 12, "maps_used": 6, "real": 3, "real_used": 3,
                               "real_per_run": {runs[0]: 3, runs[1]: 3}}
    capsys.readouterr()
    assert main(["synthesize", "--runs", *runs, "--n", "12", "--out", str(tmp_path / "syn"), "--conditions",
                 str(masks), "--quiet"]) == 0
    assert ("conditions: 12 of 12 maps used, made from 3 of 3 real maps (each generator 3)"
            in capsys.readouterr().out)


def test_grid_shows_the_unannotated_slice_behind_a_condition_framed_as_the_condition(two_runs, tmp_path):
    from test_conditions import _whole_body

    root, runs = two_runs
    for k in range(2):  # unannotated whole-body slices: the conditions' lungs come from them
        save_png(_whole_body(*chest_phantom(48, seed=80 + k))[0], tmp_path / "unlabelled" / f"u{k}.png")
    masks, out = tmp_path / "m", tmp_path / "syn"
    assert main(["masks", "--data", str(root / "data"), "--lungs-from", str(tmp_path / "unlabelled"), "--out",
                 str(masks), "--n", "4", "--edits", "flip", "--quiet"]) == 0
    assert main(["synthesize", "--runs", *runs, "--n", "2", "--out", str(out), "--conditions", str(masks),
                 "--quiet"]) == 0
    grid = np.asarray(Image.open(out / "grid.png")).astype(int)
    h, w = grid.shape[0] - 4, (grid.shape[1] - 2) // 6 - 2  # one row of 6 tiles, 2 px apart
    for c in (0, 3):  # each pair's first tile: the real slice, not a blank one
        source = grid[2:2 + h, 2 + (w + 2) * c:2 + (w + 2) * c + w]
        assert source.std() > 20
        # framed as the condition (whose template, a phantom, has its chest wall at the frame's sides),
        # not the whole slice with air around the body (6 px of air each side at mid-height)
        body = np.nonzero((source[h // 2 - 3:h // 2 + 4] > 150).any(0))[0]
        assert body[0] <= 3 and body[-1] >= w - 4, (body[0], body[-1], w)


def test_synthesize_with_consolidation_changes_only_infection_and_refuses_other_settings(two_runs, tmp_path, capsys):
    root, runs = two_runs
    outs = {}
    for c in ("0", "1"):
        out = tmp_path / f"syn{c}"
        assert main(["synthesize", "--runs", *runs, "--n", "4", "--out", str(out), "--consolidation", c,
                     "--seed", "1", "--quiet"]) == 0
        outs[c] = out
    dense_seen = infected = 0
    for r in _rows(outs["1"] / "manifest.csv"):
        plain = np.asarray(Image.open(outs["0"] / "images" / f"{r['name']}.png")).astype(int)
        dense = np.asarray(Image.open(outs["1"] / "images" / f"{r['name']}.png")).astype(int)
        label = np.asarray(Image.open(outs["1"] / "labels" / f"{r['name']}.png"))
        assert np.array_equal(label, np.asarray(Image.open(outs["0"] / "labels" / f"{r['name']}.png")))
        assert np.array_equal(plain[label != 2], dense[label != 2])  # only infection changes
        if (label == 2).any():  # every pair with infection got a patch moved toward soft tissue (--consolidation 1)
            infected += 1
            tissue = (tissue_level(plain / 127.5 - 1, label) + 1) * 127.5
            inf = label == 2
            dense_seen += np.abs(dense[inf] - tissue).mean() < np.abs(plain[inf] - tissue).mean()
    assert infected >= 2 and dense_seen == infected
    # the same folder with another density is refused, untouched
    before = (outs["1"] / "images" / "syn_00000.png").read_bytes()
    capsys.readouterr()
    assert main(["synthesize", "--runs", *runs, "--n", "4", "--out", str(outs["1"]), "--consolidation", "0.5",
                 "--seed", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "synthesize.json" in err and len(err.strip().splitlines()) == 1, err
    assert (outs["1"] / "images" / "syn_00000.png").read_bytes() == before


def test_synthesized_set_moved_with_its_runs_resumes_without_remaking(two_runs, tmp_path, capsys):
    """An experiment folder holds generators, conditions and sets together: copied or moved elsewhere,
    its sets still match their records (paths compare as absolute or relative to the set)."""
    import shutil

    root, runs = two_runs
    a = tmp_path / "a"
    for k, run in enumerate(runs):
        shutil.copytree(run, a / "gan" / f"run{k}")
    shutil.copytree(root / "data", a / "cond")
    args = lambda top: ["synthesize", "--runs", str(top / "gan" / "run0"), str(top / "gan" / "run1"),  # noqa: E731
                        "--n", "4", "--conditions", str(top / "cond"), "--edits", "deform", "--seed", "2",
                        "--out", str(top / "syn"), "--quiet"]
    assert main(args(a)) == 0
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(a)
    capsys.readouterr()
    assert main(args(b)) == 0
    assert "0 new pairs, 4 kept" in capsys.readouterr().out
    rows = _rows(b / "syn" / "manifest.csv")  # the records now name the moved generators and maps
    assert {r["run"] for r in rows} == {str(b / "gan" / "run0"), str(b / "gan" / "run1")}
    assert all(r["condition"].startswith(str(b / "cond")) for r in rows)
    # the set moved alone, its generators and maps where they were: it matches them too
    (b / "syn").rename(tmp_path / "syn")
    capsys.readouterr()
    assert main(args(b)[:-3] + ["--out", str(tmp_path / "syn"), "--quiet"]) == 0
    assert "0 new pairs, 4 kept" in capsys.readouterr().out
    # other generators (copies elsewhere) make another set
    shutil.copytree(b / "gan", tmp_path / "other")
    assert main(args(b)[:2] + [str(tmp_path / "other" / "run0"), str(tmp_path / "other" / "run1")] + args(b)[4:-3]
                + ["--out", str(tmp_path / "syn"), "--quiet"]) == 2


def test_synthesize_nnunet_export_passes_integrity_checks(two_runs, tmp_path):
    _, runs = two_runs
    out = tmp_path / "Dataset501_CoSinGAN"
    assert main(["synthesize", "--runs", *runs, "--n", "4", "--out", str(out), "--format", "nnunet", "--quiet"]) == 0
    assert verify_nnunet(out) == []
    import json

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["labels"] == {"background": 0, "lung": 1, "infection": 2}
    assert meta["numTraining"] == 4 and meta["file_ending"] == ".nii.gz"
    img = nib.load(out / "imagesTr" / "syn_00000_0000.nii.gz")
    lab = nib.load(out / "labelsTr" / "syn_00000.nii.gz")
    assert img.shape == lab.shape and np.allclose(img.affine, lab.affine)
    assert np.allclose(img.header.get_zooms()[:2], (1.0, 1.0))  # spacing unknown for PNG input: 1 mm
    # the checker catches a broken label
    bad = np.asarray(lab.dataobj).copy()
    bad[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(bad, lab.affine), out / "labelsTr" / "syn_00000.nii.gz")
    assert any("unexpected label values" in p for p in verify_nnunet(out))
    assert main(["synthesize", "--runs", *runs, "--n", "2", "--out", str(tmp_path / "Dataset005_X"),
                 "--format", "nnunet", "--quiet"]) == 2  # reserved ID


def test_same_seed_gives_byte_identical_masks_and_datasets(two_runs, tmp_path):
    root, runs = two_runs
    outs = []
    for k in range(2):
        m, syn = tmp_path / f"m{k}", tmp_path / f"syn{k}"
        assert main(["masks", "--data", str(root / "data"), "--out", str(m), "--n", "4", "--negative-share", "0.25",
                     "--seed", "2", "--quiet"]) == 0
        assert main(["synthesize", "--runs", *runs, "--n", "4", "--out", str(syn), "--conditions", str(m),
                     "--seed", "2", "--quiet"]) == 0
        outs.append((m, syn))
    for a, b in zip(*outs):
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        for f in files:
            if f.suffix == ".png":
                assert (a / f).read_bytes() == (b / f).read_bytes(), f
            elif f.suffix == ".csv":  # the same rows, up to the folder names (m0 vs m1)
                ta = (a / f).read_text().replace(str(outs[0][0]), "M")
                assert ta == (b / f).read_text().replace(str(outs[1][0]), "M"), f


def test_pairs_made_in_batches_are_the_pairs_made_one_at_a_time(two_runs, tmp_path, monkeypatch):
    from cosingan.synth import dataset

    root, runs = two_runs
    cond = tmp_path / "cond"  # maps of two shapes: each generator batches its maps of one shape
    for k, cut in enumerate((0, 8)):
        img, lab = chest_phantom(48, seed=20 + k)
        save_png(img[:, cut // 2: 48 - cut // 2], cond / "images" / f"c{k}.png")
        save_png(lab[:, cut // 2: 48 - cut // 2], cond / "labels" / f"c{k}.png")

    def made(out):
        assert main(["synthesize", "--runs", *runs, "--n", "10", "--out", str(out), "--conditions", str(cond),
                     "--edits", "deform", "--seed", "2", "--quiet"]) == 0
        return {p.relative_to(out).as_posix(): np.asarray(Image.open(p), dtype=int) for p in sorted(out.rglob("*.png"))}

    batched = made(tmp_path / "batched")
    monkeypatch.setattr(dataset, "CHUNK", 1)
    single = made(tmp_path / "single")
    shapes = {a.shape for n, a in single.items() if n.startswith("images/")}
    assert len(shapes) == 2 and len(batched) == 21  # 10 images, 10 labels, the grid
    assert batched.keys() == single.keys()
    for n, a in batched.items():  # the same maps; images to float rounding (a pixel on an edge: one grey level)
        assert np.array_equal(a, single[n]) if n.startswith("labels/") else np.abs(a - single[n]).max() <= 1


def test_bf16_sets_record_their_precision_and_do_not_resume_an_fp32_set(two_runs, tmp_path, capsys):
    root, runs = two_runs
    args = ["synthesize", "--runs", *runs, "--n", "4", "--seed", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "fp32")]) == 0
    assert "precision" not in json.loads((tmp_path / "fp32" / "synthesize.json").read_text())  # earlier sets resume
    assert main(args + ["--out", str(tmp_path / "bf16"), "--precision", "bf16"]) == 0
    assert json.loads((tmp_path / "bf16" / "synthesize.json").read_text())["precision"] == "bf16"
    a, b = (np.asarray(Image.open(tmp_path / d / "images" / "syn_00000.png"), dtype=int) for d in ("fp32", "bf16"))
    assert 0 < np.abs(a - b).mean() < 2
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "fp32"), "--precision", "bf16"]) == 2
    assert "made with other settings" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, dense", [("--lesion-margins", "1", "0"), ("--lung-tone", "1", "0"),
                                               ("--consolidation-depth", "10", "1"), ("--dependent-density", "1", "0")])
def test_image_steps_are_recorded_and_change_only_the_images(two_runs, tmp_path, flag, value, dense):
    root, runs = two_runs
    args = ["synthesize", "--runs", *runs, "--n", "4", "--seed", "2", "--quiet", "--consolidation", dense]
    key = flag[2:].replace("-", "_")
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert main(args + ["--out", str(tmp_path / "faded"), flag, value]) == 0
    assert key not in json.loads((tmp_path / "plain" / "synthesize.json").read_text())
    assert json.loads((tmp_path / "faded" / "synthesize.json").read_text())[key] == float(value)
    a, b = ({p.relative_to(tmp_path / d).as_posix(): np.asarray(Image.open(p), dtype=int)
             for p in sorted((tmp_path / d).rglob("syn_*.png"))} for d in ("plain", "faded"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[n], b[n]) for n in a if n.startswith("labels/"))
    assert any(not np.array_equal(a[n], b[n]) for n in a if n.startswith("images/"))
