from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom


def test_cli_train_sample_and_resume(tmp_path, phantom_files, capsys):
    ip, lp = phantom_files
    run = tmp_path / "run"
    assert main(["train", "--image", str(ip), "--label", str(lp), "--out", str(run), "--preset", "tiny",
                 "--seed", "3", "--quiet"]) == 0
    assert "run folder" in capsys.readouterr().out
    # resuming a finished run is a no-op that still succeeds
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = tmp_path / "samples"
    assert main(["sample", str(run), "--n", "2", "--out", str(out), "--quiet"]) == 0
    imgs = sorted((out / "images").glob("*.png"))
    labs = sorted((out / "labels").glob("*.png"))
    assert [p.name for p in imgs] == [p.name for p in labs] == ["train_0000.png", "train_0001.png"]
    train_label = np.asarray(Image.open(run / "train_label.png")) // 127
    assert np.array_equal(np.asarray(Image.open(labs[0])), train_label)
    assert Image.open(imgs[0]).mode == "L" and Image.open(out / "grid.png").size[0] > 0


def test_cli_sample_with_another_label_map_of_another_size(tmp_path, phantom_files):
    ip, lp = phantom_files
    run = tmp_path / "run"
    assert main(["train", "--image", str(ip), "--label", str(lp), "--out", str(run), "--preset", "tiny", "--quiet"]) == 0
    _, other = chest_phantom(64, seed=7)
    other = np.ascontiguousarray(other[:, 8:])  # 64 x 56: another shape, another map
    save_png(other, tmp_path / "other.png")
    out = tmp_path / "s"
    assert main(["sample", str(run), "--n", "3", "--out", str(out), "--label", str(tmp_path / "other.png"),
                 "--body", "label", "--quiet"]) == 0
    img = np.asarray(Image.open(out / "images" / "other_0000.png"))
    lab = np.asarray(Image.open(out / "labels" / "other_0000.png"))
    assert img.shape == lab.shape == (32, 28)  # long side at the model's finest size, aspect kept
    small = np.asarray(Image.fromarray(other).resize((28, 32), Image.NEAREST))
    assert (lab == small).mean() > 0.99  # the map written is the (resized) map that was used


def test_console_script_reports_errors_without_traceback(tmp_path):
    exe = [sys.executable, "-m", "cosingan.cli"]
    r = subprocess.run(exe + ["sample", str(tmp_path / "no_run"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "no checkpoint" in r.stderr


def test_nifti_input_gives_nifti_outputs_with_spacing(tmp_path):
    import nibabel as nib

    img, lab = chest_phantom(48, seed=2)
    hu = (img + 1) / 2 * 1500 - 1250  # back to HU through the lung window
    aff = np.diag([0.8, 0.8, 5.0, 1.0])
    # the reader shows rows = anterior..posterior (rot90 of x, y); write the inverse so the pair matches
    nib.save(nib.Nifti1Image(np.rot90(hu, -1)[:, :, None].astype(np.float32), aff), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(np.rot90(lab, -1)[:, :, None].astype(np.uint8), aff), tmp_path / "seg.nii.gz")
    run = tmp_path / "run"
    assert main(["train", "--image", str(tmp_path / "ct.nii.gz"), "--label", str(tmp_path / "seg.nii.gz"),
                 "--out", str(run), "--preset", "tiny", "--quiet"]) == 0
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    out_img = nib.load(tmp_path / "s" / "images" / "train_0000.nii.gz")
    out_lab = nib.load(tmp_path / "s" / "labels" / "train_0000.nii.gz")
    assert out_img.shape == out_lab.shape == (32, 32, 1)
    # 48 px at 0.8 mm resized to 32 px -> 1.2 mm per pixel
    assert np.allclose(out_img.header.get_zooms()[:2], (1.2, 1.2))
    data = np.asarray(out_img.dataobj)
    assert -1250 - 1e-3 <= data.min() and data.max() <= 250 + 1e-3
    assert set(np.unique(np.asarray(out_lab.dataobj))) <= {0, 1, 2}


def test_demo_trains_then_reuses_its_run(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "tiny", "--quiet"]) == 0
    assert "demo: trained" in capsys.readouterr().out
    assert (out / "samples" / "grid.png").exists() and len(list((out / "samples" / "images").iterdir())) == 12
    assert main(["demo", "--out", str(out), "--preset", "tiny", "--quiet"]) == 0
    assert "reusing the trained run" in capsys.readouterr().out
    # another preset into the same folder would silently reuse a run of other settings: refused
    assert main(["demo", "--out", str(out), "--preset", "demo", "--quiet"]) == 2


def test_every_experiment_setting_is_one_flag_declared_once():
    """The experiment's flags are its config's fields (and the units' `Jobs`): every field with help is exactly
    one flag, every other flag is an input or output of the command, and the defaults are the fields'."""
    import argparse
    from dataclasses import MISSING, fields

    from cosingan.cli import COMMANDS
    from cosingan.experiment.config import ExperimentConfig
    from cosingan.experiment.jobs import Jobs
    from cosingan.settings import flag_name

    parser = argparse.ArgumentParser()
    COMMANDS["experiment"][0](parser.add_subparsers(dest="command"))
    few_shot = next(a for a in parser._subparsers._group_actions[0].choices["experiment"]._actions
                    if isinstance(a, argparse._SubParsersAction)).choices["few-shot"]
    flags = {o: a for a in few_shot._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    declared = {flag_name(f): f for cls in (ExperimentConfig, Jobs) for f in fields(cls) if f.metadata.get("help")}
    inputs = {"--data", "--test", "--normals", "--unlabelled", "--out", "--quiet"}
    assert set(flags) == set(declared) | inputs
    for name, f in declared.items():
        default = f.default_factory() if f.default is MISSING else f.default
        if f.metadata["json_file"] or isinstance(default, bool):
            continue
        assert flags[name].default == (list(default) if isinstance(default, tuple) else default), name
    # every field that is not a flag is a fixed part of the protocol, named as such in the config
    assert {f.name for f in fields(ExperimentConfig) if not f.metadata} == {"test_fraction", "negatives", "edits",
                                                                             "mix_real_fraction"}
