"""The batched augmentation draws the transforms MONAI's per-item ones drew (same kinds, same ranges), on a
test image whose label and grey levels show what moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cosingan.downstream.augment import BatchAugment, RECIPES, augmentations, image_augmentations, monai_strong

N = 400


def _scene(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A ramp image (grey level tells position) with an off-centre, elongated label blob (2 inside 1)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    image = 0.2 + 0.6 * (xx / size)
    label = np.zeros((size, size), np.float32)
    label[10:30, 14:50] = 1
    label[14:22, 30:44] = 2
    return torch.from_numpy(image)[None], torch.from_numpy(label)[None]


def _measures(image: torch.Tensor, label: torch.Tensor) -> list[float]:
    """Area of the labelled region (scale), its centroid (moves), whether it sits right of where it was
    drawn (flip), the image's mean grey level (intensity) and its spread in the region (contrast)."""
    lab = label[0].numpy()
    rr, cc = np.nonzero(lab > 0)
    img = image[0].numpy()
    return [lab.astype(bool).sum(), rr.mean(), cc.mean(), float(cc.mean() > 32), float(img.mean()),
            float(img[lab > 0].std())]


def test_strong_draws_what_monai_drew():
    image, label = _scene()
    ref = monai_strong(0)
    theirs = np.array([_measures(*(torch.as_tensor(np.asarray(o[k])) for k in ("image", "label")))
                       for o in (ref({"image": image.clone(), "label": label.clone()}) for _ in range(N))])
    aug = augmentations("strong", 0)
    ours = []
    for _ in range(N // 8):
        x, y = aug(image[None].repeat(8, 1, 1, 1), label[None].repeat(8, 1, 1, 1))
        ours += [_measures(x[i], y[i].float()) for i in range(8)]
    ours = np.array(ours)
    names = ["area", "centroid row", "centroid col", "flipped", "mean grey", "grey spread"]
    for j, name in enumerate(names):  # same distributions: a two-sample Kolmogorov-Smirnov test
        p = stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue
        assert p > 0.01, (name, p, ours[:, j].mean(), theirs[:, j].mean(), ours[:, j].std(), theirs[:, j].std())
    assert abs(ours[:, 3].mean() - 0.5) < 0.1  # half of them flipped


def test_labels_keep_their_values_and_the_same_seed_gives_the_same_batch():
    image, label = _scene()
    batch = image[None].repeat(8, 1, 1, 1), label[None].repeat(8, 1, 1, 1)
    a1, a2, b = augmentations("strong", 3), augmentations("strong", 3), augmentations("strong", 4)
    (x1, y1), (x2, y2), (x3, _) = a1(*batch), a2(*batch), b(*batch)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert set(torch.unique(y1).tolist()) <= {0, 1, 2} and y1.dtype == torch.long
    assert not all(torch.equal(x1[0], x1[i]) for i in range(1, 8))  # drawn per item, not per batch
    x, y = augmentations("none", 0)(*batch)
    assert torch.equal(x, batch[0]) and torch.equal(y, batch[1].long())


def test_geometric_moves_without_changing_grey_levels():
    """The realism test's classifier: flips and affine moves only, nothing that alters texture."""
    image, _ = _scene()
    x = image_augmentations("geometric", 0)(image[None].repeat(16, 1, 1, 1))
    inside = x[:, :, 24:40, 24:40]  # the centre stays inside the image under these moves
    assert inside.min() >= 0.2 - 1e-5 and inside.max() <= 0.8 + 1e-5  # interpolated ramp values, no noise
    assert x.shape == (16, 1, 64, 64)
    assert RECIPES["geometric"].noise == 0 and RECIPES["geometric"].elastic == 0


def test_unknown_kinds_are_refused():
    from cosingan.errors import InputError

    with pytest.raises(InputError):
        augmentations("geometric", 0)
    with pytest.raises(InputError):
        image_augmentations("none", 0)
    assert isinstance(image_augmentations("strong", 0), BatchAugment)
