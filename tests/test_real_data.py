"""Integration on real dev slices (../shared/data): small but real training, then condition checks."""

from __future__ import annotations

import numpy as np
import pytest

from cosingan.data.labelmap import INFECTION, LUNG, body_from_image
from cosingan.data.readers import load_slice
from cosingan.gan import TrainedRun, sample_seed, train

from conftest import require_shared_data, tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    data = require_shared_data()
    sl = load_slice(data / "images" / "medseg_019.png", data / "labels" / "medseg_019.png")
    cfg = tiny(model={"max_size": 64, "min_size": 16, "channels": 16},
               train={"iters": 60, "d_steps": 2, "aug_bank": 8, "ckpt_every": 1000})
    run = tmp_path_factory.mktemp("real") / "run"
    train(run, sl, cfg, progress=False)
    return run, data


def _contrast(model, label, image, n=6):
    label4 = model.condition(label, body_from_image(image, label))
    imgs = model(label4, [sample_seed(0, 0, k) for k in range(n)])
    inf, lung = label4 == INFECTION, label4 == LUNG
    return imgs, label4, np.array([im[inf].mean() - im[lung].mean() for im in imgs])


def test_samples_put_infection_where_the_training_map_says(real_run):
    run, data = real_run
    model = TrainedRun.from_pretrained(run)
    sl = load_slice(data / "images" / "medseg_019.png", data / "labels" / "medseg_019.png")
    imgs, l4, contrast = _contrast(model, sl.label, sl.image)
    # in the real slice infection is brighter than aerated lung; every sample must agree
    assert (contrast > 0.1).all(), contrast
    lung = l4 >= LUNG
    diff = np.abs(imgs[0] - imgs[1])
    assert diff[lung].mean() > 0.01  # samples differ inside the lungs


def test_samples_follow_the_map_of_another_slice(real_run):
    run, data = real_run
    model = TrainedRun.from_pretrained(run)
    other = load_slice(data / "images" / "medseg_044.png", data / "labels" / "medseg_044.png")
    _, l4, contrast = _contrast(model, other.label, other.image)
    assert (l4 == INFECTION).any()
    assert (contrast > 0.1).all(), contrast


def test_lungs_found_in_every_real_normal_slice():
    """The unlabelled regime's lungs on the real unannotated slices (MosMed CT-0, full field of view, 512 px):
    found in all of them, a plausible share of the body's box, two lungs (or one merged) that reach across
    both halves of the body."""
    from conftest import SHARED

    from cosingan.data.conditions import sources_from_unlabelled

    require_shared_data()
    found = sources_from_unlabelled(SHARED / "mosmed_normal_slices")
    assert len(found) == 127
    for s in found:
        lung = s.label4 == LUNG
        assert 0.15 < lung.mean() < 0.55, s.name
        half = lung.shape[1] // 2
        assert lung[:, :half].sum() > 0.3 * lung[:, half:].sum() and lung[:, half:].sum() > 0.3 * lung[:, :half].sum()
