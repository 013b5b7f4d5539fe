from __future__ import annotations

import numpy as np
import torch

from cosingan.data.labelmap import AIR, BODY, INFECTION, LUNG, body_from_image, body_from_label, label4_to_label, to_label4
from cosingan.gan.encoding import one_hot


def test_body_from_image_contains_lungs_and_excludes_corners(phantom_pair):
    img, lab = phantom_pair
    body = body_from_image(img, lab)
    assert body[lab > 0].all()
    assert not body[0, 0] and not body[-1, -1]
    truth = img > -0.5  # the phantom's body is bright
    assert (body & truth).sum() / truth.sum() > 0.9


def test_body_from_label_is_a_plausible_outline(phantom_pair):
    _, lab = phantom_pair
    body = body_from_label(lab)
    assert body[lab > 0].all()
    assert body.sum() > 1.2 * (lab > 0).sum()
    assert not body[0, 0]


def test_label4_round_trip_and_one_hot(phantom_pair):
    img, lab = phantom_pair
    l4 = to_label4(lab, body_from_image(img, lab))
    assert set(np.unique(l4)) == {AIR, BODY, LUNG, INFECTION}
    assert np.array_equal(label4_to_label(l4), lab)
    oh = one_hot(torch.from_numpy(l4)[None], True)
    assert oh.shape == (1, 4, *lab.shape) and torch.all(oh.sum(1) == 1)
    oh3 = one_hot(torch.from_numpy(l4)[None], False)
    assert oh3.shape == (1, 3, *lab.shape)
    assert torch.equal(oh3[0, 0].bool(), torch.from_numpy(lab == 0))


def _whole_body(img: np.ndarray, lab: np.ndarray, pad: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """The phantom as a slice of a CT volume shows it: a chest wall all round the lungs (the phantom's
    lungs reach its outline) and air around the body. Returns (image, its lung map), both padded."""
    from scipy import ndimage

    body = body_from_image(img, lab)
    rim = body & ~ndimage.binary_erosion(body, iterations=3)
    img, lab = img.copy(), lab.copy()
    img[rim], lab[rim] = 0.9, 0
    return np.pad(img, pad, constant_values=-0.97), np.pad(lab, pad)


def test_lungs_found_without_annotation_in_a_whole_body_slice():
    from cosingan.data.labelmap import lungs_from_image
    from cosingan.data.phantom import chest_phantom

    img, lab = chest_phantom(96, seed=3)
    lab[lab == 2] = 1  # an unannotated, infection-free slice: lungs only
    img[lab == 1] = np.minimum(img[lab == 1], -0.6)
    img, lab = _whole_body(img, lab)
    found = lungs_from_image(img)
    assert set(np.unique(found)) == {AIR, BODY, LUNG}
    # cropped to the body's box: body on every edge of the crop, and that box is the phantom's
    assert all((edge == BODY).any() for edge in (found[0], found[-1], found[:, 0], found[:, -1]))
    rows, cols = np.nonzero(img > -0.5)
    truth = lab[rows.min():rows.max() + 1, cols.min():cols.max() + 1] > 0
    assert found.shape == truth.shape
    lung = found == LUNG
    assert 2 * (lung & truth).sum() / (lung.sum() + truth.sum()) > 0.9


def test_lungs_not_found_are_refused_with_the_reason():
    import pytest

    from cosingan.data.labelmap import lungs_from_image
    from cosingan.data.phantom import chest_phantom

    img, _ = _whole_body(*chest_phantom(96, seed=3))
    with pytest.raises(ValueError, match="no lungs enclosed by a body"):  # cropped into the lungs
        lungs_from_image(img[40:80, :])
    with pytest.raises(ValueError, match="no field of view"):
        lungs_from_image(np.full((64, 64), -1.0, np.float32))
    with pytest.raises(ValueError, match="no contrast"):
        lungs_from_image(np.full((64, 64), 0.3, np.float32))
    solid = np.full((64, 64), -0.97, np.float32)
    solid[8:56, 8:56] = 0.7  # a body without air inside: below the lungs
    with pytest.raises(ValueError, match="no lungs enclosed by a body"):
        lungs_from_image(solid)


def test_unlabelled_sources_take_the_templates_lesions(tmp_path):
    import pytest

    from cosingan.data.conditions import sources_from_folder, sources_from_unlabelled, with_lesions_of
    from cosingan.data.files import save_png
    from cosingan.data.phantom import chest_phantom
    from cosingan.errors import InputError

    for k in range(2):
        img, lab = chest_phantom(64, seed=40 + k)
        save_png(_whole_body(img, lab)[0], tmp_path / "unlabelled" / f"u{k}.png")
        save_png(img, tmp_path / "k" / "images" / f"t{k}.png")
        save_png(lab, tmp_path / "k" / "labels" / f"t{k}.png")
    lungs = sources_from_unlabelled(tmp_path / "unlabelled")
    templates = sources_from_folder(tmp_path / "k")
    assert [s.name for s in lungs] == ["u0", "u1"] and all(s.template is None for s in lungs)
    paired = with_lesions_of(lungs, templates)
    assert [s.name for s in paired] == ["u0_t0", "u0_t1", "u1_t0", "u1_t1"]
    assert paired[1].template is templates[1].label4
    assert (paired[1].label4 == LUNG).sum() == (lungs[0].label4 == LUNG).sum()  # the same lungs, reframed
    assert paired[1].origin == str(tmp_path / "unlabelled" / "u0.png")
    with pytest.raises(InputError, match="no annotated map with infection"):
        with_lesions_of(lungs, lungs)
    save_png(_whole_body(*chest_phantom(64, seed=9))[0][30:58], tmp_path / "unlabelled" / "u2.png")  # into the lungs
    with pytest.raises(InputError, match=r"u2\.png: no lungs found automatically: no lungs enclosed"):
        sources_from_unlabelled(tmp_path / "unlabelled")


def test_masks_command_puts_the_maps_lesions_on_unlabelled_lungs(tmp_path, capsys):
    import csv

    from PIL import Image

    from cosingan.cli import main
    from cosingan.data.files import save_png
    from cosingan.data.phantom import chest_phantom

    for k in range(2):
        img, lab = chest_phantom(64, seed=50 + k)
        save_png(_whole_body(img, lab)[0], tmp_path / "unlabelled" / f"u{k}.png")
        save_png(img, tmp_path / "k" / "images" / f"t{k}.png")
        save_png(lab, tmp_path / "k" / "labels" / f"t{k}.png")
    out = tmp_path / "m"
    assert main(["masks", "--data", str(tmp_path / "k"), "--lungs-from", str(tmp_path / "unlabelled"), "--out",
                 str(out), "--n", "10", "--negative-share", "0.2", "--quiet"]) == 0
    assert "from 4 sources" in capsys.readouterr().out  # 2 lungs x 2 templates
    with open(out / "masks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    for r in rows:
        assert r["source"].startswith(str(tmp_path / "unlabelled"))
        chain = r["edits"].split("+")
        assert chain[-1] == "negative" if r["edits"].endswith("negative") else chain[-1] == "relayout"
        assert set(chain) <= {"deform", "flip", "relayout", "negative"}  # lesion edits do not apply
        lab = np.asarray(Image.open(out / "labels" / f"{r['name']}.png"))
        assert (lab == 2).any() != r["edits"].endswith("negative")
        assert (np.asarray(Image.open(out / "bodies" / f"{r['name']}.png")) > 0)[lab > 0].all()


def test_reframe_puts_the_lungs_where_the_template_has_them():
    from cosingan.data.labelmap import reframe

    lungs = np.zeros((60, 80), np.uint8)
    lungs[5:55, 5:75] = BODY
    lungs[15:45, 10:70] = LUNG  # lungs' box 30 x 60
    tight = np.full((20, 30), LUNG, np.uint8)  # a slice cropped to its lungs' box (as the MedSeg slices)
    out = reframe(lungs, tight)
    assert out.shape == (30, 60) and (out == LUNG).all()
    wide = np.zeros((40, 40), np.uint8)
    wide[10:30, 5:35] = LUNG  # margins: half the box height above and below, 1/6 of its width each side
    out = reframe(lungs, wide)
    assert out.shape == (60, 80) and (out[15:45, 10:70] == LUNG).all() and (out == LUNG).sum() == 30 * 60
    far = np.zeros((100, 40), np.uint8)
    far[40:60, 10:30] = LUNG  # more margin than the slice holds: padded with air
    out = reframe(lungs, far)
    assert out.shape == (150, 120) and out[0].max() == AIR and (out == LUNG).sum() == 30 * 60


def test_body_fields_place_a_pixel_in_the_body(phantom_pair):
    from cosingan.gan.encoding import FIELDS, body_fields, condition, lung_weight, one_hot_part

    img, lab = phantom_pair
    l4 = to_label4(lab, body_from_image(img, lab))
    f = body_fields(l4)
    assert f.shape == (FIELDS, *lab.shape) and f.dtype == np.float32
    air, body = l4 == AIR, l4 > AIR
    assert np.all(f[:, air] == 0) and f.min() >= -1 and f.max() <= 1
    depth, from_lung, fy, fx = f
    assert np.all(depth[body] > 0) and np.all(from_lung[l4 >= LUNG] == 0)
    # deeper toward the middle of the body; the box coordinates run front to back and left to right
    rows, cols = np.nonzero(body)
    mid = (int(rows.mean()), int(cols.mean()))
    edge = (rows.min(), int(cols.mean()))
    assert depth[mid] > depth[edge]
    assert fy[rows.min(), cols[rows == rows.min()][0]] == -1 and fy[rows.max(), cols[rows == rows.max()][0]] == 1
    assert fx[rows[cols == cols.min()][0], cols.min()] == -1 and fx[rows[cols == cols.max()][0], cols.max()] == 1
    # an empty map has no body to place
    assert not body_fields(np.zeros((8, 9), np.uint8)).any()
    # in the condition the fields come first, the map's channels last (the lung mask still reads them)
    t = torch.from_numpy(l4)[None]
    c = condition(t, True, True)
    assert c.shape == (1, FIELDS + 4, *lab.shape)
    assert torch.equal(one_hot_part(c, True), one_hot(t, True)) and torch.equal(c, condition(t[:, None], True, True))
    assert torch.equal(lung_weight(c), lung_weight(one_hot(t, True)))
    assert torch.equal(condition(t, False, False), one_hot(t, False))
