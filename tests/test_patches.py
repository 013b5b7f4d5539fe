"""Same-source detection: lung patches with and without infection from the same slices."""

from __future__ import annotations

import json

import numpy as np

from cosingan.data.phantom import chest_phantom
from cosingan.downstream.patches import MIN_INFECTED, PATCH_FRACTION, lung_patches, patch_set


def _slice(seed=0, n=96):
    img, lab = chest_phantom(n, seed=seed)
    return img.astype(np.float32) / 127.5 - 1, lab


def test_patches_are_lung_with_or_without_infection():
    image, label = _slice()
    patches, targets = lung_patches(image, label, 32)
    assert patches and set(targets) == {0, 1}
    assert all(p.shape == (32, 32) and -1 <= p.min() and p.max() <= 1 for p in patches)
    # recompute the grid by hand: each positive holds >= 5 % infection, each negative none
    side = int(round(max(label.shape) * PATCH_FRACTION))
    stride = side // 2
    pos = neg = 0
    for r in range(0, label.shape[0] - side + 1, stride):
        for c in range(0, label.shape[1] - side + 1, stride):
            w = label[r: r + side, c: c + side]
            if (w > 0).mean() < 0.5:
                continue
            inf = (w == 2).mean()
            pos += inf >= MIN_INFECTED
            neg += inf == 0
    assert (pos, neg) == (sum(targets), len(targets) - sum(targets))
    again = lung_patches(image, label, 32)  # a fixed grid: the same patches every time
    assert again[1] == targets and all(np.array_equal(a, b) for a, b in zip(again[0], patches))


def test_per_class_cap_and_no_lung():
    image, label = _slice(seed=3)
    p, t = lung_patches(image, label, 16, per_class=2)
    assert sum(t) <= 2 and len(t) - sum(t) <= 2
    assert lung_patches(image, np.zeros_like(label), 16) == ([], [])
    from cosingan.data.readers import Slice

    p, t = patch_set([Slice(image, label, None, "png"), Slice(image, label, None, "png")], 16, per_class=2)
    assert len(t) == 2 * len(lung_patches(image, label, 16, per_class=2)[1])


def test_a_model_trained_before_a_setting_existed_is_refused(tmp_path):
    """A model recorded without a setting added later (ClsConfig.crop) is refused with one line naming the
    setting, and left as it was: folders of earlier versions are re-run, not guessed at."""
    from dataclasses import asdict

    import pytest

    from cosingan.downstream.cls import ClsConfig
    from cosingan.errors import InputError
    from cosingan.experiment.tasks import TrainingSet, _reuse_or_claim

    data = tmp_path / "set"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    ts = TrainingSet("r0_C_allreal_strongaug", (data,), "strong", 0)
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.pt").write_bytes(b"x")
    old = {k: v for k, v in asdict(ClsConfig()).items() if k != "crop"}
    (d / "train.json").write_text(meta := json.dumps({"config": old}))
    with pytest.raises(InputError, match=r"trained with other settings \(crop: None -> True\)"):
        _reuse_or_claim(d, ClsConfig(), ts)
    assert (d / "model.pt").read_bytes() == b"x" and (d / "train.json").read_text() == meta
