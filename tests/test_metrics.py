"""Segmentation metrics as the COVID-19-CT-Seg benchmark computes them.

The NSD reference values below were computed once with DeepMind's `surface-distance` package (the
benchmark's implementation: compute_surface_distances + compute_surface_dice_at_tolerance) on the fixed
masks built here; the test does not depend on that package.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cosingan.downstream.metrics import score_case, summarize

def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r

def cases():
    s = (48, 56)
    a = disc(s, 24, 28, 12)
    out = {
        "disc_shifted": (a, disc(s, 26, 29, 12)),
        "disc_smaller": (a, disc(s, 24, 28, 9)),
        "two_blobs": (disc(s, 14, 14, 6) | disc(s, 34, 40, 8), disc(s, 15, 15, 5) | disc(s, 33, 42, 8)),
        "ellipse_vs_disc": (((np.mgrid[:48, :56][0] - 24) / 14.0) ** 2 + ((np.mgrid[:48, :56][1] - 28) / 9.0) ** 2 <= 1, a),
    }
    line = np.zeros(s, bool); line[10:40, 20] = True
    line2 = np.zeros(s, bool); line2[12:40, 21] = True
    out["one_pixel_lines"] = (line, line2)
    dot = np.zeros(s, bool); dot[5, 5] = True
    dot2 = np.zeros(s, bool); dot2[6, 7] = True
    out["single_pixels"] = (dot, dot2)
    return out

SPACINGS = [(1.0, 1.0), (0.7, 0.7), (1.44, 1.44), (0.8, 1.3)]
TOLERANCES = [1.0, 3.0]

REFERENCE = {
    "disc_shifted|1.0,1.0|1.0": 0.521317,
    "disc_shifted|1.0,1.0|3.0": 1.0,
    "disc_shifted|0.7,0.7|1.0": 0.707367,
    "disc_shifted|0.7,0.7|3.0": 1.0,
    "disc_shifted|1.44,1.44|1.0": 0.198537,
    "disc_shifted|1.44,1.44|3.0": 0.902874,
    "disc_shifted|0.8,1.3|1.0": 0.385621,
    "disc_shifted|0.8,1.3|3.0": 1.0,
    "disc_smaller|1.0,1.0|1.0": 0.0,
    "disc_smaller|1.0,1.0|3.0": 1.0,
    "disc_smaller|0.7,0.7|1.0": 0.0,
    "disc_smaller|0.7,0.7|3.0": 1.0,
    "disc_smaller|1.44,1.44|1.0": 0.0,
    "disc_smaller|1.44,1.44|3.0": 0.160646,
    "disc_smaller|0.8,1.3|1.0": 0.0,
    "disc_smaller|0.8,1.3|3.0": 0.833685,
    "two_blobs|1.0,1.0|1.0": 0.584806,
    "two_blobs|1.0,1.0|3.0": 1.0,
    "two_blobs|0.7,0.7|1.0": 0.742457,
    "two_blobs|0.7,0.7|3.0": 1.0,
    "two_blobs|1.44,1.44|1.0": 0.292671,
    "two_blobs|1.44,1.44|3.0": 0.939654,
    "two_blobs|0.8,1.3|1.0": 0.512183,
    "two_blobs|0.8,1.3|3.0": 1.0,
    "ellipse_vs_disc|1.0,1.0|1.0": 0.457818,
    "ellipse_vs_disc|1.0,1.0|3.0": 1.0,
    "ellipse_vs_disc|0.7,0.7|1.0": 0.569211,
    "ellipse_vs_disc|0.7,0.7|3.0": 1.0,
    "ellipse_vs_disc|1.44,1.44|1.0": 0.193221,
    "ellipse_vs_disc|1.44,1.44|3.0": 0.795058,
    "ellipse_vs_disc|0.8,1.3|1.0": 0.437265,
    "ellipse_vs_disc|0.8,1.3|3.0": 0.866181,
    "one_pixel_lines|1.0,1.0|1.0": 0.979481,
    "one_pixel_lines|1.0,1.0|3.0": 1.0,
    "one_pixel_lines|0.7,0.7|1.0": 0.98798,
    "one_pixel_lines|0.7,0.7|3.0": 1.0,
    "one_pixel_lines|1.44,1.44|1.0": 0.485491,
    "one_pixel_lines|1.44,1.44|3.0": 0.99399,
    "one_pixel_lines|0.8,1.3|1.0": 0.492025,
    "one_pixel_lines|0.8,1.3|3.0": 1.0,
    "single_pixels|1.0,1.0|1.0": 0.25,
    "single_pixels|1.0,1.0|3.0": 1.0,
    "single_pixels|0.7,0.7|1.0": 0.5,
    "single_pixels|0.7,0.7|3.0": 1.0,
    "single_pixels|1.44,1.44|1.0": 0.0,
    "single_pixels|1.44,1.44|3.0": 0.75,
    "single_pixels|0.8,1.3|1.0": 0.0,
    "single_pixels|0.8,1.3|3.0": 1.0,
}


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_nsd_matches_the_benchmark_reference(key):
    name, sp, tol = key.split("|")
    gt, pr = cases()[name]
    spacing = tuple(float(x) for x in sp.split(","))
    region = "lung" if float(tol) == 1.0 else "infection"  # lung is scored at 1 mm, infection at 3 mm
    truth = np.where(gt, 1 if region == "lung" else 2, 0).astype(np.uint8)
    pred = np.where(pr, 1 if region == "lung" else 2, 0).astype(np.uint8)
    got = score_case(pred, truth, spacing)[f"{region}_nsd"]
    assert abs(got - REFERENCE[key]) < 1e-5, (key, got)


def test_empty_regions_are_left_out_and_counted():
    s = (48, 56)
    lung = disc(s, 24, 28, 12).astype(np.uint8)
    inf = lung.copy()
    inf[disc(s, 24, 28, 4)] = 2
    case_empty = score_case(lung, lung, (1.0, 1.0))  # no infection in truth nor prediction
    assert math.isnan(case_empty["infection_dsc"]) and math.isnan(case_empty["infection_nsd"])
    assert case_empty["lung_dsc"] == 1.0
    missed = score_case(lung, inf, (1.0, 1.0))  # infection in truth only: 0
    assert missed["infection_dsc"] == 0.0 and missed["infection_nsd"] == 0.0
    s = summarize([{"case": "a", **case_empty}, {"case": "b", **missed}, {"case": "c", **score_case(inf, inf, None)}])
    assert s["excluded"] == {"lung": 0, "infection": 1}
    assert s["mean"]["infection_dsc"] == 0.5  # (0 + 1) / 2: the empty case is not counted
    json.dumps(s, allow_nan=False)  # means stay finite when some cases are left out


def test_volumes_are_scored_in_3d_with_their_spacing():
    gt = np.zeros((6, 30, 30), np.uint8)
    gt[1:5, 5:25, 5:25] = 1
    pr = np.zeros_like(gt)
    pr[1:5, 6:26, 5:25] = 1
    a = score_case(pr, gt, (5.0, 0.7, 0.7))["lung_nsd"]
    b = score_case(pr, gt, (5.0, 1.5, 1.5))["lung_nsd"]
    assert 0 < b < a <= 1  # a one-voxel shift costs more at a coarser in-plane spacing


def test_left_and_right_lung_are_scored_apart_split_at_the_midline():
    """The benchmark scores each lung: a prediction of one lung region is split at the midline between
    the true lungs' centres, so a missed right lung costs the right lung alone."""
    from cosingan.data.labelmap import midline_sides
    from cosingan.downstream.metrics import score_sides

    sides = np.zeros((3, 20, 30), np.uint8)
    sides[:, 5:15, 3:11] = 1  # left lung on the low columns here (the side follows the labels, not a convention)
    sides[:, 5:15, 18:27] = 2
    truth = (sides > 0).astype(np.uint8)
    s = score_sides(truth, sides, (5.0, 0.7, 0.7))
    assert s["left_lung_dsc"] == pytest.approx(1.0) and s["right_lung_dsc"] == pytest.approx(1.0)
    left_only = np.where(sides == 1, 1, 0).astype(np.uint8)
    s = score_sides(left_only, sides, (5.0, 0.7, 0.7))
    assert s["left_lung_dsc"] == pytest.approx(1.0) and s["right_lung_dsc"] == 0.0 and s["right_lung_nsd"] == 0.0
    leak = truth.copy()
    leak[:, 5:15, 11:14] = 1  # a leak across the mediastinum, short of the midline (14.5): the left lung's error
    s = score_sides(leak, sides, None)
    assert s["left_lung_dsc"] < 1.0 and s["right_lung_dsc"] == pytest.approx(1.0)
    flipped = sides[..., ::-1]  # the other orientation: the labels still decide which side is which
    assert (midline_sides(flipped > 0, flipped) == flipped).all()
    assert (midline_sides(truth > 0, np.where(sides == 1, 1, 0)) == truth).all()  # one lung known: that side
