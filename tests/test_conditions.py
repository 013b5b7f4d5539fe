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
