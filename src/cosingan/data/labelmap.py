"""Label maps: 0 background, 1 lung, 2 infection, and the internal 4-class map with the body.

A label map holds 0 background, 1 lung, 2 infection. CT slices also show a body around the lungs; a
generator that is not told where the body ends invents it (the prototype's washed-out bodies), so the
condition carries it as a channel: air / body / lung / infection. The body comes from the image when
there is one (threshold + largest component + holes filled) and is estimated from the lungs when only
a label map is given.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# the label map users bring: 0 background, 1 lung, 2 infection
MAP_LUNG, MAP_INFECTION = 1, 2
# internal 4-class map: the label map with background split into air and body
AIR, BODY, LUNG, INFECTION = 0, 1, 2, 3

# How far the body reaches beyond the lungs' bounding box, as a fraction of that box (rows, cols);
# why these values: docs/design.md.
BODY_MARGIN = (0.20, 0.06)


def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def body_from_image(image: np.ndarray, label: np.ndarray, threshold: float = -0.4) -> np.ndarray:
    """Body mask of a slice in [-1, 1]: tissue brighter than `threshold`, joined with the lungs."""
    mask = (image > threshold) | (label > 0)
    mask = ndimage.binary_opening(mask, iterations=2) | (label > 0)
    mask = largest_component(mask)
    mask = ndimage.binary_closing(mask, iterations=3, border_value=0) | mask
    return ndimage.binary_fill_holes(mask)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [-1, 1]: the cut that best separates two grey-level classes."""
    h, edges = np.histogram(values, bins=bins, range=(-1.0, 1.0))
    p = h / max(1, h.sum())
    w, mu = np.cumsum(p), np.cumsum(p * np.arange(bins))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w - mu) ** 2 / (w * (1 - w))
    return float(edges[int(np.nanargmax(between)) + 1])


# A component of dark pixels inside the body counts as lung when it is at least this share of the largest
# one: both lungs (or one, merged), not the trachea, bronchi or bowel gas (about 1-2 % of a lung).
LUNG_COMPONENT_SHARE = 0.1


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of a non-empty mask: first row, last row + 1, first column, last column + 1."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def lungs_from_image(image: np.ndarray, crop: bool = True) -> np.ndarray:
    """The air/body/lung map of an unannotated slice in [-1, 1] that shows the whole body (air around it,
    as any slice of a CT volume does), cropped to the body's box like the project's training slices.
    Classic threshold segmentation, no annotation: Otsu's cut inside the field of view (pixels above -1)
    separates air from tissue; the body is the largest tissue component with its holes filled; the lungs
    are the large air components inside it, closed and filled so that vessels count as lung. Raises
    ValueError (with the reason) when no lungs enclosed by a body are found (e.g. a slice cropped into the
    lungs, or below the lungs). Meant for infection-free slices: dense infection would read as body.
    `crop=False` keeps the image's grid (to frame the image itself as its map)."""
    fov = image > -1.0 + 1e-3
    if fov.sum() < 64:
        raise ValueError("no field of view (the image is black)")
    if np.ptp(image[fov]) < 0.05:
        raise ValueError("no contrast between air and tissue in the field of view")
    tissue = image > _otsu(image[fov])
    # the opening cuts the table and thin lines off the body; at most a third of a thin chest wall
    # (about 15 px at 512 px), so that the wall still closes around the lungs
    body = largest_component(ndimage.binary_opening(tissue, iterations=max(1, min(image.shape) // 170)))
    body = ndimage.binary_fill_holes(ndimage.binary_closing(body, iterations=3, border_value=0))
    air = ndimage.binary_opening(body & ~tissue, iterations=1)
    lab, n = ndimage.label(air)
    if n == 0:
        raise ValueError("no lungs enclosed by a body (a slice without lungs, or one cropped into the body?)")
    sizes = ndimage.sum(air, lab, index=np.arange(1, n + 1))
    lung = np.isin(lab, 1 + np.nonzero(sizes >= LUNG_COMPONENT_SHARE * sizes.max())[0])
    lung = ndimage.binary_fill_holes(ndimage.binary_closing(lung, iterations=2)) & body
    if lung.sum() < 0.02 * body.sum():
        raise ValueError("lungs smaller than 2% of the body (a slice below or above the lungs?)")
    if lung[0].any() or lung[-1].any() or lung[:, 0].any() or lung[:, -1].any():
        raise ValueError("lungs reach the image border (a slice cropped into the body?)")
    out = np.where(body, BODY, AIR).astype(np.uint8)
    out[lung] = LUNG
    if not crop:
        return out
    r0, r1, c0, c1 = _box(body)
    return out[r0:r1, c0:c1]


def reframe(label4: np.ndarray, like: np.ndarray) -> np.ndarray:
    """`label4` cropped (or padded with air) so that its lungs sit in the frame as `like`'s lungs do: the
    same margins around the lungs' box, as fractions of that box. Slices are framed differently (the
    MedSeg slices are cropped to the lungs' box, so the lungs touch all four edges; a volume's slice shows
    the whole field of view); a condition framed unlike the annotated slices teaches the U-Net another
    framing than the one it is tested on."""
    return frame_like(label4, label4 >= LUNG, like >= LUNG, AIR)


def frame_like(a: np.ndarray, lungs: np.ndarray, like_lungs: np.ndarray, fill: float) -> np.ndarray:
    """`a` (any array on the grid of the mask `lungs`) cropped, or padded with `fill`, so that `lungs` sit
    in the frame as `like_lungs` sit in theirs (`reframe`; also frames an image as its lung map)."""
    r0, r1, c0, c1 = _box(like_lungs)
    h, w = r1 - r0, c1 - c0
    margins = (r0 / h, (like_lungs.shape[0] - r1) / h, c0 / w, (like_lungs.shape[1] - c1) / w)
    r0, r1, c0, c1 = _box(lungs)
    h, w = r1 - r0, c1 - c0
    top, bottom = r0 - round(margins[0] * h), r1 + round(margins[1] * h)
    left, right = c0 - round(margins[2] * w), c1 + round(margins[3] * w)
    pad = max(0, -top, -left, bottom - a.shape[0], right - a.shape[1])
    out = np.pad(a, pad, constant_values=fill)
    return out[top + pad:bottom + pad, left + pad:right + pad]


def body_from_label(label: np.ndarray, margin: tuple[float, float] = BODY_MARGIN) -> np.ndarray:
    """Body estimated from the lungs alone: an ellipse around the lungs' box, widened by `margin`,
    joined with the lungs' filled convex envelope. Used when no image comes with a label map."""
    lung = label > 0
    rows, cols = np.nonzero(lung)
    h, w = label.shape
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    cy, cx = (r0 + r1) / 2, (c0 + c1) / 2
    ry = (r1 - r0) / 2 * (1 + 2 * margin[0]) + 1
    rx = (c1 - c0) / 2 * (1 + 2 * margin[1]) + 1
    yy, xx = np.mgrid[0:h, 0:w]
    # a superellipse (exponent 3) is closer to a chest outline than an ellipse
    body = (np.abs((yy - cy) / ry) ** 3 + np.abs((xx - cx) / rx) ** 3) <= 1.0
    return body | ndimage.binary_fill_holes(ndimage.binary_closing(lung, iterations=5)) | lung


def to_label4(label: np.ndarray, body: np.ndarray | None) -> np.ndarray:
    """0/1/2 label map (+ body mask) -> 0 air / 1 body / 2 lung / 3 infection."""
    out = np.zeros(label.shape, np.uint8)
    if body is not None:
        out[body] = BODY
    out[label == MAP_LUNG] = LUNG
    out[label == MAP_INFECTION] = INFECTION
    return out


def label4_to_label(label4: np.ndarray) -> np.ndarray:
    """Back to the user's 0/1/2 map (body -> background)."""
    return np.clip(label4.astype(np.int16) - 1, 0, None).astype(np.uint8)


def check_label4(label4: np.ndarray, min_lesion: int = 0) -> str | None:
    """None when the map is a valid condition, else the reason it is not."""
    if label4.dtype != np.uint8 or label4.ndim != 2:
        return "not a 2-D uint8 map"
    if label4.max() > INFECTION:
        return "values outside air/body/lung/infection"
    lung = label4 >= LUNG
    if lung.sum() < 0.01 * label4.size:
        return "lung smaller than 1% of the slice"
    inf = label4 == INFECTION
    if inf.any():
        lab, n = ndimage.label(inf)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            # grow the lesion's box by one pixel, look at the ring around the lesion
            box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
            comp = lab[box] == k
            ring = ndimage.binary_dilation(comp) & ~comp
            if min_lesion and comp.sum() < min_lesion:
                return f"lesion sliver smaller than {min_lesion} px"
            # a lesion is drawn on lung: it must touch lung (along the pleura it may also touch body)
            if ring.any() and not (label4[box][ring] == LUNG).any():
                return "infection outside the lung"
    return None


# what a person picks to teach normal and infected lung: large lungs and part of them infected
TEACHING_INFECTED = (0.05, 0.40)


def areas(label: np.ndarray) -> tuple[float, float]:
    """(lung share of the slice, infected share of the lung) of a 0/1/2 map."""
    n = max(1, int((label > 0).sum()))
    return n / label.size, float((label == 2).sum()) / n


def teaching_miss(lung_share: np.ndarray, infected_share: np.ndarray) -> np.ndarray:
    """How far each slice is from what a person would pick to teach a generator: 0 for lungs at least the
    median lung share of the candidates (no basal slices that are mostly liver) with 5-40 % of the lung
    infected (both normal lung and lesions to learn from); otherwise the summed shortfalls."""
    lo, hi = TEACHING_INFECTED
    lung_share, infected_share = np.asarray(lung_share, float), np.asarray(infected_share, float)
    return (np.maximum(0, np.median(lung_share) - lung_share) + np.maximum(0, lo - infected_share)
            + np.maximum(0, infected_share - hi))



LEFT_LUNG, RIGHT_LUNG = 1, 2  # COVID-19-CT-Seg's lung labels


def midline_sides(mask: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Each pixel or voxel of `mask` given the lung side (LEFT_LUNG, RIGHT_LUNG) of the midline it lies on:
    the column halfway between the centres of `sides`' left and right lungs (the lungs lie either side of
    the mediastinum along the image's columns, whatever the orientation). 0 outside `mask`; one side only
    where `sides` holds one; all 0 where it holds none."""
    out = np.zeros(mask.shape, np.uint8)
    present = [s for s in (LEFT_LUNG, RIGHT_LUNG) if (sides == s).any()]
    if len(present) < 2:
        out[mask] = present[0] if present else 0
        return out
    left, right = (np.nonzero(sides == s)[-1].mean() for s in (LEFT_LUNG, RIGHT_LUNG))
    low_side = np.arange(mask.shape[-1]) < (left + right) / 2  # columns on the lower side of the midline
    low, high = (LEFT_LUNG, RIGHT_LUNG) if left < right else (RIGHT_LUNG, LEFT_LUNG)
    out[mask & low_side] = low
    out[mask & ~low_side] = high
    return out
