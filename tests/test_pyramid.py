from __future__ import annotations

import pytest
import torch

from cosingan.gan.encoding import one_hot, resize_condition
from cosingan.gan.pyramid import finest_size, image_pyramid, scale_sizes, sizes_like


def test_scale_sizes_land_on_min_and_max():
    sizes = scale_sizes(392, 400, min_size=25, max_size=256, factor=0.75)
    assert sizes[-1] == (251, 256)  # long side = max_size, aspect kept
    assert min(sizes[0]) == 25  # coarsest short side lands exactly on min_size
    assert len(sizes) == 10
    ratios = [sizes[i + 1][1] / sizes[i][1] for i in range(len(sizes) - 1)]
    assert all(1.2 < r < 1.4 for r in ratios)  # ~1/0.75 everywhere after adjustment
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(sizes, sizes[1:]))


def test_paper_pyramid_at_512_has_about_13_scales():
    assert len(scale_sizes(512, 512, 25, 512, 0.75)) in (12, 13)


def test_finest_size_never_upscales():
    assert finest_size(100, 80, 256) == (100, 80)
    assert finest_size(512, 256, 256) == (256, 128)


def test_single_scale_when_image_is_small():
    assert scale_sizes(20, 30, 25, 256, 0.75) == [(20, 30)]


def test_bad_factor_raises():
    with pytest.raises(ValueError):
        scale_sizes(100, 100, 25, 256, 1.2)


def test_sizes_like_keeps_ratios_and_pixel_scale():
    trained = scale_sizes(256, 256, 25, 256, 0.75)
    new = sizes_like(trained, 400, 200)  # another map: long side goes to 256, ratios kept
    assert new[-1] == (256, 128)
    assert len(new) == len(trained)
    assert new[0][0] == trained[0][0]


def test_image_and_condition_pyramids_have_the_scale_shapes():
    sizes = scale_sizes(64, 48, 12, 64, 0.7)
    x = torch.rand(1, 1, 64, 48) * 2 - 1
    pyr = image_pyramid(x, sizes)
    assert [tuple(p.shape[-2:]) for p in pyr] == sizes
    assert all(p.min() >= -1 and p.max() <= 1 for p in pyr)
    lab = torch.randint(0, 4, (1, 64, 48))
    c = one_hot(lab, True)
    for s in sizes:
        r = resize_condition(c, s)
        assert r.shape == (1, 4, *s)
        assert torch.allclose(r.sum(1), torch.ones(1, *s), atol=1e-5)  # a soft one-hot stays a partition
