"""Reading slices and label maps: PNG/JPG (8-bit grey), NIfTI (HU or 0..255) and .npy, validated.

Internally an image is a float32 array in [-1, 1] (1 channel; -1 = air) and a label map is uint8 in
{0 background, 1 lung, 2 infection}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import HU_WINDOW
from .layout import NIFTI_EXT, RASTER_EXT, list_slice_folder, sidecar_spacing, suffix

MAX_SIDE = 4096  # refuse larger slices: far beyond CT slice sizes, likely a wrong file
INFECTION_OUTSIDE_MAX = 0.1  # with separate masks: refuse when more infection lies outside the lung


@dataclass
class Slice:
    """One image/label pair as the engine consumes it."""

    image: np.ndarray  # float32 (H, W) in [-1, 1]
    label: np.ndarray  # uint8 (H, W) in {0, 1, 2}
    spacing: tuple[float, float] | None  # mm per pixel (row, col), None when unknown
    kind: str  # "png", "nifti" or "npy": how the input came, so outputs can match
    affine: np.ndarray | None = None  # NIfTI affine of the input, to write NIfTI outputs back
    image_path: str = ""  # the file it came from (a volume's slice: the volume's file)
    label_path: str = ""
    z: int | None = None  # the index in its volume of a volume's slice

    @property
    def origin(self) -> str:
        """Where the image came from, for messages and records: its file, PATH#z=N for a volume's slice."""
        return self.image_path if self.z is None else f"{self.image_path}#z={self.z}"

    @property
    def label_origin(self) -> str:
        return self.label_path if self.z is None else f"{self.label_path}#z={self.z}"


def check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


def _read_raster(path: Path) -> np.ndarray:
    """PNG/JPG/... -> 2-D array (grey). Colour files are accepted only when they are grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "P", "1"):
                arr = np.asarray(im.convert("L"))
            elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im).astype(np.float32)
            elif mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                rgb = np.asarray(im.convert("RGB")).astype(np.int16)
                spread = int(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max())
                if spread > 12:  # JPEG noise on a grey picture stays well below this
                    raise InputError(f"{path}: colour image (channels differ by up to {spread}); "
                                     "expected a grey CT slice")
                arr = np.asarray(im.convert("L"))
            else:
                raise InputError(f"{path}: unsupported image mode {mode!r}")
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image too large to be a CT slice (over {Image.MAX_IMAGE_PIXELS} pixels); "
                         "downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return arr


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except InputError:
        raise
    except Exception as e:  # nibabel raises many types on truncated or foreign files
        raise InputError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim != 2:
        raise InputError(f"{path}: expected a 2-D slice (or a volume with one slice), got shape "
                         f"{data.shape}; use `cosingan` readers for volumes")
    sx, sy = zooms[0], zooms[1]
    if not (0.01 <= sx <= 50 and 0.01 <= sy <= 50):
        raise InputError(f"{path}: absurd pixel spacing {sx:g} x {sy:g} mm")
    # canonical RAS: axis0 = x (R->L flipped to L->R?), axis1 = y; rot90 gives anterior up
    return np.rot90(data).copy(), (sy, sx), img.affine


def _read_any(path: str | Path) -> tuple[np.ndarray, str, tuple[float, float] | None, np.ndarray | None]:
    path = Path(path)
    check_file(path)
    ext = suffix(path)
    if ext in RASTER_EXT:
        arr, kind, spacing, affine = _read_raster(path), "png", None, None
    elif ext in NIFTI_EXT:
        (arr, spacing, affine), kind = _read_nifti(path), "nifti"
    elif ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise InputError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
        kind, spacing, affine = "npy", None, None
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
        if arr.ndim != 2:
            raise InputError(f"{path}: expected a 2-D array, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputError(f"{path}: array of type {arr.dtype} is not numeric")
    else:
        raise InputError(f"{path}: unsupported file type {ext!r} (use PNG/JPG, NIfTI or .npy)")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(f"{path}: image of {arr.shape[0]}x{arr.shape[1]} px is too small (min 8 px)")
    if max(arr.shape) > MAX_SIDE:
        raise InputError(f"{path}: {arr.shape[0]}x{arr.shape[1]} px exceeds the limit of {MAX_SIDE} px "
                         "per side; downscale it first")
    return arr, kind, spacing, affine


def to_unit_range(arr: np.ndarray, kind: str, path: str | Path = "image") -> np.ndarray:
    """Map raw intensities to [-1, 1]: 8-bit as is, HU through the lung window (-1250..250)."""
    a = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(a).all():
        raise InputError(f"{path}: image contains NaN or infinite values")
    if a.max() - a.min() < 1e-6:
        raise InputError(f"{path}: image is constant ({a.min():g} everywhere)")
    if kind == "png" or arr.dtype == np.uint8:
        lo, hi = 0.0, 255.0 if a.max() <= 255 else float(a.max())
    elif a.min() >= 0 and a.max() <= 1:
        lo, hi = 0.0, 1.0
    elif a.min() >= 0 and a.max() <= 255:
        # already display-windowed (e.g. COVID-19-CT-Seg's Radiopaedia cases, scaled to 0..255)
        lo, hi = 0.0, 255.0
    else:
        lo, hi = HU_WINDOW
    out = (np.clip(a, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
    return out.astype(np.float32)


def read_image(path: str | Path) -> tuple[np.ndarray, str, tuple[float, float] | None, np.ndarray | None]:
    """Returns (image in [-1, 1], kind, spacing, affine)."""
    arr, kind, spacing, affine = _read_any(path)
    return to_unit_range(arr, kind, path), kind, spacing, affine


def validate_label(lab: np.ndarray, path: str | Path) -> np.ndarray:
    a = np.asarray(lab)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(f"{path}: label map contains NaN or infinite values")
        if not np.all(a == np.round(a)):
            raise InputError(f"{path}: label map has non-integer values; is it an image?")
    values = np.unique(a)
    bad = [v for v in values.tolist() if v not in (0, 1, 2)]
    if bad:
        shown = ", ".join(str(int(v)) for v in bad[:6]) + (", ..." if len(bad) > 6 else "")
        hint = " (looks like an image, not a label map)" if len(values) > 16 else ""
        raise InputError(f"{path}: label values must be 0 (background), 1 (lung) or 2 (infection); "
                         f"found {shown}{hint}")
    out = a.astype(np.uint8)
    if not (out > 0).any():
        raise InputError(f"{path}: label map has no lung (no pixel labelled 1 or 2)")
    return out


def read_label(path: str | Path) -> np.ndarray:
    arr, _, _, _ = _read_any(path)
    return validate_label(arr, path)


def read_mask(path: str | Path) -> np.ndarray:
    """A binary mask file (any non-zero value is foreground); left/right lung labels merge."""
    arr, _, _, _ = _read_any(path)
    if np.asarray(arr).dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{path}: mask contains NaN or infinite values")
    return np.asarray(arr) > 0


def masks_to_label(lung: np.ndarray, infection: np.ndarray | None) -> np.ndarray:
    label = lung.astype(np.uint8)
    if infection is not None:
        label[infection] = 2  # infection is drawn over lung
    return label


def load_slice(image: str | Path, label: str | Path | None = None, lung: str | Path | None = None,
               infection: str | Path | None = None) -> Slice:
    """Read an image with either a label map or separate lung (+ infection) masks; validate the pair."""
    if label is not None and (lung is not None or infection is not None):
        raise InputError(f"{label}: give a label map or lung (+ infection) masks, not both")
    if infection is not None and lung is None:
        raise InputError(f"{infection}: an infection mask needs the lung mask it lies in (--lung)")
    img, kind, spacing, affine = read_image(image)
    if label is not None:
        lab = read_label(label)
        label_path = str(label)
        lab_affine = _affine_of(label)
    elif lung is not None:
        lm = read_mask(lung)
        im = read_mask(infection) if infection is not None else None
        if im is not None and im.shape != lm.shape:
            raise InputError(f"{infection}: mask size {im.shape} differs from lung mask {lung} {lm.shape}")
        if im is not None and im.any():
            outside = int((im & ~lm).sum())
            if outside > INFECTION_OUTSIDE_MAX * im.sum():  # a few boundary pixels are annotation noise
                raise InputError(f"{infection}: {outside} of {int(im.sum())} infection pixels lie outside the "
                                 f"lung mask {lung}; are the masks from the same slice?")
        lab = validate_label(masks_to_label(lm, im), lung)
        label_path = str(lung)
        lab_affine = _affine_of(lung)
    else:
        raise InputError(f"{image}: no label map given (use --label, or --lung [--infection])")
    if lab.shape != img.shape:
        raise InputError(f"{label_path}: label map size {lab.shape[0]}x{lab.shape[1]} does not match "
                         f"image {image} size {img.shape[0]}x{img.shape[1]}")
    if affine is not None and lab_affine is not None and not np.allclose(affine, lab_affine, atol=1e-3):
        raise InputError(f"{label_path}: NIfTI geometry (affine: spacing, origin, orientation) differs from "
                         f"image {image}")
    if spacing is None:
        spacing = sidecar_spacing(image)  # slices exported from volumes keep their spacing beside them
    return Slice(img, lab, spacing, kind, affine, str(image), label_path)


def _affine_of(path: str | Path) -> np.ndarray | None:
    """The canonical affine of a NIfTI file (None for other formats); the file was already read once."""
    if suffix(path) not in NIFTI_EXT:
        return None
    import nibabel as nib

    return nib.as_closest_canonical(nib.load(str(path))).affine


def content_hash(*arrays: np.ndarray) -> str:
    """A digest of array contents (shape and values): the same slice under another name has the same one."""
    import hashlib

    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_slice_folder(root: str | Path) -> list[Slice]:
    """Every pair of a slice folder, read and validated."""
    return [load_slice(i, l) for i, l in list_slice_folder(root)]
