"""A procedurally drawn chest-CT phantom (lung window) with lungs and COVID-like lesions.

It is NOT real data: it exists so that `make demo` and the tests run with nothing downloaded. Shapes
and grey levels imitate a display-windowed axial slice: air black, soft tissue near white, lungs dark
with bright vessels, ground-glass lesions mid-grey in the lower (posterior) lungs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-8)


def chest_phantom(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image float32 in [-1, 1], label uint8 0/1/2) of shape (size, size)."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w] / size
    body = ((xx - 0.5) / 0.47) ** 2 + ((yy - 0.52) / 0.40) ** 2 <= 1.0
    # lungs: two tilted ellipses with a notch for the heart on the left lung (image right)
    left = ((xx - 0.30) / 0.16) ** 2 + ((yy - 0.48) / 0.29) ** 2 <= 1.0
    right = ((xx - 0.70) / 0.155) ** 2 + ((yy - 0.48) / 0.28) ** 2 <= 1.0
    heart = ((xx - 0.56) / 0.15) ** 2 + ((yy - 0.50) / 0.14) ** 2 <= 1.0
    spine = ((xx - 0.5) / 0.06) ** 2 + ((yy - 0.82) / 0.06) ** 2 <= 1.0
    lung = (left | right) & ~heart & ~spine & body
    warp = _smooth_noise(rng, (h, w), size / 12) * 0.02 * size
    lung = ndimage.map_coordinates(lung.astype(float), [yy * size + warp, xx * size - warp], order=1) > 0.5
    # lesions: blobs in the posterior (lower) lung, thresholded smooth noise
    blob = _smooth_noise(rng, (h, w), size / 28) + 2.2 * (yy - 0.55)
    infection = lung & (blob > 1.3)
    label = np.zeros((h, w), np.uint8)
    label[lung] = 1
    label[infection] = 2

    img = np.full((h, w), -1.0)
    tissue = 0.72 + 0.06 * _smooth_noise(rng, (h, w), 2)
    img[body] = tissue[body]
    ribs = body & ~ndimage.binary_erosion(body, iterations=max(2, size // 40))
    img[ribs] = 0.95
    img[spine] = 1.0
    # lung parenchyma: dark, fine texture, bright vessel dots growing towards the hilum
    paren = -0.72 + 0.05 * _smooth_noise(rng, (h, w), 1.0)
    vessels = _smooth_noise(rng, (h, w), 1.2) > 2.3 - 0.8 * np.exp(-((xx - 0.5) ** 2) / 0.02)
    paren[vessels] = 0.2
    ggo = -0.15 + 0.18 * _smooth_noise(rng, (h, w), 1.5)
    img[lung] = paren[lung]
    img[infection] = np.maximum(ggo, paren)[infection]
    img += 0.03 * rng.standard_normal((h, w))  # quantum noise
    return np.clip(img, -1, 1).astype(np.float32), label
