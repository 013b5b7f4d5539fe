"""Bad input, driven through the CLI: exit code 2, one line naming the file and the problem, no output.

Each case builds its files in a fresh folder and returns (argv, text the error must contain, a path
that must not exist afterwards). The README's "What is validated" list mirrors this table.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from cosingan.cli import main
from cosingan.gan.config import PRESETS
from cosingan.data.files import save_png
from cosingan.data.readers import load_slice
from cosingan.data.phantom import chest_phantom
from cosingan.gan.checkpoint import CKPT
from cosingan.gan.train import train


def _pair(d: Path, size: int = 40):
    img, lab = chest_phantom(size, seed=1)
    save_png(img, d / "img.png")
    save_png(lab, d / "lab.png")
    return img, lab


def _train(d: Path, image, label, *extra):
    return ["train", "--image", str(image), "--label", str(label), "--out", str(d / "out"), "--preset", "tiny",
            "--quiet", *extra]


def _nifti(path: Path, arr: np.ndarray, zooms=(0.8, 0.8, 5.0), dtype=np.float32, affine=None) -> Path:
    aff = affine if affine is not None else np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(arr.astype(dtype), aff), path)
    return path


def _slice_folder(d: Path, n: int = 2) -> Path:
    for k in range(n):
        img, lab = chest_phantom(40, seed=k)
        save_png(img, d / "sl" / "images" / f"s{k}.png")
        save_png(lab, d / "sl" / "labels" / f"s{k}.png")
    return d / "sl"


# ---------------------------------------------------------------------------------------- the cases

def size_mismatch(d, run):
    _pair(d)
    save_png(np.ones((20, 20), np.uint8), d / "small.png")
    return _train(d, d / "img.png", d / "small.png"), "small.png: label map size 20x20", d / "out"


def labels_outside_012(d, run):
    _pair(d)
    save_png(np.full((40, 40), 5, np.uint8), d / "bad.png")
    return _train(d, d / "img.png", d / "bad.png"), "bad.png: label values must be 0", d / "out"


def empty_lung(d, run):
    _pair(d)
    save_png(np.zeros((40, 40), np.uint8), d / "empty.png")
    return _train(d, d / "img.png", d / "empty.png"), "empty.png: label map has no lung", d / "out"


def infection_outside_lung(d, run):
    img, lab = _pair(d)
    lung = (lab >= 1).astype(np.uint8)
    inf = np.zeros_like(lung)
    inf[:6, :6] = 1  # in the corner, far from the lungs
    save_png(lung * 255, d / "lung.png")
    save_png(inf * 255, d / "inf.png")
    argv = ["train", "--image", str(d / "img.png"), "--lung", str(d / "lung.png"), "--infection",
            str(d / "inf.png"), "--out", str(d / "out"), "--preset", "tiny", "--quiet"]
    return argv, "inf.png: 36 of 36 infection pixels lie outside the lung", d / "out"


def nan_image(d, run):
    img, lab = _pair(d)
    arr = img.copy()
    arr[3, 3] = np.nan
    np.save(d / "nan.npy", arr)
    return _train(d, d / "nan.npy", d / "lab.png"), "nan.npy: image contains NaN", d / "out"


def constant_image(d, run):
    _pair(d)
    save_png(np.full((40, 40), 90, np.uint8), d / "flat.png")
    return _train(d, d / "flat.png", d / "lab.png"), "flat.png: image is constant", d / "out"


def colour_image(d, run):
    _pair(d)
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(d / "red.png")
    return _train(d, d / "red.png", d / "lab.png"), "red.png: colour image", d / "out"


def three_channel_npy(d, run):
    _pair(d)
    np.save(d / "rgb.npy", np.random.default_rng(0).random((40, 40, 3)).astype(np.float32))
    return _train(d, d / "rgb.npy", d / "lab.png"), "rgb.npy: expected a 2-D array", d / "out"


def zero_byte_image(d, run):
    _pair(d)
    (d / "zero.png").write_bytes(b"")
    return _train(d, d / "zero.png", d / "lab.png"), "zero.png: file is empty", d / "out"


def truncated_png(d, run):
    _pair(d)
    data = (d / "img.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 3])
    return _train(d, d / "cut.png", d / "lab.png"), "cut.png: not a readable image", d / "out"


def text_file_as_image(d, run):
    _pair(d)
    (d / "notes.png").write_text("this is not an image\n")
    return _train(d, d / "notes.png", d / "lab.png"), "notes.png: not a readable image", d / "out"


def unsupported_extension(d, run):
    _pair(d)
    (d / "scan.dcm").write_bytes(b"DICM" * 40)
    return _train(d, d / "scan.dcm", d / "lab.png"), "scan.dcm: unsupported file type", d / "out"


def nifti_4d(d, run):
    _pair(d)
    _nifti(d / "vol4d.nii.gz", np.zeros((40, 40, 3, 2)))
    return _train(d, d / "vol4d.nii.gz", d / "lab.png"), "vol4d.nii.gz: expected a 2-D slice", d / "out"


def nifti_absurd_spacing(d, run):
    img, lab = _pair(d)
    _nifti(d / "huge_px.nii.gz", (img[:, :, None] + 1) * 700 - 1250, zooms=(900.0, 900.0, 5.0))
    return _train(d, d / "huge_px.nii.gz", d / "lab.png"), "huge_px.nii.gz: absurd pixel spacing", d / "out"


def truncated_nifti(d, run):
    img, _ = _pair(d)
    _nifti(d / "ok.nii.gz", img[:, :, None] * 1000)
    raw = gzip.decompress((d / "ok.nii.gz").read_bytes())
    (d / "cut.nii").write_bytes(raw[:200])  # a header cut in half
    return _train(d, d / "cut.nii", d / "lab.png"), "cut.nii: not a readable NIfTI", d / "out"


def nifti_geometry_mismatch(d, run):
    img, lab = _pair(d)
    _nifti(d / "ct.nii.gz", (img[:, :, None] + 1) * 700 - 1250, zooms=(0.8, 0.8, 5.0))
    _nifti(d / "seg.nii.gz", lab[:, :, None], zooms=(0.6, 0.6, 5.0), dtype=np.uint8)
    return _train(d, d / "ct.nii.gz", d / "seg.nii.gz"), "seg.nii.gz: NIfTI geometry", d / "out"


def image_given_as_label(d, run):
    _pair(d)
    return _train(d, d / "img.png", d / "img.png"), "img.png: label values must be", d / "out"


def huge_image(d, run):
    _pair(d)
    Image.fromarray(np.zeros((10, 5000), np.uint8)).save(d / "wide.png")
    return _train(d, d / "wide.png", d / "lab.png"), "wide.png: 10x5000 px exceeds the limit", d / "out"


def missing_label_file(d, run):
    _pair(d)
    return _train(d, d / "img.png", d / "nolabel.png"), "nolabel.png: file not found", d / "out"


def no_label_given(d, run):
    _pair(d)
    argv = ["train", "--image", str(d / "img.png"), "--out", str(d / "out"), "--preset", "tiny", "--quiet"]
    return argv, "train needs --image, --label", d / "out"


def unwritable_output(d, run):
    _pair(d)
    (d / "afile").write_text("")
    argv = ["train", "--image", str(d / "img.png"), "--label", str(d / "lab.png"), "--out",
            str(d / "afile" / "run"), "--preset", "tiny", "--quiet"]
    return argv, "afile/run: output folder is not writable", d / "afile" / "run"


def unknown_config_field(d, run):
    _pair(d)
    (d / "cfg.json").write_text(json.dumps({"train": {"iterz": 5}}))
    return _train(d, d / "img.png", d / "lab.png", "--config", str(d / "cfg.json")), "iterz", d / "out"


def checkpoint_of_another_version(d, run):
    old = d / "old"
    shutil.copytree(run, old)
    ck = torch.load(old / CKPT, weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, old / CKPT)
    return ["train", "--resume", str(old), "--quiet"], "checkpoint format 99 is not supported", d / "none"


def checkpoint_of_another_model_config(d, run):
    other = d / "other"
    shutil.copytree(run, other)
    ck = torch.load(other / CKPT, weights_only=True)
    ck["config"]["model"]["channels"] = 12  # the weights were trained with 8
    torch.save(ck, other / CKPT)
    return ["sample", str(other), "--n", "1", "--out", str(d / "s"), "--quiet"], "weights do not fit", d / "s"


def pickled_module_as_checkpoint(d, run):
    bad = d / "pickled"
    bad.mkdir()
    torch.save(torch.nn.Linear(2, 2), bad / CKPT)  # the SinGAN habit: a pickled module
    return ["sample", str(bad), "--n", "1", "--out", str(d / "s"), "--quiet"], "unreadable checkpoint", d / "s"


def unfinished_run_sampled(d, run):
    _pair(d)
    train(d / "half", load_slice(d / "img.png", d / "lab.png"), PRESETS["tiny"], stop_after=2, progress=False)
    argv = ["sample", str(d / "half"), "--n", "1", "--out", str(d / "s"), "--quiet"]
    return argv, "training is not finished", d / "s"


def sample_with_bad_label_map(d, run):
    save_png(np.full((30, 30), 7, np.uint8), d / "seven.png")
    argv = ["sample", str(run), "--n", "1", "--label", str(d / "seven.png"), "--out", str(d / "s"), "--quiet"]
    return argv, "seven.png: label values must be", d / "s"


def masks_without_labels_folder(d, run):
    (d / "nolabels" / "images").mkdir(parents=True)
    argv = ["masks", "--data", str(d / "nolabels"), "--out", str(d / "m"), "--n", "2", "--quiet"]
    return argv, "nolabels", d / "m"


def masks_with_unlabelled_lungs_not_found(d, run):
    sl = _slice_folder(d)
    save_png(chest_phantom(40, seed=5)[0][10:30], d / "unlab" / "cropped.png")  # cut through the lungs
    argv = ["masks", "--data", str(sl), "--lungs-from", str(d / "unlab"), "--out", str(d / "m"), "--n", "2", "--quiet"]
    return argv, "cropped.png: no lungs found automatically", d / "m"


def synthesize_from_folder_that_is_no_run(d, run):
    (d / "notarun").mkdir()
    argv = ["synthesize", "--runs", str(d / "notarun"), "--n", "2", "--out", str(d / "syn"), "--quiet"]
    return argv, "notarun/checkpoint.pt: no checkpoint", d / "syn"


def seg_train_image_without_label(d, run):
    sl = _slice_folder(d)
    (sl / "labels" / "s1.png").unlink()
    argv = ["seg", "train", "--data", str(sl), "--out", str(d / "seg"), "--steps", "1", "--quiet"]
    return argv, "s1.png: no label map", d / "seg"


def seg_size_not_multiple_of_16(d, run):
    sl = _slice_folder(d)
    argv = ["seg", "train", "--data", str(sl), "--out", str(d / "seg"), "--steps", "1", "--size", "40", "--quiet"]
    return argv, "multiple of 16", d / "seg"


def seg_eval_with_garbage_model(d, run):
    sl = _slice_folder(d)
    (d / "model").mkdir()
    (d / "model" / "model.pt").write_bytes(b"\x80\x04garbage")
    argv = ["seg", "eval", "--model", str(d / "model"), "--data", str(sl), "--out", str(d / "rep")]
    return argv, "model.pt", d / "rep"


def cls_negatives_folder_without_images(d, run):
    sl = _slice_folder(d)
    (d / "noimgs").mkdir()
    argv = ["cls", "train", "--data", str(sl), "--negatives", str(d / "noimgs"), "--out", str(d / "c"),
            "--steps", "1", "--quiet"]
    return argv, "noimgs: no images", d / "c"


def experiment_test_overlaps_data(d, run):
    sl = _slice_folder(d, 4)
    argv = ["experiment", "few-shot", "--data", str(sl), "--test", str(sl), "--k", "1", "--out", str(d / "e"),
            "--preset", "tiny", "--quiet"]
    return argv, "also in --data", d / "e"


# round 3: a fresh pass of bad inputs of the project's own design (issue 13)

def image_is_a_folder(d, run):
    _pair(d)
    (d / "dir.png").mkdir()
    return _train(d, d / "dir.png", d / "lab.png"), "dir.png: is a folder", d / "out"


def config_is_a_folder(d, run):
    _pair(d)
    (d / "cdir").mkdir()
    return _train(d, d / "img.png", d / "lab.png", "--config", str(d / "cdir")), "cdir: is a folder", d / "out"


def label_and_lung_both_given(d, run):
    _pair(d)
    return _train(d, d / "img.png", d / "lab.png", "--lung", str(d / "lab.png")), "not both", d / "out"


def label_and_infection_mask_both_given(d, run):
    _pair(d)
    argv = ["train", "--image", str(d / "img.png"), "--infection", str(d / "lab.png"), "--label", str(d / "lab.png"),
            "--out", str(d / "out"), "--preset", "tiny", "--quiet"]
    return argv, "not both", d / "out"


def masks_with_no_edit_names(d, run):
    sl = _slice_folder(d)
    argv = ["masks", "--data", str(sl), "--out", str(d / "m"), "--n", "2", "--edits", ",", "--quiet"]
    return argv, "no edit names", d / "m"


def masks_absurd_count(d, run):
    sl = _slice_folder(d)
    argv = ["masks", "--data", str(sl), "--out", str(d / "m"), "--n", "1000000000000", "--quiet"]
    return argv, "--n must be between 1 and", d / "m"


def synthesize_conditions_missing(d, run):
    argv = ["synthesize", "--runs", str(run), "--n", "2", "--conditions", str(d / "nope"), "--out", str(d / "syn"),
            "--quiet"]
    return argv, "nope: no such folder", d / "syn"


def seg_eval_of_a_classifier(d, run):
    from cosingan.downstream import cls
    from cosingan.downstream.nets import save_net

    sl = _slice_folder(d)
    save_net(cls.make_net(cls.ClsConfig(size=32)), cls.ClsConfig(size=32), d / "cm")
    argv = ["seg", "eval", "--model", str(d / "cm"), "--data", str(sl), "--out", str(d / "rep")]
    return argv, "unreadable segmentation model", d / "rep"


def _exp(d, sl, *extra):
    return ["experiment", "few-shot", "--data", str(sl), "--k", "1", "--out", str(d / "e"), "--preset", "tiny",
            "--seg-steps", "1", "--n-synth", "2", "--no-quality", "--quiet", *extra]


def experiment_fold_out_of_range(d, run):
    return _exp(d, _slice_folder(d, 4), "--fold", "7"), "--fold must be between 0 and 4", d / "e"


def experiment_task1_split_of_a_slice_folder(d, run):
    return _exp(d, _slice_folder(d, 4), "--split", "task1"), "--split task1 names cases", d / "e"


def experiment_seg_size_not_multiple_of_16(d, run):
    return _exp(d, _slice_folder(d, 4), "--seg-size", "50"), "multiple of 16", d / "e"


def experiment_same_k_twice(d, run):
    return _exp(d, _slice_folder(d, 4), "--k", "1", "1"), "--k 1 1: give one or more values, each once", d / "e"


def experiment_gan_config_with_unknown_key(d, run):
    cfg = d / "g.json"
    cfg.write_text('{"train": {"iterations": 100}}')
    return _exp(d, _slice_folder(d, 4), "--gan-config", str(cfg)), f"{cfg}: unknown config key(s) train.iterations", d / "e"


def quality_with_too_few_real_slices(d, run):
    sl = _slice_folder(d, 2)
    return ["quality", str(run), "--data", str(sl), "--out", str(d / "q"), "--quiet"], "at least 4 real slices", d / "q"


def train_many_with_data_and_images(d, run):
    sl = _slice_folder(d)
    argv = ["train-many", "--data", str(sl), "--images", str(sl / "images"), "--out", str(d / "r"), "--preset", "tiny"]
    return argv, "give --images and --labels, or --data", d / "r"


def unknown_device(d, run):
    return ["sample", str(run), "--n", "1", "--out", str(d / "s"), "--device", "gpu0", "--quiet"], "--device gpu0", d / "s"


CASES = [size_mismatch, labels_outside_012, empty_lung, infection_outside_lung, nan_image, constant_image,
         colour_image, three_channel_npy, zero_byte_image, truncated_png, text_file_as_image,
         unsupported_extension, nifti_4d, nifti_absurd_spacing, truncated_nifti, nifti_geometry_mismatch,
         image_given_as_label, huge_image, missing_label_file, no_label_given, unwritable_output, unknown_config_field,
         checkpoint_of_another_version, checkpoint_of_another_model_config, pickled_module_as_checkpoint,
         unfinished_run_sampled, sample_with_bad_label_map, masks_without_labels_folder,
         masks_with_unlabelled_lungs_not_found,
         synthesize_from_folder_that_is_no_run, seg_train_image_without_label, seg_size_not_multiple_of_16,
         seg_eval_with_garbage_model, cls_negatives_folder_without_images, experiment_test_overlaps_data,
         image_is_a_folder, config_is_a_folder, label_and_lung_both_given, label_and_infection_mask_both_given,
         masks_with_no_edit_names, masks_absurd_count, synthesize_conditions_missing, seg_eval_of_a_classifier,
         experiment_fold_out_of_range, experiment_task1_split_of_a_slice_folder, experiment_seg_size_not_multiple_of_16,
         experiment_same_k_twice, experiment_gan_config_with_unknown_key, quality_with_too_few_real_slices, train_many_with_data_and_images, unknown_device]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, tiny_run, capsys, case):
    argv, expected, must_not_exist = case(tmp_path, tiny_run)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cosingan: error: ") and expected in err, err
    assert not must_not_exist.exists()  # nothing half-written


def test_at_least_twenty_cases():
    assert len(CASES) >= 20


def test_no_traceback_from_the_console_script(tmp_path):
    """The installed entry point prints the same one line (no Python traceback)."""
    import subprocess
    import sys

    _pair(tmp_path)
    (tmp_path / "zero.png").write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "cosingan.cli", *_train(tmp_path, tmp_path / "zero.png",
                                                                     tmp_path / "lab.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("file is empty (0 bytes)")




@pytest.mark.parametrize("command", ["masks", "seg", "cls", "experiment", "quality"])
def test_unwritable_output_is_refused_before_any_work(tmp_path, tiny_run, capsys, command):
    """Every writing command checks its output folder first (seg and cls once failed only after training).
    The folder lies under a file, which no user (root included) can write into."""
    sl = _slice_folder(tmp_path, 5)
    for k in range(2):
        save_png(chest_phantom(40, seed=50 + k)[0], tmp_path / "neg" / f"n{k}.png")
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "o"
    argv = {"masks": ["masks", "--data", str(sl), "--n", "2"],
            "seg": ["seg", "train", "--data", str(sl), "--steps", "50000"],
            "cls": ["cls", "train", "--data", str(sl), "--negatives", str(tmp_path / "neg"), "--steps", "50000"],
            "experiment": ["experiment", "few-shot", "--data", str(sl), "--k", "1", "--preset", "tiny"],
            "quality": ["quality", str(tiny_run), "--data", str(sl)]}[command]
    capsys.readouterr()
    assert main(argv + ["--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("not writable" in err or "not a folder" in err), err
