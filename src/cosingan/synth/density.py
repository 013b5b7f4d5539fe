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

from dataclasses import dataclass, fields

import numpy as np

from ..settings import check_settings, setting

# share of synthetic slices given a dense patch: the default of `synthesize` and of the experiment (why:
# docs/design.md)
DEFAULT_CONSOLIDATION = 0.5


@dataclass(frozen=True)
class ImageSteps:
    """What is done to a generated image before it is saved, each step on a share of the slices (0: off).
    Declared once: `synthesize` and the experiment build their flags from these fields."""

    consolidation: float = setting(DEFAULT_CONSOLIDATION, "fraction of synthetic slices with part of their "
                                   "infection rendered as dense consolidation (a prior on lesion density; 0: off)",
                                   low=0.0, high=1.0)
    consolidation_depth: float = setting(0.0, "dense patches only where the infection is deeper than this inside "
                                         "its lesion (px at 256 px; 0: anywhere in it)", low=0.0, high=256.0)
    lesion_margins: float = setting(0.0, "fraction of synthetic slices whose lesion edges fade into the lung as in "
                                    "real slices, where the label is drawn inside the fading edge (0: off)",
                                    low=0.0, high=1.0)
    lung_tone: float = setting(0.0, "fraction of synthetic slices whose normal lung takes the grey levels of its "
                               "generator's training slice's normal lung (0: off)", low=0.0, high=1.0)
    dependent_density: float = setting(0.0, "fraction of synthetic slices whose normal lung grows denser toward "
                                       "the dependent (posterior) side as real lungs do (0: off)", low=0.0, high=1.0)

    def __post_init__(self):
        check_settings(self)

    @classmethod
    def of(cls, settings) -> "ImageSteps":
        """The steps of any object that has their fields (an experiment's config)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def spec(self) -> dict:
        """The steps as a dataset records them: consolidation always, the others only when on (so that datasets
        made before a step existed resume)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "consolidation" or getattr(self, f.name)}

    def apply(self, image: np.ndarray, label: np.ndarray, noise_seed: int,
              tone: np.ndarray | None = None) -> np.ndarray:
        """`image` (in [-1, 1]) with the steps applied for its 0/1/2 `label`, each from its own stream of the
        pair's noise seed (a step switched on leaves the others' draws as they were); `tone`: the normal-lung
        quantiles of its generator's training slice (`lung_quantiles`), for `lung_tone`."""
        if self.lung_tone:
            image = match_lung_tone(image, label, tone, np.random.default_rng([noise_seed, 17]), self.lung_tone)
        if self.dependent_density:
            image = dependent_density(image, label, np.random.default_rng([noise_seed, 19]), self.dependent_density)
        if self.consolidation:
            image = consolidate(image, label, np.random.default_rng([noise_seed, 11]), self.consolidation,
                                depth=self.consolidation_depth)
        if self.lesion_margins:
            image = fade_margins(image, label, np.random.default_rng([noise_seed, 13]), self.lesion_margins)
        return image


def tissue_level(image: np.ndarray, label: np.ndarray) -> float:
    """The slice's soft-tissue grey level (image in [-1, 1]): the median of the bright half of the
    non-lung pixels (mediastinum, chest wall; air outside a cropped body is in the dark half)."""
    rest = image[label == 0]
    if rest.size == 0:  # a map that is all lung and lesion: a typical soft-tissue level of the dev slices
        return 0.7
    bright = rest[rest > np.median(rest)]
    return float(np.median(bright if bright.size else rest))


def consolidate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                max_share: float = 0.8, depth: float = 0.0) -> np.ndarray:
    """`image` (in [-1, 1]) with, in a fraction `p` of slices that have infection, a share in
    [0.1, max_share] of the infection made dense; the label is unchanged (consolidation is infection).
    With `depth` > 0 only infection deeper than that (px at 256 px) inside its lesion is made dense: small
    lesions and lesion rims stay as drawn."""
    from scipy import ndimage  # here: the CLI reads DEFAULT_CONSOLIDATION without loading scipy

    from ..data.labelmap import MAP_INFECTION

    inf = label == MAP_INFECTION
    if not inf.any() or rng.random() >= p:
        return image
    h, w = image.shape
    core = inf if depth <= 0 else inf & (ndimage.distance_transform_edt(inf) * 256.0 / max(h, w) > depth)
    if not core.any():
        return image
    share = rng.uniform(0.1, max_share)
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), 0.03 * max(h, w))
    field = (field - field.mean()) / (field.std() + 1e-8) + 1.5 * np.linspace(0, 1, h)[:, None]  # dependent lung
    dense = core & (field >= np.quantile(field[core], 1 - share))
    weight = np.minimum(ndimage.gaussian_filter(dense.astype(np.float64), 1.0), 1.0) * inf
    weight *= rng.uniform(0.75, 1.0)
    detail = image - ndimage.gaussian_filter(image, 1.5)  # fine structure kept inside the dense patch
    target = tissue_level(image, label) - rng.uniform(0.0, 0.1) + 0.5 * detail
    return np.clip(image + weight * (target - image), -1.0, 1.0).astype(image.dtype)


# ------------------------------------------------------------------------ lesion margins
# A radiologist's infection label is drawn inside the opacity's fading edge: in real slices the grey level
# still rises toward the lesion's for a few pixels outside the label and is lower on its rim. A generator
# draws the lesion where the map says with a sharp edge, so a segmenter trained on its slices learns that
# infection ends where opacity ends and labels the fading edge of real lesions too. Measured, and off by
# default: docs/results.md, "Lesion edges faded as in real slices".

MARGIN_REACH = 3.0  # px (at 256 px) over which the blend fades, beyond its first 2 px


def fade_margins(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """`image` (in [-1, 1]) with, in a fraction `p` of slices that have infection, each lesion's edge faded
    as in real slices: normal lung near a lesion blended toward the lesion's local grey level, the lesion's
    rim toward the lung's, by one weight drawn per slice (0.15-0.45) that fades with the distance to the
    edge. Only brightens lung and darkens lesion; the label is unchanged."""
    from scipy import ndimage

    from ..data.labelmap import MAP_INFECTION, MAP_LUNG

    inf, lung = label == MAP_INFECTION, label == MAP_LUNG
    if not inf.any() or not lung.any() or rng.random() >= p:
        return image
    s = max(image.shape) / 256.0
    a = rng.uniform(0.15, 0.45)
    img = image.astype(np.float64)

    def local_grey(mask):  # mean grey of the mask's own pixels around each pixel
        num = ndimage.gaussian_filter(np.where(mask, img, 0.0), 2.0 * s)
        return num / np.maximum(ndimage.gaussian_filter(mask.astype(np.float64), 2.0 * s), 1e-6)

    d_inf, (iy, ix) = ndimage.distance_transform_edt(~inf, return_indices=True)
    d_lung, (ly, lx) = ndimage.distance_transform_edt(~lung, return_indices=True)
    fade = lambda d: np.exp(-np.maximum(d / s - 2.0, 0.0) / MARGIN_REACH)  # noqa: E731
    out = (img + a * fade(d_inf) * lung * np.maximum(local_grey(inf)[iy, ix] - img, 0.0)
           + a * fade(d_lung) * inf * np.minimum(local_grey(lung)[ly, lx] - img, 0.0))
    return np.clip(out, -1.0, 1.0).astype(image.dtype)


# ------------------------------------------------------------------------ normal-lung tone
# A generator draws the normal lung's vessels dimmer than its training slice shows them (the brightest
# percent of normal-lung pixels lower), so in a synthetic set the lung structures at soft-tissue brightness
# are mostly lesions (the density step's patches among them), and a segmenter trained on it calls real
# vessels and hila infection. This step gives the normal lung of a synthetic slice the grey-level
# distribution of its generator's training slice's normal lung (a monotone mapping: every structure stays
# where it was drawn). Measured, and off by default: docs/results.md, "Where the all-maps U-Net's false
# positives lie".

TONE_QUANTILES = np.linspace(0.0, 1.0, 101)
TONE_SIGMA = 1.0  # px at 256 px: the scale below which a generator's lung texture is its noise
MIN_NORMAL_LUNG_PX = 100  # lung tone, dependent density: fewer normal-lung px are too few to read or ramp


def lung_quantiles(image: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """The grey-level quantiles (TONE_QUANTILES) of the normal lung of one or more pairs (images in
    [-1, 1], 0/1/2 maps, (h, w) or (k, h, w)); None with fewer than MIN_NORMAL_LUNG_PX normal-lung pixels."""
    from ..data.labelmap import MAP_LUNG

    lung = image[label == MAP_LUNG]
    return np.quantile(lung, TONE_QUANTILES) if lung.size >= MIN_NORMAL_LUNG_PX else None


def match_lung_tone(image: np.ndarray, label: np.ndarray, reference: np.ndarray | None, rng: np.random.Generator,
                    p: float = 1.0) -> np.ndarray:
    """`image` (in [-1, 1]) with, in a fraction `p` of slices, its normal lung's grey levels mapped so that
    the quantiles of their smooth part are `reference`'s (from `lung_quantiles`); lesions, body and label
    untouched."""
    from scipy import ndimage

    from ..data.labelmap import MAP_LUNG

    lung = label == MAP_LUNG
    if reference is None or lung.sum() < MIN_NORMAL_LUNG_PX or rng.random() >= p:
        return image
    # the mapping is read off and applied to the lung's smooth part (structures: vessels, haze), its fine
    # residual (the generator's noise) added back unchanged, so that noise is not stretched into speckle
    smooth = ndimage.gaussian_filter(image.astype(np.float64), TONE_SIGMA * max(image.shape) / 256.0)
    own = np.quantile(smooth[lung], TONE_QUANTILES)
    x, first = np.unique(own, return_index=True)  # np.interp needs increasing x: keep each level's first
    out = image.copy()
    out[lung] = np.clip(np.interp(smooth[lung], x, reference[first]) + (image - smooth)[lung], -1.0, 1.0)
    return out


# ------------------------------------------------------------------------ dependent density
# Real lungs are denser toward the dependent side (posterior: lower in the image), from gravity on blood
# and lung tissue; a generator draws normal lung with one grey level from front to back (the condition map
# does not say where the back is). A segmenter trained on its slices calls the denser dependent lung of real
# slices infection. This step adds a linear ramp across the lungs' height to the normal lung (lesions, body
# and label untouched), its slope drawn per slice from the spread of the dev slices' slopes. Measured, and off
# by default: docs/results.md, "Dependent density".

DEPENDENT_SLOPE = 15.0 / 127.5  # median ramp over the lungs' height, in [-1, 1] grey levels (dev slices)
DEPENDENT_SPREAD = 0.9  # log-normal spread of the slope between slices (dev slices)


def dependent_density(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 1.0) -> np.ndarray:
    """`image` (in [-1, 1]) with, in a fraction `p` of slices, its normal lung made denser from front to back:
    a ramp across the lungs' rows (lung and lesion), zero on average over the normal lung, its slope drawn
    log-normal around DEPENDENT_SLOPE (at most 4 times it)."""
    from ..data.labelmap import MAP_LUNG

    lung = label == MAP_LUNG
    if lung.sum() < MIN_NORMAL_LUNG_PX or rng.random() >= p:
        return image
    rows = np.flatnonzero((label >= MAP_LUNG).any(axis=1))
    pos = (np.arange(image.shape[0]) - rows[0]) / max(rows[-1] - rows[0], 1)
    slope = min(DEPENDENT_SLOPE * np.exp(DEPENDENT_SPREAD * rng.standard_normal()), 4 * DEPENDENT_SLOPE)
    ramp = np.broadcast_to(slope * pos[:, None], image.shape)[lung]
    out = image.copy()
    out[lung] = np.clip(image[lung] + ramp - ramp.mean(), -1.0, 1.0)
    return out
