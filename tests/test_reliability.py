"""Reliability, round 2 (issue 13): output folders never touch what is not ours, reused results always
match their settings, and more bad input ends in one line (exit 2) with nothing written."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom
from cosingan.gan.config import PRESETS
from cosingan.gan.train import train


def _folder(d: Path, n: int = 3, seed: int = 0) -> Path:
    for k in range(n):
        img, lab = chest_phantom(40, seed=seed + k)
        save_png(img, d / "images" / f"s{k}.png")
        save_png(lab, d / "labels" / f"s{k}.png")
    return d


def _train(d: Path, out: Path, *extra) -> list[str]:
    sl = _folder(d / "in", 1)
    return ["train", "--image", str(sl / "images" / "s0.png"), "--label", str(sl / "labels" / "s0.png"),
            "--out", str(out), "--preset", "tiny", "--quiet", *extra]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fails(capsys, argv, expected) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cosingan: error: ") and expected in err, err
    return err


# ------------------------------------------------------------------------------------- data safety

def test_train_never_writes_into_a_folder_of_user_files(tmp_path, capsys):
    u = tmp_path / "u"
    u.mkdir()
    (u / "config.json").write_text("mine")
    _fails(capsys, _train(tmp_path, u), "not empty and was not made by `cosingan train`")
    assert (u / "config.json").read_text() == "mine" and [p.name for p in u.iterdir()] == ["config.json"]


def test_output_equal_to_an_input_folder_is_refused(tmp_path, capsys):
    argv = _train(tmp_path, tmp_path / "in" / "images")
    before = _snapshot(tmp_path / "in")
    _fails(capsys, argv, "must not be, hold or lie inside an input")
    assert _snapshot(tmp_path / "in") == before


def test_resume_of_a_folder_that_is_not_a_run_touches_nothing(tmp_path, capsys):
    d = tmp_path / "notrun"
    d.mkdir()
    (d / ".notes.tmp").write_text("keep")
    _fails(capsys, ["train", "--resume", str(d), "--quiet"], "no checkpoint")
    assert (d / ".notes.tmp").read_text() == "keep"


def test_synthesize_into_its_conditions_folder_is_refused(tmp_path, tiny_run, capsys):
    cond = _folder(tmp_path / "real")
    before = _snapshot(cond)
    _fails(capsys, ["synthesize", "--runs", str(tiny_run), "--n", "2", "--out", str(cond), "--conditions", str(cond),
                    "--quiet"], "input")
    assert _snapshot(cond) == before


def test_masks_rerun_with_fewer_maps_leaves_no_stale_map(tmp_path):
    data = _folder(tmp_path / "real")
    out = tmp_path / "m"
    assert main(["masks", "--data", str(data), "--out", str(out), "--n", "6", "--quiet"]) == 0
    assert main(["masks", "--data", str(data), "--out", str(out), "--n", "2", "--quiet"]) == 0
    listed = {r.split(",")[0] for r in (out / "masks.csv").read_text().splitlines()[1:]}
    assert {p.stem for p in (out / "labels").iterdir()} == listed == {p.stem for p in (out / "bodies").iterdir()}


def test_sample_with_two_label_maps_of_one_name_is_refused(tmp_path, tiny_run, capsys):
    a, b = _folder(tmp_path / "a", 1), _folder(tmp_path / "b", 1)
    _fails(capsys, ["sample", str(tiny_run), "--out", str(tmp_path / "s"), "--label", str(a / "labels" / "s0.png"),
                    str(b / "labels" / "s0.png"), "--quiet"], "several label maps are named 's0'")
    assert not (tmp_path / "s").exists()


def test_a_second_process_on_one_run_folder_is_refused(tmp_path, capsys):
    from filelock import FileLock

    out = tmp_path / "r"
    argv = _train(tmp_path, out)
    out.mkdir()
    with FileLock(str(out / ".cosingan.lock")):  # another process holds the folder
        _fails(capsys, argv, "another cosingan process is writing this folder")
    assert not (out / "checkpoint.pt").exists()
    assert main(argv) == 0  # and once it is free, the run goes through


def test_folders_of_other_commands_are_refused(tmp_path, tiny_run, capsys):
    data = _folder(tmp_path / "real")
    out = tmp_path / "m"
    assert main(["masks", "--data", str(data), "--out", str(out), "--n", "2", "--quiet"]) == 0
    _fails(capsys, ["sample", str(tiny_run), "--out", str(out), "--quiet"], "holds the output of `cosingan masks`")


# -------------------------------------------------------------------------------- honest results

def test_experiment_refuses_to_reuse_models_of_other_settings(tmp_path, capsys):
    data = _folder(tmp_path / "real", 6, seed=20)
    out = tmp_path / "e"
    base = ["experiment", "few-shot", "--data", str(data), "--k", "1", "--out", str(out), "--regimes", "kmaps",
            "--n-synth", "3", "--seg-size", "32", "--cls-steps", "2", "--no-quality", "--quiet"]
    assert main(base + ["--preset", "tiny", "--seg-steps", "1"]) == 0
    _fails(capsys, base + ["--preset", "tiny", "--seg-steps", "7"], "trained with other settings (steps: 1 -> 7)")
    _fails(capsys, base + ["--preset", "cpu", "--seg-steps", "1"], "trained with other settings (model.")
    _fails(capsys, base + ["--preset", "tiny", "--seg-steps", "1", "--seed", "3"], "another training/test split")


def test_test_slices_copied_under_new_names_are_refused(tmp_path, capsys):
    data = _folder(tmp_path / "real", 4)
    test = tmp_path / "test"
    for sub in ("images", "labels"):
        (test / sub).mkdir(parents=True)
        shutil.copy(data / sub / "s2.png", test / sub / "renamed.png")
    _fails(capsys, ["experiment", "few-shot", "--data", str(data), "--test", str(test), "--k", "1", "--out",
                    str(tmp_path / "e"), "--preset", "tiny", "--quiet"], "same image and label")
    assert not (tmp_path / "e").exists()


def test_classifier_refuses_negatives_that_are_positives(tmp_path, capsys):
    data = _folder(tmp_path / "real")
    _fails(capsys, ["cls", "train", "--data", str(data), "--negatives", str(data / "images"), "--out",
                    str(tmp_path / "c"), "--steps", "1", "--quiet"], "cannot be both a positive and a negative")
    assert not (tmp_path / "c").exists()


def test_non_finite_loss_stops_training(tmp_path, monkeypatch):
    import cosingan.gan.trainer as trainer
    from cosingan.errors import InputError

    real = trainer.critic_loss

    def nan_loss(*a, **k):
        loss, wd = real(*a, **k)
        return loss * float("nan"), wd

    monkeypatch.setattr(trainer, "critic_loss", nan_loss)
    img, lab = chest_phantom(40, seed=1)
    from cosingan.data.readers import Slice

    with pytest.raises(InputError, match="critic loss became nan at stage 1, iteration 1"):
        train(tmp_path / "r", Slice(img, lab, None, "png"), PRESETS["tiny"], progress=False)


def test_a_lung_that_vanishes_at_the_training_size_is_refused(tmp_path, capsys):
    img, _ = chest_phantom(200, seed=1)
    lab = np.zeros((200, 200), np.uint8)
    lab[100, 100] = 1  # one pixel of lung: gone at 32 px
    save_png(img, tmp_path / "i.png")
    save_png(lab, tmp_path / "l.png")
    _fails(capsys, ["train", "--image", str(tmp_path / "i.png"), "--label", str(tmp_path / "l.png"), "--out",
                    str(tmp_path / "r"), "--preset", "tiny", "--quiet"], "the lung vanishes")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- clean errors, not tracebacks

@pytest.mark.parametrize("cfg,expected", [
    ({"train": {"iters": "6"}}, "train.iters must be an integer"),
    ({"model": {"channels": 0}}, "model.channels must be in [1, 1024]"),
    ({"train": {"iters": 0}}, "train.iters must be in"),
    ({"model": {"scale_factor": 1.5}}, "model.scale_factor must be in"),
    ({"model": {"padding": "circular"}}, "model.padding must be one of zeros, replicate, reflect"),
    ({"train": {"ckpt_every": 0}}, "train.ckpt_every must be in"),
    ({"train": {"lr_g": "nan"}}, "train.lr_g must be a number"),
    ({"model": [1, 2]}, "model must be an object of settings"),
])
def test_config_types_and_ranges(tmp_path, capsys, cfg, expected):
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    _fails(capsys, _train(tmp_path, tmp_path / "r", "--config", str(tmp_path / "c.json")), expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,expected", [
    (["train", "--seed", "-5"], "--seed must be between 0"),
    (["sample", "RUN", "--batch", "0"], "--batch must be at least 1"),
    (["seg", "train", "--batch", "0"], "--batch must be at least 1"),
    (["cls", "train", "--size", "0"], "--size must be between 16"),
    (["cls", "train", "--size", "24"], "classifier size must be a multiple of 16"),
    (["masks", "--negative-share", "nan"], "--negative-share must be between 0.0 and 1.0"),
    (["masks", "--negative-share", "-1"], "--negative-share must be between 0.0 and 1.0"),
    (["masks", "--negative-share", "5"], "--negative-share must be between 0.0 and 1.0"),
    (["synthesize", "--consolidation", "1.5"], "--consolidation must be between 0.0 and 1.0"),
    (["synthesize", "--consolidation", "nan"], "--consolidation must be a number, got nan"),
    (["synthesize", "--dependent-density", "2"], "--dependent-density must be between 0.0 and 1.0"),
])
def test_argument_ranges(tmp_path, tiny_run, capsys, argv, expected):
    data = _folder(tmp_path / "real")
    full = {"train": _train(tmp_path, tmp_path / "o"),
            "sample": ["sample", str(tiny_run), "--out", str(tmp_path / "o"), "--quiet"],
            "seg": ["seg", "train", "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "1", "--quiet"],
            "cls": ["cls", "train", "--data", str(data), "--out", str(tmp_path / "o"), "--steps", "1", "--quiet"],
            "masks": ["masks", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet"],
            "synthesize": ["synthesize", "--runs", str(tiny_run), "--n", "2", "--out", str(tmp_path / "o"),
                           "--quiet"]}[argv[0]]
    extra = [a for a in argv[1:] if a not in ("train", "RUN")]
    _fails(capsys, full + extra, expected)
    assert not (tmp_path / "o").exists()


def test_experiment_with_too_few_pool_slices_fails_before_any_work(tmp_path, capsys):
    data, test = _folder(tmp_path / "real", 3), _folder(tmp_path / "test", 2, seed=40)
    _fails(capsys, ["experiment", "few-shot", "--data", str(data), "--test", str(test), "--k", "5", "--out",
                    str(tmp_path / "e"), "--preset", "tiny", "--quiet"], "too few for k=5")
    assert not (tmp_path / "e").exists()


def test_huge_png_is_a_clean_error(tmp_path, capsys):
    from PIL import Image

    Image.new("L", (14000, 14000)).save(tmp_path / "huge.png")  # over PIL's bomb limit
    save_png(np.zeros((40, 40), np.uint8), tmp_path / "l.png")
    _fails(capsys, ["train", "--image", str(tmp_path / "huge.png"), "--label", str(tmp_path / "l.png"), "--out",
                    str(tmp_path / "r"), "--quiet"], "huge.png:")


def test_checkpoint_with_missing_keys_is_a_clean_error(tmp_path, tiny_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    del ck["sizes"]
    torch.save(ck, run / "checkpoint.pt")
    _fails(capsys, ["sample", str(run), "--out", str(tmp_path / "s"), "--quiet"], "incomplete checkpoint (missing sizes)")


def test_edited_manifest_and_corrupt_spec_are_clean_errors(tmp_path, tiny_run, capsys):
    out = tmp_path / "syn"
    argv = ["synthesize", "--runs", str(tiny_run), "--n", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    manifest = (out / "manifest.csv").read_text()
    (out / "manifest.csv").write_text(manifest.replace(",0\n", ",yes\n", 1))
    _fails(capsys, argv, "has an invalid negative ('yes')")
    (out / "manifest.csv").write_text(manifest.replace(str(tiny_run), "/elsewhere/run"))
    _fails(capsys, argv, "has an invalid run")
    (out / "manifest.csv").write_text("name,run\nx,y\n")
    _fails(capsys, argv, "not a cosingan manifest")
    (out / "synthesize.json").write_text("{not json")
    _fails(capsys, argv, "synthesize.json: unreadable")


def test_classifier_eval_writes_strict_json(tmp_path):
    data = _folder(tmp_path / "real")
    assert main(["cls", "train", "--data", str(data), "--negatives", str(_folder(tmp_path / "neg", 2, seed=50)),
                 "--out", str(tmp_path / "c"), "--steps", "1", "--size", "32", "--quiet"]) == 0
    assert main(["cls", "eval", "--model", str(tmp_path / "c"), "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    text = (tmp_path / "e" / "summary.json").read_text()  # only positives: AUC and specificity are undefined
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert summary["auc"] is None and summary["specificity"] is None


def test_seg_train_prints_no_library_warning(tmp_path):
    data = _folder(tmp_path / "real", 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["seg", "train", "--data", str(data), "--out", str(tmp_path / "s"), "--steps", "2",
                     "--size", "32", "--quiet"]) == 0
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]


def test_settings_errors_come_before_the_output_folder_is_made(tmp_path, tiny_run, capsys):
    data = _folder(tmp_path / "real")
    _fails(capsys, ["synthesize", "--runs", str(tiny_run), "--n", "2", "--out", str(tmp_path / "Bad_name"),
                    "--format", "nnunet", "--quiet"], "must be named DatasetXXX_Name")
    _fails(capsys, ["masks", "--data", str(data), "--out", str(tmp_path / "m"), "--edits", "warp", "--quiet"],
           "unknown edit(s) ['warp']")
    _fails(capsys, ["cls", "train", "--data", str(data), "--out", str(tmp_path / "c"), "--steps", "1", "--quiet"],
           "needs both positives")
    assert not any((tmp_path / n).exists() for n in ("Bad_name", "m", "c"))
