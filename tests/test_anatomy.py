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
    for kind in ("generated", "transplant", "inject"):
        outs[kind] = tmp_path / kind
        assert main(["synthesize", "--runs", str(tiny_run), "--conditions", str(phantom_folder), "--n", "3",
                     "--out", str(outs[kind]), "--anatomy", kind, "--consolidation", "0", "--quiet"]) == 0
        assert json.loads((outs[kind] / "synthesize.json").read_text())["anatomy"] == kind
    changed = 0
    for name in ("syn_00000", "syn_00001", "syn_00002"):
        a, b = (np.asarray(Image.open(outs[k] / "images" / f"{name}.png")).astype(int) for k in ("generated", "transplant"))
        lab = np.asarray(Image.open(outs["transplant"] / "labels" / f"{name}.png"))
        for kind in ("generated", "inject"):  # the labels are the condition's, whatever the anatomy
            assert np.array_equal(lab, np.asarray(Image.open(outs[kind] / "labels" / f"{name}.png")))
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


def test_inject_splits_the_pyramid_without_changing_it_and_blends_where_the_weight_says(tiny_run):
    """`sample_maps(carried=..., at=i)` runs the scales up to i, blends, then the finer ones: with zero weight
    it is the plain sample to the byte; with full weight at the finest scale it is the carried image; and a
    sample does not depend on its batch (to float rounding, as without `carried`)."""
    from cosingan.gan.run import TrainedRun

    run = TrainedRun.from_pretrained(tiny_run)
    label4 = run.train_pairs[0][1]
    maps, seeds = [label4, label4], [3, 4]
    plain = run.sample_maps(maps, seeds)
    shape = label4.shape
    for at in range(len(run.sizes)):
        zero = [(np.ones(shape, np.float32), np.zeros(shape, np.float32))] * 2
        assert np.array_equal(run.sample_maps(maps, seeds, carried=zero, at=at), plain)
    target = np.linspace(-0.8, 0.8, label4.size, dtype=np.float32).reshape(shape)
    full = run.sample_maps(maps, seeds, carried=[(target, np.ones(shape, np.float32)), None], at=len(run.sizes) - 1)
    assert np.allclose(full[0], target, atol=1e-5) and np.array_equal(full[1], plain[1])
    both = run.sample_maps(maps, seeds, carried=[(target, np.ones(shape, np.float32))] * 2, at=1)
    alone = run.sample_maps(maps[:1], seeds[1:], carried=[(target, np.ones(shape, np.float32))], at=1)
    assert np.allclose(both[1], alone[0], atol=1e-6)


def test_inject_carries_the_training_slices_body_and_lets_the_finer_scales_draw(tiny_run, phantom_folder):
    """`inject`: the body is nearer the carried anatomy than the generator's own, yet not a copy of it
    (the finer scales drew over it, so the samples of one map differ there); the name is checked."""
    import pytest

    from cosingan.data.readers import load_slice
    from cosingan.data.layout import list_slice_folder
    from cosingan.gan.run import TrainedRun
    from cosingan.synth.anatomy import carried, inject_scale, sample

    run = TrainedRun.from_pretrained(tiny_run)
    img_path, lab_path = list_slice_folder(phantom_folder)[0]
    sl = load_slice(img_path, lab_path)
    cond4 = run.condition(sl.label, body_from_image(sl.image, sl.label))
    warped, weight = carried(cond4, *run.train_pairs[0])
    body = weight > 0.5
    assert body.sum() > 20
    gen = sample(run, [cond4, cond4], [0, 1], "generated")
    inj = sample(run, [cond4, cond4], [0, 1], "inject")
    assert 0 <= inject_scale(run.sizes) < len(run.sizes)
    assert np.abs(inj[0] - warped)[body].mean() < np.abs(gen[0] - warped)[body].mean()
    assert not np.array_equal(inj[0][body], warped[body]) and not np.array_equal(inj[0], inj[1])
    with pytest.raises(ValueError, match="anatomy"):
        sample(run, [cond4], [0], "borrowed")
