"""Lesion density (synth/density.py): dense patches inside the infection only, seeded, and through
`cosingan synthesize --consolidation` (tests/test_dataset.py); lesion margins; the normal lung's tone and its
dependent density; the steps declared once for `synthesize` and the experiment."""

from __future__ import annotations

import numpy as np
import pytest

from cosingan.data.phantom import chest_phantom
from cosingan.synth.density import (ImageSteps, consolidate, dependent_density, fade_margins, lung_quantiles,
                                    match_lung_tone, tissue_level)


def _slice():
    img, lab = chest_phantom(96, seed=3)
    assert (lab == 2).sum() > 50
    return img.astype(np.float32), lab


def test_consolidation_brightens_infection_toward_tissue_and_nothing_else():
    img, lab = _slice()
    out = consolidate(img, lab, np.random.default_rng(0), p=1.0, max_share=0.8)
    assert out.dtype == img.dtype and out.shape == img.shape
    assert np.array_equal(out[lab != 2], img[lab != 2])  # lung, body and air untouched
    changed = np.abs(out - img) > 1e-6
    assert changed.any() and (lab[changed] == 2).all()
    inf = lab == 2
    tissue = tissue_level(img, lab)
    # the dense part moved toward soft tissue: closer to it than before, on average
    assert np.abs(out[changed] - tissue).mean() < np.abs(img[changed] - tissue).mean()
    assert out[inf].mean() > img[inf].mean()


def test_consolidation_depth_keeps_lesion_rims_and_small_lesions_as_drawn():
    from scipy import ndimage

    img, lab = _slice()
    plain = consolidate(img, lab, np.random.default_rng(0), p=1.0)
    assert np.array_equal(consolidate(img, lab, np.random.default_rng(0), p=1.0, depth=0.0), plain)
    out = consolidate(img, lab, np.random.default_rng(0), p=1.0, depth=4.0)
    px = ndimage.distance_transform_edt(lab == 2)
    core, rim = px * 256.0 / max(lab.shape) > 4.0, px == 1  # the lesions' outermost pixels: 2.7 px at 256
    moved, moved_plain = np.abs(out - img), np.abs(plain - img)
    assert moved[core].mean() > 0.05  # the core made dense
    assert moved[rim].mean() < 0.4 * moved_plain[rim].mean()  # the rim far less than without a depth (blur only)
    assert np.array_equal(consolidate(img, lab, np.random.default_rng(0), p=1.0, depth=255.0), img)  # none so deep


@pytest.mark.parametrize("step", [consolidate, fade_margins])
def test_lesion_steps_are_seeded_and_can_be_off(step):
    img, lab = _slice()
    a = step(img, lab, np.random.default_rng(5), p=1.0)
    assert np.array_equal(a, step(img, lab, np.random.default_rng(5), p=1.0))
    assert not np.array_equal(a, step(img, lab, np.random.default_rng(6), p=1.0))
    assert np.array_equal(step(img, lab, np.random.default_rng(5), p=0.0), img)
    healthy = np.where(lab == 2, 1, lab)
    assert np.array_equal(step(img, healthy, np.random.default_rng(5), p=1.0), img)


def _edge_profile(img, lab):
    """Mean grey of normal lung 1-2 px outside the infection and of infection 1-2 px inside its edge."""
    from scipy import ndimage

    inf, lung = lab == 2, lab == 1
    d_out, d_in = ndimage.distance_transform_edt(~inf), ndimage.distance_transform_edt(inf)
    return img[lung & (d_out <= 2)].mean(), img[inf & (d_in <= 2)].mean()


def test_lesion_margins_fade_the_edge_from_both_sides_and_touch_nothing_far_from_it():
    from scipy import ndimage

    img, lab = _slice()
    out = fade_margins(img, lab, np.random.default_rng(0), p=1.0)
    assert out.dtype == img.dtype and out.shape == img.shape
    body = lab == 0
    assert np.array_equal(out[body], img[body])  # body and air untouched
    far = (lab == 1) & (ndimage.distance_transform_edt(lab != 2) > 12)
    assert far.any() and np.abs(out[far] - img[far]).max() < 0.02  # the fade dies out with distance
    lung_near, rim = _edge_profile(img, lab)
    lung_near2, rim2 = _edge_profile(out, lab)
    assert lung_near2 > lung_near + 0.01 and rim2 < rim - 0.01  # lung brightened toward the lesion, rim darkened
    assert (out[lab == 1] >= img[lab == 1] - 1e-6).all() and (out[lab == 2] <= img[lab == 2] + 1e-6).all()



def test_lung_tone_gives_the_normal_lung_the_reference_grey_levels_and_touches_nothing_else():
    img, lab = _slice()
    lung = lab == 1
    brighter = img.copy()
    brighter[lung] = np.clip(img[lung] + 0.6 * (img[lung] - np.median(img[lung])) + 0.1, -1, 1)  # wider and brighter
    ref = lung_quantiles(brighter, lab)
    out = match_lung_tone(img, lab, ref, np.random.default_rng(0), p=1.0)
    assert out.dtype == img.dtype and np.array_equal(out[~lung], img[~lung])  # lesions, body and air untouched
    for q in (50, 95):
        want, before, after = (np.percentile(x[lung], q) for x in (brighter, img, out))
        assert abs(after - want) < 0.5 * abs(before - want)  # most of the way to the reference
    order = np.argsort(img[lung])  # a monotone mapping of the smooth part: bright stays brighter than dark
    assert np.corrcoef(img[lung][order], out[lung][order])[0, 1] > 0.9
    assert np.array_equal(match_lung_tone(img, lab, None, np.random.default_rng(0)), img)  # no reference
    assert np.array_equal(match_lung_tone(img, lab, ref, np.random.default_rng(0), p=0.0), img)  # p = 0: off
    assert lung_quantiles(img, np.zeros_like(lab)) is None  # no normal lung to read


def test_the_edge_study_sees_a_sharp_edge_and_the_faded_one():
    """studies/lesion_edges.py: a lesion drawn sharp reads 1 inside and 0 outside its label; faded, its
    profile steps down across the edge instead."""
    from studies.lesion_edges import edge_profile

    lab = np.zeros((256, 256), np.uint8)
    lab[20:236, 20:236] = 1
    lab[60:180, 60:180] = 2
    img = np.where(lab == 2, 200.0, np.where(lab == 1, 60.0, 120.0))
    sharp = edge_profile(img, lab)
    assert np.allclose(sharp[:6], 1) and np.allclose(sharp[6:], 0)
    faded = fade_margins(img / 127.5 - 1, lab, np.random.default_rng(0), p=1.0)
    p = edge_profile((faded + 1) * 127.5, lab)
    assert 0.1 < p[6] < 0.5 and p[6] > p[8] > p[11] >= 0  # outside: a fading halo
    assert 0.5 < p[5] < 0.9 and p[5] < p[3] < p[0] <= 1  # inside: a fading rim
    assert edge_profile(np.where(lab == 2, 62.0, img), lab) is None  # lesion too faint to measure


def test_dependent_density_makes_the_normal_lung_denser_toward_the_back_and_touches_nothing_else():
    img, lab = _slice()
    out = dependent_density(img, lab, np.random.default_rng(0), p=1.0)
    assert out.dtype == img.dtype and np.array_equal(out[lab != 1], img[lab != 1])  # lesions, body, air untouched
    lung = lab == 1
    shift = (out - img)[lung].astype(np.float64)
    rows = np.nonzero(lung)[0]
    assert abs(shift.mean()) < 1e-3  # a ramp, not a brighter lung
    assert np.corrcoef(rows, shift)[0, 1] > 0.99  # rising linearly from front (top) to back
    assert np.array_equal(dependent_density(img, lab, np.random.default_rng(0), p=1.0), out)  # seeded
    assert np.array_equal(dependent_density(img, lab, np.random.default_rng(0), p=0.0), img)  # p = 0: off
    slopes = [np.polyfit(rows, (dependent_density(img, lab, np.random.default_rng(s)) - img)[lung], 1)[0]
              for s in range(20)]
    assert min(slopes) > 0 and max(slopes) > 2 * min(slopes)  # drawn per slice


def test_image_steps_are_one_declaration_for_synthesize_and_the_experiment():
    from dataclasses import fields

    from cosingan.errors import InputError
    from cosingan.experiment.config import ExperimentConfig

    assert ImageSteps().spec() == {"consolidation": 0.5}  # datasets made before the other steps resume
    assert ImageSteps(consolidation=0.0, lung_tone=0.5).spec() == {"consolidation": 0.0, "lung_tone": 0.5}
    cfg = ExperimentConfig(dependent_density=1.0, consolidation_depth=4.0)
    assert ImageSteps.of(cfg) == ImageSteps(dependent_density=1.0, consolidation_depth=4.0)
    assert {f.name for f in fields(ImageSteps)} <= {f.name for f in fields(ExperimentConfig)}
    with pytest.raises(InputError, match="--dependent-density must be between 0.0 and 1.0"):
        ExperimentConfig(dependent_density=1.5)
    img, lab = _slice()
    steps = ImageSteps(consolidation=1.0, dependent_density=1.0)
    assert np.array_equal(steps.apply(img, lab, 5), steps.apply(img, lab, 5))
    # a step switched on leaves the other steps' draws as they were: consolidation alone equals its own call
    assert np.array_equal(ImageSteps(consolidation=1.0).apply(img, lab, 5),
                          consolidate(img, lab, np.random.default_rng([5, 11]), 1.0))


def test_lung_gradient_study_reads_a_ramp_in_the_normal_lung_and_none_in_a_flat_one():
    """studies/lung_gradient.py: a lung drawn flat reads 0 in every tenth; with the dependent-density step it
    rises from front to back, by about the drawn slope."""
    from studies.lung_gradient import gradient_profile, slope

    lab = np.zeros((128, 128), np.uint8)
    lab[20:110, 10:60] = 1
    lab[20:110, 70:120] = 1
    lab[40:50, 20:30] = 2  # infection: its surroundings are left out
    flat = np.where(lab > 0, 60.0, 200.0)
    p = gradient_profile(flat, lab)
    assert p is not None and np.allclose(p, 0.0)
    img = flat / 127.5 - 1.0
    ramped = (dependent_density(img, lab, np.random.default_rng(0)) + 1.0) * 127.5
    p = gradient_profile(ramped, lab)
    assert np.all(np.diff(p) > 0) and slope(p) > 0
    assert gradient_profile(flat[:40, :40], lab[:40, :40]) is None  # too little lung to read


def test_lung_gradient_study_reads_the_lungs_of_unannotated_slices_as_lung(tmp_path):
    """studies/lung_gradient.py --normals: the automatic air/body/lung maps come back as 0/1/2 maps whose 1 is
    the lung (not the body)."""
    from PIL import Image

    from studies.lung_gradient import _normals

    yy, xx = np.mgrid[:128, :128]
    body = (yy - 64) ** 2 / 50**2 + (xx - 64) ** 2 / 60**2 < 1
    lungs = ((yy - 60) ** 2 / 30**2 + (xx - 40) ** 2 / 14**2 < 1) | \
        ((yy - 60) ** 2 / 30**2 + (xx - 88) ** 2 / 14**2 < 1)
    grey = np.where(lungs, 30, np.where(body, 180, 0)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "n.png")
    [(g, lab)] = list(_normals(tmp_path, 5))
    assert set(np.unique(lab)) <= {0, 1} and (lab == 1).sum() > 0.9 * lungs.sum()
    assert not (lab == 1)[body & ~lungs].any()
