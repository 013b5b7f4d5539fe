"""Label-map edits keep maps valid: labels in set, infection inside lung, no slivers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosingan.data.edits import edit_map
from cosingan.data.labelmap import INFECTION, LUNG, body_from_image, check_label4, to_label4
from cosingan.data.phantom import chest_phantom

_MAPS = {}


def _map(seed: int) -> np.ndarray:
    if seed not in _MAPS:
        img, lab = chest_phantom(64, seed=seed)
        _MAPS[seed] = to_label4(lab, body_from_image(img, lab))
    return _MAPS[seed]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edit=st.sampled_from(["deform", "flip", "move", "scale", "add", "remove", "merge", "negative",
                             "mediastinum"]),
       map_seed=st.integers(0, 3), seed=st.integers(0, 10_000))
def test_every_edit_keeps_the_map_valid(edit, map_seed, seed):
    src = _map(map_seed)
    try:
        out = edit_map(src, edit, np.random.default_rng(seed), min_lesion=12)
    except ValueError:
        return  # the edit does not apply to this map (e.g. a single lesion cannot merge)
    assert out.shape == src.shape and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1, 2, 3}
    if edit not in ("deform", "flip", "mediastinum"):  # lesion edits never move the lungs or the body
        assert np.array_equal(out >= LUNG, src >= LUNG)
        assert np.array_equal(out > 0, src > 0)
    if edit == "negative":
        assert not (out == INFECTION).any()
    if edit == "remove":
        assert (out == INFECTION).sum() < (src == INFECTION).sum()
    reason = check_label4(out, min_lesion=12)
    assert reason is None or reason == "lung smaller than 1% of the slice", reason


def test_check_label4_catches_invalid_maps():
    src = _map(0)
    assert check_label4(src) is None
    bad = src.copy()
    bad[:3, :3] = INFECTION  # a lesion in the air, outside any lung
    assert check_label4(bad) == "infection outside the lung"
    sliver = src.copy()
    sliver[sliver == INFECTION] = LUNG
    ys, xs = np.nonzero(sliver == LUNG)
    sliver[ys[len(ys) // 2], xs[len(xs) // 2]] = INFECTION
    assert "sliver" in check_label4(sliver, min_lesion=12)
    assert check_label4(np.zeros((32, 32), np.uint8)) == "lung smaller than 1% of the slice"


def test_move_and_add_place_lesions_inside_the_lung():
    src = _map(1)
    rng = np.random.default_rng(0)
    for edit in ("move", "add"):
        out = edit_map(src, edit, rng)
        assert not np.array_equal(out, src)
        assert (out == INFECTION).sum() > 0
        inf = out == INFECTION
        assert (src[inf] >= LUNG).all()  # lesions only on lung pixels


def test_unknown_edit_is_refused():
    with pytest.raises(ValueError, match="unknown edit"):
        edit_map(_map(0), "explode", np.random.default_rng(0))


@pytest.mark.parametrize("map_seed", [0, 1, 2])
def test_relayout_draws_a_new_valid_layout_on_the_same_lungs(map_seed):
    from cosingan.data.edits import default_edits, lesions

    src = _map(map_seed)
    outs = [edit_map(src, "relayout", np.random.default_rng(s)) for s in range(6)]
    for out in outs:
        assert check_label4(out, 12) is None  # infection inside the lung, no slivers
        assert np.array_equal(out >= LUNG, src >= LUNG) and np.array_equal(out > 0, src > 0)
        frac = (out == INFECTION).sum() / (out >= LUNG).sum()
        assert 0.005 < frac <= 0.65
        assert not np.array_equal(out == INFECTION, src == INFECTION)
    assert len({(o == INFECTION).tobytes() for o in outs}) == len(outs)  # every seed its own layout
    assert len({len(lesions(o)) for o in outs}) > 1  # lesion counts vary
    assert np.array_equal(outs[0], edit_map(src, "relayout", np.random.default_rng(0)))  # seeded
    assert "relayout" not in default_edits()


def test_relayout_prefers_subpleural_posterior_lung():
    from scipy import ndimage

    src = _map(0)
    lung = src >= LUNG
    depth = ndimage.distance_transform_edt(lung)
    inf = np.zeros(lung.shape)
    for s in range(20):
        inf += edit_map(src, "relayout", np.random.default_rng(s)) == INFECTION
    # lesion pixels lie closer to the pleura than lung pixels do on average, and more in the lower half
    assert (depth * inf).sum() / inf.sum() < depth[lung].mean()
    rows = np.nonzero(lung.any(1))[0]
    mid = (rows.min() + rows.max()) / 2
    assert inf[int(mid):].sum() > inf[: int(mid)].sum()


def test_relayout_needs_a_lesion_to_learn_from():
    src = _map(0).copy()
    src[src == INFECTION] = LUNG
    with pytest.raises(ValueError, match="no lesion"):
        edit_map(src, "relayout", np.random.default_rng(0))


def test_relayout_keeps_the_maps_lesion_size_mix():
    """One large lesion with small satellites gives layouts dominated by a large lesion; a map of equal small
    lesions gives layouts of comparable lesions (the sizes are resampled from the map, not drawn evenly)."""
    from scipy import ndimage

    base = _map(0).copy()
    base[base == INFECTION] = LUNG
    lung = np.argwhere(base == LUNG)

    def with_lesions(boxes):
        m = base.copy()
        for y, x, r in boxes:
            sq = np.zeros_like(m, dtype=bool)
            sq[y - r:y + r, x - r:x + r] = True
            m[sq & (base == LUNG)] = INFECTION
        return m

    (y0, x0), (y1, x1) = lung.min(0), lung.max(0)
    ys, xs = np.linspace(y0 + 6, y1 - 6, 3).astype(int), np.linspace(x0 + 4, x1 - 4, 2).astype(int)
    equal = with_lesions([(y, x, 2) for y in ys for x in xs])
    cy, cx = lung[len(lung) // 3]
    dominant = with_lesions([(cy, cx, 6)] + [(y, x, 2) for y in ys[::2] for x in xs[:1]])

    def largest_share(src):
        shares = []
        for s in range(20):
            inf = edit_map(src, "relayout", np.random.default_rng(s)) == INFECTION
            sizes = np.bincount(ndimage.label(inf)[0].ravel())[1:]
            shares.append(sizes.max() / sizes.sum())
        return np.median(shares)

    # 0.68 vs 0.35 (without the lesion cap 0.90 vs 0.36; evenly drawn sizes: 0.62 vs 0.38)
    assert largest_share(dominant) > largest_share(equal) + 0.25


def test_relayout_with_a_template_gives_lesion_free_lungs_its_kind_of_lesions():
    """Lungs without annotation (another slice's, lesion-free) get layouts imitating the template's lesions:
    inside the new lungs, a share of the lung like the template's, and the template's count."""
    from cosingan.data.edits import lesions as find

    template = _map(0)
    lungs = _map(1).copy()
    lungs[lungs == INFECTION] = LUNG
    t_share = (template == INFECTION).sum() / (template >= LUNG).sum()
    shares, counts = [], []
    for seed in range(30):
        out = edit_map(lungs, "relayout", np.random.default_rng(seed), template=template)
        assert check_label4(out, 12) is None
        assert np.array_equal(out >= LUNG, lungs >= LUNG)  # the lungs are the unannotated slice's
        shares.append((out == INFECTION).sum() / (out >= LUNG).sum())
        counts.append(len(find(out)))
    assert 0.2 * t_share < np.median(shares) < 5 * t_share
    assert 1 <= np.median(counts) <= 3 * len(find(template))
    with pytest.raises(ValueError, match="no lesion"):  # a template must carry lesions
        edit_map(lungs, "relayout", np.random.default_rng(0), template=lungs)
    # without a template, the map's own lesions are the template: the same layout as before
    own = _map(2)
    assert np.array_equal(edit_map(own, "relayout", np.random.default_rng(5)),
                          edit_map(own, "relayout", np.random.default_rng(5), template=own))


def _two_lungs() -> np.ndarray:
    src = np.ones((128, 128), np.uint8)  # body
    src[16:112, 12:52] = LUNG
    src[16:112, 76:116] = LUNG
    src[80:86, 20:26] = INFECTION
    return src


def test_relayout_prefers_the_chest_wall_to_the_mediastinum():
    # two box lungs either side of a mediastinum: each lung's lateral border (chest wall) and medial border
    # (mediastinum) are equally near the pleura; COVID-19's lesions lie peripherally, along the chest wall
    from cosingan.data.edits import _predilection

    w = _predilection(_two_lungs() >= LUNG)[40:90]
    lateral = w[:, 12:16].mean() + w[:, 112:116].mean()
    medial = w[:, 48:52].mean() + w[:, 76:80].mean()
    assert lateral > 3 * medial


def test_relayout_grows_each_lesion_in_its_own_lung(monkeypatch):
    from scipy import ndimage

    from cosingan.data import edits

    grown, real_blob = [], edits._blob

    def blob(lung, centre, area, rng, depth=None, lace=None):
        grown.append((ndimage.label(lung)[1], lung[centre]))
        return real_blob(lung, centre, area, rng, depth, lace)

    monkeypatch.setattr(edits, "_blob", blob)
    for s in range(10):
        edit_map(_two_lungs(), "relayout", np.random.default_rng(s))
    assert grown and all(n == 1 and inside for n, inside in grown)  # one lung, the centre's


def test_relayout_spreads_extensive_infection_over_both_lungs():
    # one lesion of two thirds of a lung as the template: drawn layouts of that extent infect both lungs
    # (COVID-19 is bilateral, the more so the more extensive), each lung well short of full
    src = _two_lungs()
    src[src == INFECTION] = LUNG
    src[40:104, 12:52] = INFECTION
    balance = []
    for s in range(20):
        out = edit_map(src, "relayout", np.random.default_rng(s))
        left, right = (out[:, :64] == INFECTION).sum(), (out[:, 64:] == INFECTION).sum()
        if left + right > 0.3 * (src >= LUNG).sum():
            balance.append(min(left, right) / max(left, right))
    assert len(balance) >= 5 and np.median(balance) > 0.5 and min(balance) > 0.1


def test_relayout_lesions_spread_along_the_chest_wall():
    # a blob centred near the chest wall, grown with the hull depth, lies shallower than one grown as a disc
    from cosingan.data.edits import _blob, hull_depth

    lung = _two_lungs() >= LUNG
    depth = hull_depth(lung)
    left = lung.copy()
    left[:, 64:] = False
    mean_depth = [[depth[_blob(left, (60, 15), 300, np.random.default_rng(s), d)].mean() for s in range(5)]
                  for d in (None, depth)]
    assert np.mean(mean_depth[1]) < 0.9 * np.mean(mean_depth[0])  # 6.0 vs 7.5 px


def test_relayout_laces_large_lesions_with_healthy_lung_and_keeps_small_ones_solid():
    # no pixel of a real lesion lies far from healthy lung: a large drawn blob is crossed by healthy lines,
    # a small one (all of it near its edge) is left as it is
    from scipy import ndimage

    from cosingan.data.edits import _blob

    lung = _two_lungs() >= LUNG
    lung[:, 64:] = False
    for area, laced in ((1500, True), (40, False)):
        rng = np.random.default_rng(1)
        solid, lacy = _blob(lung, (60, 30), area, rng), _blob(lung, (60, 30), area, np.random.default_rng(1), lace=4.0)
        if laced:
            assert lacy.sum() < 0.97 * solid.sum() and not (lacy & ~solid).any()
            assert ndimage.distance_transform_edt(lacy).max() < 0.7 * ndimage.distance_transform_edt(solid).max()
        else:
            assert np.array_equal(lacy, solid)


def test_mediastinum_widens_from_the_middle_only():
    src = _two_lungs()
    lung = src >= LUNG
    for s in range(8):
        out = edit_map(src, "mediastinum", np.random.default_rng(s))
        lost = lung & (out < LUNG)
        assert not (out[~lung] != src[~lung]).any()  # only lung becomes body
        assert (out[lost] == 1).all() and lost.sum() <= 0.25 * lung.sum()
        assert not lost[:, 12:20].any() and not lost[:, 108:116].any()  # the chest wall side stays lung
    assert any((edit_map(src, "mediastinum", np.random.default_rng(s)) < LUNG)[lung].sum() > 0.1 * lung.sum()
               for s in range(8))


def test_outer_depth_is_the_distance_to_the_hull_of_every_lung_pixel():
    # the hull is taken over the lungs' border pixels only, and tested in their box only: the same depth as
    # the hull of every lung pixel tested everywhere, on lungs with a hole, cut by the frame and of one pixel
    from scipy import ndimage
    from scipy.spatial import ConvexHull, Delaunay

    from cosingan.data.edits import hull_depth

    def direct(lung):
        pts = np.argwhere(lung)
        hull = Delaunay(pts[ConvexHull(pts).vertices])
        inside = (hull.find_simplex(np.indices(lung.shape).reshape(2, -1).T) >= 0).reshape(lung.shape)
        return ndimage.distance_transform_edt(inside | lung)

    holed = _two_lungs() >= LUNG
    holed[60:64, 30:34] = False
    framed = np.zeros((40, 50), bool)
    framed[:25, 30:] = True
    framed[10:30, 5:12] = True
    for lung in [_map(s) >= LUNG for s in range(4)] + [holed, framed]:
        np.testing.assert_array_equal(hull_depth(lung), direct(lung))
    dot = np.zeros((9, 9), bool)
    dot[4, 4] = True
    np.testing.assert_array_equal(hull_depth(dot), ndimage.distance_transform_edt(dot))


def test_convex_rows_match_a_point_in_hull_test_of_every_pixel():
    # random hulls of lattice points, edges through lattice points included: the per-row runs equal
    # Delaunay's point location (which `hull_depth` used before) pixel for pixel
    from scipy.spatial import ConvexHull, Delaunay

    from cosingan.data.edits import _convex_rows

    rng = np.random.default_rng(0)
    for _ in range(40):
        pts = rng.integers(0, rng.integers(5, 60), size=(int(rng.integers(3, 30)), 2))
        try:
            hull = ConvexHull(pts)
        except Exception:  # collinear draws
            continue
        (y0, x0), (y1, x1) = pts.min(0), pts.max(0) + 1
        box = np.indices((y1 - y0, x1 - x0)).reshape(2, -1).T + (y0, x0)
        want = (Delaunay(pts[hull.vertices]).find_simplex(box) >= 0).reshape(y1 - y0, x1 - x0)
        np.testing.assert_array_equal(_convex_rows(hull.equations, y0, y1, x0, x1), want)


def test_lesion_layouts_study_reads_balance_depth_and_count():
    """studies/lesion_layouts.py: one-sided vs even infection, and how deep a lesion's interior runs."""
    from studies.lesion_layouts import layout_stats

    lab = np.zeros((256, 256), np.uint8)
    lab[40:220, 20:110] = 1
    lab[40:220, 146:236] = 1
    assert layout_stats(lab) is None
    one = lab.copy()
    one[100:121, 30:51] = 2  # a 21 px square: its centre lies 11 px from healthy lung
    s = layout_stats(one)
    assert s["balance"] == 0.0 and s["lesions"] == 1 and s["depth90"] == pytest.approx(9.0, abs=1.0)
    both = one.copy()
    both[100:121, 200:221] = 2
    assert layout_stats(both)["balance"] == pytest.approx(1.0) and layout_stats(both)["lesions"] == 2
    assert layout_stats(both)["share"] == pytest.approx(2 * 21 * 21 / (2 * 180 * 90))
