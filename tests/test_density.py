"""Lesion density (synth/density.py): dense patches inside the infection only, seeded, and through
`cosingan synthesize --consolidation` (tests/test_dataset.py)."""

from __future__ import annotations

import numpy as np

from cosingan.data.phantom import chest_phantom
from cosingan.synth.density import consolidate, tissue_level


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


def test_consolidation_is_seeded_and_can_be_off():
    img, lab = _slice()
    a = consolidate(img, lab, np.random.default_rng(5), p=1.0)
    assert np.array_equal(a, consolidate(img, lab, np.random.default_rng(5), p=1.0))
    assert not np.array_equal(a, consolidate(img, lab, np.random.default_rng(6), p=1.0))
    assert np.array_equal(consolidate(img, lab, np.random.default_rng(5), p=0.0), img)
    healthy = np.where(lab == 2, 1, lab)
    assert np.array_equal(consolidate(img, healthy, np.random.default_rng(5), p=1.0), img)
