"""Lesion density: part of a synthetic slice's infection rendered as consolidation.

Why: a generator learns lesion appearance from its one or two training slices, and most of those show
ground-glass opacity; the label maps do not tell ground glass from consolidation, so the generator
renders every lesion of a new map as the grey opacity it saw. Real COVID-19 infection ranges up to dense
consolidation at soft-tissue attenuation (on the 50 dev slices, on average 14 % of a slice's infection
pixels are brighter than 180 of 255; in the synthetic sets 1-5 %), and a segmenter that never saw it
misses dense lesions and the lung border behind them. This step brightens a patch of the infection
toward the slice's own soft-tissue grey level, more often in the dependent (posterior, lower in the
image) lung, keeping some fine texture (air bronchograms). It is a prior on lesion density, like the
lesion-layout prior on lesion shape: it needs no annotation beyond the maps, and it is measured
downstream (docs/results.md).
"""

from __future__ import annotations

import numpy as np

# share of synthetic slices given a dense patch: the default of `synthesize` and of the experiment (why:
# docs/design.md)
DEFAULT_CONSOLIDATION = 0.5


def tissue_level(image: np.ndarray, label: np.ndarray) -> float:
    """The slice's soft-tissue grey level (image in [-1, 1]): the median of the bright half of the
    non-lung pixels (mediastinum, chest wall; air outside a cropped body is in the dark half)."""
    rest = image[label == 0]
    if rest.size == 0:  # a map that is all lung and lesion: a typical soft-tissue level of the dev slices
        return 0.7
    bright = rest[rest > np.median(rest)]
    return float(np.median(bright if bright.size else rest))


def consolidate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                max_share: float = 0.8) -> np.ndarray:
    """`image` (in [-1, 1]) with, in a fraction `p` of slices that have infection, a share in
    [0.1, max_share] of the infection made dense; the label is unchanged (consolidation is infection)."""
    from scipy import ndimage  # here: the CLI reads DEFAULT_CONSOLIDATION without loading scipy

    from ..data.labelmap import MAP_INFECTION

    inf = label == MAP_INFECTION
    if not inf.any() or rng.random() >= p:
        return image
    h, w = image.shape
    share = rng.uniform(0.1, max_share)
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), 0.03 * max(h, w))
    field = (field - field.mean()) / (field.std() + 1e-8) + 1.5 * np.linspace(0, 1, h)[:, None]  # dependent lung
    dense = inf & (field >= np.quantile(field[inf], 1 - share))
    weight = np.minimum(ndimage.gaussian_filter(dense.astype(np.float64), 1.0), 1.0) * inf
    weight *= rng.uniform(0.75, 1.0)
    detail = image - ndimage.gaussian_filter(image, 1.5)  # fine structure kept inside the dense patch
    target = tissue_level(image, label) - rng.uniform(0.0, 0.1) + 0.5 * detail
    return np.clip(image + weight * (target - image), -1.0, 1.0).astype(image.dtype)
