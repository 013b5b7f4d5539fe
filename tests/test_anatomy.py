"""Anatomy outside the lungs carried from the training slice (`synth/anatomy.py`)."""

from __future__ import annotations

import numpy as np

from cosingan.data.labelmap import BODY, LUNG, body_from_image, to_label4
from cosingan.data.phantom import chest_phantom
from cosingan.synth.anatomy import carry_map, transplant


def _pair(seed: int, size: int = 64):
    img, lab = chest_phantom(size, seed=seed)
    return img, to_label4(lab, body_from_image(img, lab))


def test_the_body_comes_from_the_training_slice_and_the_lungs_stay_synthetic():
    train_img, train4 = _pair(1)
    _, cond4 = _pair(2)
    synthetic = np.full(cond4.shape, -0.5, np.float32)  # a flat field where the body should be
    out = transplant(synthetic, cond4, train_img, train4)
    lungs = cond4 >= LUNG
    assert np.array_equal(out[lungs], synthetic[lungs])  # the generator's lungs, to the last pixel
    body = cond4 == BODY
    assert np.abs(out[body] - synthetic[body]).mean() > 0.2  # the body is the training slice's now
    assert out.dtype == synthetic.dtype and out.shape == synthetic.shape


def test_the_warp_carries_lungs_onto_lungs():
    train_img, train4 = _pair(3)
    _, cond4 = _pair(4)
    coords = carry_map(train4, cond4)
    from scipy import ndimage

    warped4 = ndimage.map_coordinates(train4, coords, order=0)
    lung_c, lung_w = cond4 >= LUNG, warped4 >= LUNG
    overlap = (lung_c & lung_w).sum() / (lung_c | lung_w).sum()
    before = (lung_c & (train4 >= LUNG)).sum() / (lung_c | (train4 >= LUNG)).sum() if train4.shape == cond4.shape else 0
    assert overlap > 0.85 and overlap > before  # the training lungs land on the condition's lungs
    same = carry_map(train4, train4)  # a map onto itself: (almost) no move
    rows, cols = np.meshgrid(np.arange(train4.shape[0]), np.arange(train4.shape[1]), indexing="ij")
    assert np.abs(same[0] - rows).max() < 1.0 and np.abs(same[1] - cols).max() < 1.0


def test_maps_whose_lungs_cannot_be_paired_are_left_alone():
    train_img, train4 = _pair(5)
    _, cond4 = _pair(6)
    one_lung = cond4.copy()
    one_lung[:, : cond4.shape[1] // 2][one_lung[:, : cond4.shape[1] // 2] >= LUNG] = BODY
    synthetic = np.zeros(cond4.shape, np.float32)
    assert transplant(synthetic, one_lung, train_img, train4) is synthetic


def test_synthesize_with_the_training_slices_anatomy(tiny_run, tmp_path, phantom_folder):
    """`synthesize --anatomy transplant`: the same pairs as without, but for the body outside the lungs;
    recorded with the dataset, so a folder of the other kind is not resumed with it."""
    import json

    from PIL import Image

    from cosingan.cli import main

    outs = {}
    for kind in ("generated", "transplant"):
        outs[kind] = tmp_path / kind
        assert main(["synthesize", "--runs", str(tiny_run), "--conditions", str(phantom_folder), "--n", "3",
                     "--out", str(outs[kind]), "--anatomy", kind, "--consolidation", "0", "--quiet"]) == 0
    spec = json.loads((outs["transplant"] / "synthesize.json").read_text())
    assert spec["anatomy"] == "transplant"
    assert json.loads((outs["generated"] / "synthesize.json").read_text())["anatomy"] == "generated"
    changed = 0
    for name in ("syn_00000", "syn_00001", "syn_00002"):
        a, b = (np.asarray(Image.open(outs[k] / "images" / f"{name}.png")).astype(int) for k in outs)
        lab = np.asarray(Image.open(outs["transplant"] / "labels" / f"{name}.png"))
        assert np.array_equal(lab, np.asarray(Image.open(outs["generated"] / "labels" / f"{name}.png")))
        assert np.array_equal(a[lab > 0], b[lab > 0])  # lungs and lesions: the generator's
        changed += int((a[lab == 0] != b[lab == 0]).any())
    assert changed >= 2
    assert main(["synthesize", "--runs", str(tiny_run), "--conditions", str(phantom_folder), "--n", "3",
                 "--out", str(outs["generated"]), "--anatomy", "transplant", "--quiet"]) == 2


def test_quality_judges_the_samples_with_the_training_slices_anatomy(tiny_run, tmp_path, phantom_folder):
    """`quality --anatomy transplant` scores the samples `synthesize --anatomy transplant` makes: the lungs
    are the generator's either way (the lungs-only realism test sees the same images and gives the same
    AUC), the body is not (its grey levels differ); the setting is recorded."""
    import json

    from cosingan.cli import main

    rows = {}
    for kind in ("generated", "transplant"):
        out = tmp_path / kind
        assert main(["quality", str(tiny_run), "--data", str(phantom_folder), "--out", str(out), "--seg-steps", "2",
                     "--c2st-steps", "2", "--c2st-seeds", "1", "--anatomy", kind, "--quiet"]) == 0
        rec = json.loads((out / "quality.json").read_text())
        assert rec["config"]["anatomy"] == kind
        rows[kind] = rec["rows"][0]
    g, t = rows["generated"], rows["transplant"]
    assert g["realism_auc_lung"] == t["realism_auc_lung"] and g["w1_lung"] == t["w1_lung"]
    assert g["w1_body"] != t["w1_body"]
