"""Reliability, round 3 (issue 39): what a file inside an output folder says never reaches outside it,
outputs never land inside inputs, names pair exactly, a user's folder or model is never written over, and
what is reused is checked against what it was made from. Each case failed before its fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom
from test_reliability import _fails, _folder, _snapshot


def _marked(out: Path, command: str) -> None:
    assert json.loads((out / ".cosingan").read_text())["command"] == command


# 1 ------------------------------------------------------------------------------------------------

def test_an_edited_masks_csv_cannot_delete_a_file_outside_its_folder(tmp_path):
    data = _folder(tmp_path / "real", 2)
    victim = tmp_path / "victim_dir" / "victim.png"
    victim.parent.mkdir()
    victim.write_bytes(b"mine")
    (tmp_path / "victim_dir" / "victim").write_bytes(b"mine too")
    out = tmp_path / "m"
    assert main(["masks", "--data", str(data), "--out", str(out), "--n", "3", "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "masks.csv")))
    rows[0]["name"] = "../../victim_dir/victim"
    with open(out / "masks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["masks", "--data", str(data), "--out", str(out), "--n", "3", "--seed", "1", "--quiet"]) == 0
    assert victim.read_bytes() == b"mine" and (tmp_path / "victim_dir" / "victim").read_bytes() == b"mine too"


# 2 ------------------------------------------------------------------------------------------------

def test_a_run_folder_inside_the_images_folder_is_refused(tmp_path, capsys):
    d = _folder(tmp_path / "D", 1)
    before = _snapshot(d)
    _fails(capsys, ["train", "--image", str(d / "images" / "s0.png"), "--label", str(d / "labels" / "s0.png"),
                    "--out", str(d / "images" / "run"), "--preset", "tiny", "--quiet"],
           "must not be, hold or lie inside an input")
    assert _snapshot(d) == before


# 3 ------------------------------------------------------------------------------------------------

def test_resume_sweeps_only_its_own_temporary_files(tmp_path, capsys):
    from cosingan.data.readers import load_slice
    from cosingan.gan.config import PRESETS
    from cosingan.gan.train import train

    d = _folder(tmp_path / "in", 1)
    run = tmp_path / "run"
    train(run, load_slice(d / "images" / "s0.png", d / "labels" / "s0.png"), PRESETS["tiny"], stop_after=1,
          progress=False)
    (run / ".draft.tmp").write_text("the user's")
    (run / ".checkpoint.pt.abc123.cosingan-tmp").write_bytes(b"left by a killed write")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / ".draft.tmp").read_text() == "the user's"
    assert not (run / ".checkpoint.pt.abc123.cosingan-tmp").exists()
    # a finished run: nothing trains, and it says so
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "finished before; nothing to train" in capsys.readouterr().out
    assert (run / ".draft.tmp").read_text() == "the user's"


# 4 ------------------------------------------------------------------------------------------------

def test_a_trained_segmentation_model_is_never_replaced_silently(tmp_path, capsys):
    d = _folder(tmp_path / "real", 3)
    out = tmp_path / "S"
    args = ["seg", "train", "--data", str(d), "--out", str(out), "--steps", "2", "--size", "32", "--quiet"]
    assert main(args) == 0
    model = (out / "model.pt").read_bytes()
    capsys.readouterr()
    assert main(args) == 0  # the same settings and slices: nothing to do
    assert "nothing to do" in capsys.readouterr().out and (out / "model.pt").read_bytes() == model
    _fails(capsys, args + ["--seed", "3"], "was trained with other settings (seed: 0 -> 3)")
    save_png(chest_phantom(40, seed=77)[0], d / "images" / "s1.png")  # a slice changed under its name
    _fails(capsys, args, "was trained on other files")
    assert (out / "model.pt").read_bytes() == model


# 5, 7 ---------------------------------------------------------------------------------------------

def test_names_pair_exactly_glob_characters_included(tmp_path, tiny_run, capsys):
    from cosingan.data.layout import paired_image

    d = tmp_path / "D"
    img, lab = chest_phantom(40, seed=1)
    other, _ = chest_phantom(40, seed=2)
    save_png(other, d / "images" / "scan1.png")  # what the pattern scan[1].* matches
    save_png(lab, d / "labels" / "scan[1].png")
    assert paired_image(d / "labels" / "scan[1].png") is None
    _fails(capsys, ["sample", str(tiny_run), "--label", str(d / "labels" / "scan[1].png"), "--body", "image",
                    "--out", str(tmp_path / "s"), "--quiet"], "--body image needs the slice")
    save_png(img, d / "images" / "scan[1].png")
    assert paired_image(d / "labels" / "scan[1].png") == d / "images" / "scan[1].png"


# 6 ------------------------------------------------------------------------------------------------

def test_a_users_folder_is_never_taken_for_a_commands_own(tmp_path, tiny_run, capsys):
    data = _folder(tmp_path / "real", 4)
    cases = {
        "masks": (["masks.csv", "labels/mine.png"], ["masks", "--data", str(data), "--n", "2", "--quiet"]),
        "sample": (["grid.png"], ["sample", str(tiny_run), "--n", "1", "--quiet"]),
        "experiment": (["report.md", "data/notes.txt"],
                       ["experiment", "few-shot", "--data", str(data), "--k", "1", "--preset", "tiny", "--quiet"]),
    }
    for name, (files, argv) in cases.items():
        out = tmp_path / f"user_{name}"
        for f in files:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            (out / f).write_text("the user's")
        before = _snapshot(out)
        _fails(capsys, [*argv, "--out", str(out)], "was not made by")
        assert _snapshot(out) == before, name
    d = _folder(tmp_path / "s", 3)
    assert main(["seg", "train", "--data", str(d), "--out", str(tmp_path / "model"), "--steps", "1", "--size", "32",
                 "--quiet"]) == 0
    out = tmp_path / "user_eval"
    out.mkdir()
    (out / "summary.json").write_text("the user's")
    (out / "cases.csv").write_text("the user's")
    _fails(capsys, ["seg", "eval", "--model", str(tmp_path / "model"), "--data", str(d), "--out", str(out)],
           "was not made by")
    assert (out / "summary.json").read_text() == "the user's"


# 8 ------------------------------------------------------------------------------------------------

def test_quality_trains_its_cached_segmenter_again_for_other_settings_or_slices(tmp_path, tiny_run):
    data = _folder(tmp_path / "real", 4)
    out = tmp_path / "q"
    base = ["quality", str(tiny_run), "--data", str(data), "--out", str(out), "--c2st-steps", "1", "--c2st-seeds",
            "1", "--quiet"]
    assert main(base + ["--seg-steps", "1"]) == 0
    assert main(base + ["--seg-steps", "3"]) == 0
    assert json.loads((out / "segmenter" / "train.json").read_text())["config"]["steps"] == 3


def test_a_dataset_is_not_resumed_with_a_generator_trained_again(tmp_path, capsys):
    from cosingan.data.readers import load_slice
    from cosingan.gan.config import PRESETS, merge
    from cosingan.gan.train import train

    d = _folder(tmp_path / "in", 1)
    sl = load_slice(d / "images" / "s0.png", d / "labels" / "s0.png")
    run = tmp_path / "g"
    train(run, sl, PRESETS["tiny"], progress=False)
    args = ["synthesize", "--runs", str(run), "--n", "3", "--out", str(tmp_path / "syn"), "--quiet"]
    assert main(args) == 0
    import shutil

    shutil.rmtree(run)  # the same folder, trained again with another seed
    train(run, sl, merge(PRESETS["tiny"], {"seed": 5}, "test"), progress=False)
    _fails(capsys, args, "made with other settings")


def test_train_many_refuses_a_run_of_a_slice_changed_under_its_name(tmp_path, capsys):
    d = _folder(tmp_path / "in", 2)
    args = ["train-many", "--data", str(d), "--out", str(tmp_path / "runs"), "--preset", "tiny", "--workers", "1",
            "--quiet"]
    assert main(args) == 0
    save_png(chest_phantom(40, seed=50)[0], d / "images" / "s1.png")
    _fails(capsys, args, "trained on another slice")


# 9 ------------------------------------------------------------------------------------------------

def test_a_renamed_copy_inside_data_is_refused_before_the_split(tmp_path, capsys):
    d = _folder(tmp_path / "real", 4)
    for sub in ("images", "labels"):
        (d / sub / "copy_of_s2.png").write_bytes((d / sub / "s2.png").read_bytes())
    _fails(capsys, ["experiment", "few-shot", "--data", str(d), "--k", "1", "--out", str(tmp_path / "e"),
                    "--preset", "tiny", "--quiet"], "has the same image and label as")
    assert not (tmp_path / "e").exists()


# 10 -----------------------------------------------------------------------------------------------

def test_smaller_ones(tmp_path, capsys):
    # a label map without its image is named, not skipped
    d = _folder(tmp_path / "a", 2)
    save_png(chest_phantom(40, seed=9)[1], d / "labels" / "lonely.png")
    _fails(capsys, ["train-many", "--data", str(d), "--out", str(tmp_path / "r"), "--preset", "tiny", "--quiet"],
           "lonely.png: a label map with no image")
    # every unknown key of a config is named at once
    d = _folder(tmp_path / "b", 1)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"train": {"iterz": 1}, "model": {"chanels": 2}}))
    err = _fails(capsys, ["train", "--image", str(d / "images" / "s0.png"), "--label", str(d / "labels" / "s0.png"),
                          "--out", str(tmp_path / "run"), "--preset", "tiny", "--config", str(cfg), "--quiet"],
                 "unknown config key(s)")
    assert "model.chanels" in err and "train.iterz" in err
    # a label named ...png would name a hidden sample file ('..'): refused
    img, lab = chest_phantom(40, seed=3)
    save_png(lab, tmp_path / "x" / "...png")
    from cosingan.data.readers import load_slice
    from cosingan.gan.config import PRESETS
    from cosingan.gan.train import train

    train(tmp_path / "g", load_slice(d / "images" / "s0.png", d / "labels" / "s0.png"), PRESETS["tiny"],
          progress=False)
    _fails(capsys, ["sample", str(tmp_path / "g"), "--label", str(tmp_path / "x" / "...png"), "--out",
                    str(tmp_path / "smp"), "--quiet"], "would name a hidden output")
    assert not list(tmp_path.rglob("..png"))
    np.testing.assert_equal(sorted(p.name for p in (tmp_path / "x").iterdir()), ["...png"])
