"""Reading and writing slices and label maps; every write is atomic (temp file + rename).

Internally an image is a float32 array in [-1, 1] (1 channel; -1 = air) and a label map is uint8 in
{0 background, 1 lung, 2 infection}.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

HU_WINDOW = (-1250.0, 250.0)  # lung window used by COVID-19-CT-Seg
MAX_SIDE = 4096  # refuse larger slices: far beyond CT slice sizes, likely a wrong file
INFECTION_OUTSIDE_MAX = 0.1  # with separate masks: refuse when more infection lies outside the lung
_UMASK = os.umask(0)
os.umask(_UMASK)
PNG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class Slice:
    """One image/label pair as the engine consumes it."""

    image: np.ndarray  # float32 (H, W) in [-1, 1]
    label: np.ndarray  # uint8 (H, W) in {0, 1, 2}
    spacing: tuple[float, float] | None  # mm per pixel (row, col), None when unknown
    kind: str  # "png", "nifti" or "npy": how the input came, so outputs can match
    affine: np.ndarray | None = None  # NIfTI affine of the input, to write NIfTI outputs back
    image_path: str = ""
    label_path: str = ""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def _check_exists(path: Path) -> None:
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
    _check_exists(path)
    ext = _suffix(path)
    if ext in PNG_EXT:
        arr, kind, spacing, affine = _read_raster(path), "png", None, None
    elif ext in (".nii", ".nii.gz"):
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
    return Slice(img, lab, spacing, kind, affine, str(image), label_path)


def _affine_of(path: str | Path) -> np.ndarray | None:
    """The canonical affine of a NIfTI file (None for other formats); the file was already read once."""
    if _suffix(Path(path)) not in (".nii", ".nii.gz"):
        return None
    import nibabel as nib

    return nib.as_closest_canonical(nib.load(str(path))).affine


# ----------------------------------------------------------------------------------------- writing

@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temp path next to `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def image_to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round((np.clip(img, -1, 1) + 1) * 127.5).astype(np.uint8)


def save_png(arr: np.ndarray, path: str | Path) -> None:
    """uint8 arrays are written as they are; float images in [-1, 1] are mapped to 0..255."""
    from PIL import Image

    a = arr if arr.dtype == np.uint8 else image_to_uint8(arr)
    with atomic_path(path) as tmp:
        Image.fromarray(a).save(tmp, format="PNG")


def save_nifti(arr: np.ndarray, path: str | Path, affine: np.ndarray | None = None,
               spacing: tuple[float, float] | None = None, is_label: bool = False) -> None:
    """Write a 2-D slice as a one-slice NIfTI volume; images go back to HU (lung window)."""
    import nibabel as nib

    if is_label:
        data = arr.astype(np.uint8)
    else:
        lo, hi = HU_WINDOW
        data = ((np.clip(arr, -1, 1) + 1) / 2 * (hi - lo) + lo).astype(np.float32)
    data = np.rot90(data, -1)[:, :, None]  # inverse of the reader's display rotation
    if affine is None:
        sy, sx = spacing or (1.0, 1.0)
        affine = np.diag([sx, sy, 1.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp) + ".nii.gz")
        os.replace(str(tmp) + ".nii.gz", tmp)


# ------------------------------------------------------------------------- folders and volumes

SLICE_EXT = PNG_EXT | {".nii", ".nii.gz", ".npy"}


def _stem(path: Path) -> str:
    return path.name[:-7] if path.name.lower().endswith(".nii.gz") else path.stem


def list_slice_folder(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a slice folder: ROOT/images/NAME.* with ROOT/labels/NAME.*."""
    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise InputError(f"{root}: expected a slice folder with images/ and labels/ inside")
    return pair_folders(img_dir, lab_dir)


def pair_folders(img_dir: str | Path, lab_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs matched by name: IMG_DIR/NAME.* with LAB_DIR/NAME.*."""
    img_dir, lab_dir = Path(img_dir), Path(lab_dir)
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise InputError(f"{d}: not a folder")
    pairs = []
    labels = {_stem(p): p for p in lab_dir.iterdir() if _suffix(p) in SLICE_EXT}
    for ip in sorted(p for p in img_dir.iterdir() if _suffix(p) in SLICE_EXT):
        lp = labels.get(_stem(ip))
        if lp is None:
            raise InputError(f"{ip}: no label map {lab_dir}/{_stem(ip)}.* for this image")
        pairs.append((ip, lp))
    if not pairs:
        raise InputError(f"{img_dir}: no images (PNG/JPG, NIfTI or .npy)")
    return pairs


def read_slice_folder(root: str | Path) -> list[Slice]:
    return [load_slice(i, l) for i, l in list_slice_folder(root)]


@dataclass
class Volume:
    """A CT volume in display orientation: (Z, H, W) image in [-1, 1] and label 0/1/2 (or None)."""

    name: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]  # mm: (row, col, slice)
    has_lung: bool = True  # MosMedData masks hold infection only
    image_path: str = ""
    label_path: str = ""


def _read_volume(path: Path, what: str = "volume") -> tuple[np.ndarray, tuple[float, float, float]]:
    """NIfTI -> (Z, H, W) in display orientation (same rotation as 2-D slices) and spacing."""
    import nibabel as nib

    _check_exists(path)
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as e:
        raise InputError(f"{path}: not a readable NIfTI {what} ({type(e).__name__}: {e})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D {what}, got shape {data.shape}")
    if not all(0.01 <= z <= 50 for z in zooms):
        raise InputError(f"{path}: absurd voxel spacing {' x '.join(f'{z:g}' for z in zooms)} mm")
    vol = np.rot90(data, axes=(0, 1)).transpose(2, 0, 1).copy()  # (Z, H, W), anterior up
    return vol, (zooms[1], zooms[0], zooms[2])


def _volume_to_unit(vol: np.ndarray, path: Path) -> np.ndarray:
    """HU (lung window) or already windowed 0..255 (COVID-19-CT-Seg's Radiopaedia cases), decided on
    the whole volume: a real HU volume always holds air near -1000."""
    return to_unit_range(vol, "nifti", path)


def read_covid19_ct_seg(root: str | Path) -> list[Volume]:
    """COVID-19-CT-Seg (Ma et al. 2020): ROOT/COVID-19-CT-Seg_20cases/*.nii.gz with masks in
    ROOT/Lung_and_Infection_Mask (1 left lung, 2 right lung, 3 infection), or else ROOT/Lung_Mask
    (1, 2) plus ROOT/Infection_Mask (1). Left and right lung merge into label 1, infection is 2."""
    root = Path(root)
    img_dir = root / "COVID-19-CT-Seg_20cases"
    if not img_dir.is_dir():
        if root.name == "COVID-19-CT-Seg_20cases":
            img_dir, root = root, root.parent
        else:
            raise InputError(f"{root}: no COVID-19-CT-Seg_20cases/ folder inside")
    images = sorted(p for p in img_dir.iterdir() if _suffix(p) in (".nii", ".nii.gz"))
    if not images:
        raise InputError(f"{img_dir}: no NIfTI volumes")
    out = []
    for ip in images:
        name = _stem(ip)
        vol, spacing = _read_volume(ip)
        both = root / "Lung_and_Infection_Mask" / ip.name
        if both.exists():
            m, _ = _read_volume(both, "mask")
            label = np.zeros(m.shape, np.uint8)
            label[(m == 1) | (m == 2)] = 1
            label[m == 3] = 2
            lpath = both
        else:
            lung_p = root / "Lung_Mask" / ip.name
            if not lung_p.exists():
                raise InputError(f"{ip}: no mask {both} or {lung_p}")
            lm, _ = _read_volume(lung_p, "mask")
            label = (lm > 0).astype(np.uint8)
            inf_p = root / "Infection_Mask" / ip.name
            if inf_p.exists():
                im, _ = _read_volume(inf_p, "mask")
                if im.shape != lm.shape:
                    raise InputError(f"{inf_p}: shape {im.shape} differs from {lung_p} {lm.shape}")
                label[im > 0] = 2
            lpath = lung_p
        if label.shape != vol.shape:
            raise InputError(f"{lpath}: mask shape {label.shape} does not match volume {ip} {vol.shape}")
        bad = set(np.unique(label).tolist()) - {0, 1, 2}
        if bad:
            raise InputError(f"{lpath}: unexpected mask values {sorted(bad)}")
        out.append(Volume(name, _volume_to_unit(vol, ip), label, spacing, True, str(ip), str(lpath)))
    return out


def read_mosmed(root: str | Path, category: str = "CT-1") -> list[Volume]:
    """MosMedData: ROOT/studies/CT-1/study_NNNN.nii.gz with ROOT/masks/study_NNNN_mask.nii.gz
    (infection only: the volumes carry no lung labels, so has_lung is False). Studies without a mask
    are skipped."""
    root = Path(root)
    img_dir = root / "studies" / category
    if not img_dir.is_dir():
        raise InputError(f"{root}: no studies/{category}/ folder inside")
    out = []
    for ip in sorted(p for p in img_dir.iterdir() if _suffix(p) in (".nii", ".nii.gz")):
        name = _stem(ip)
        mp = root / "masks" / f"{name}_mask.nii.gz"
        if not mp.exists():
            continue
        vol, spacing = _read_volume(ip)
        m, _ = _read_volume(mp, "mask")
        if m.shape != vol.shape:
            raise InputError(f"{mp}: mask shape {m.shape} does not match volume {ip} {vol.shape}")
        label = np.where(m > 0, 2, 0).astype(np.uint8)
        out.append(Volume(name, _volume_to_unit(vol, ip), label, spacing, False, str(ip), str(mp)))
    if not out:
        raise InputError(f"{img_dir}: no study with a mask in {root / 'masks'}")
    return out


def select_slices(vol: Volume, infection: str = "any", min_lung_fraction: float = 0.01) -> list[Slice]:
    """2-D slices of a volume: those with lungs (at least min_lung_fraction of the slice; for volumes
    without lung labels, those with infection), filtered by infection: any, with, without."""
    if infection not in ("any", "with", "without"):
        raise ValueError(f"infection must be any, with or without, got {infection!r}")
    out = []
    for z in range(vol.image.shape[0]):
        lab = vol.label[z]
        inf = bool((lab == 2).any())
        if vol.has_lung:
            if (lab > 0).mean() < min_lung_fraction:
                continue
        elif not inf:
            continue  # without lung labels, an infection-free slice cannot be told from a non-lung one
        if (infection == "with" and not inf) or (infection == "without" and inf):
            continue
        out.append(Slice(vol.image[z].copy(), lab.copy(), (vol.spacing[0], vol.spacing[1]), "nifti", None,
                         f"{vol.image_path}#z={z}", f"{vol.label_path}#z={z}"))
    return out


# ------------------------------------------------------------------------ small network checkpoints

def save_net(net, cfg, out: Path) -> None:
    """OUT/model.pt = {"config": the config dataclass as a dict, "state": weights}; atomic."""
    import dataclasses

    import torch

    with atomic_path(Path(out) / "model.pt") as tmp:
        torch.save({"config": dataclasses.asdict(cfg), "state": net.state_dict()}, tmp)


def torch_load(path: Path, map_location="cpu"):
    """torch.load with weights_only=True (never unpickles code); its protocol warnings are not ours to show."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def load_net(path: str | Path, config_cls, make_net, what: str):
    """(network, config) from a folder or file written by `save_net`; lists in the config become tuples."""

    p = Path(path)
    p = p / "model.pt" if p.is_dir() else p
    if not p.exists():
        raise InputError(f"{p}: no {what} model")
    try:
        ck = torch_load(p)
        cfg = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["config"].items()})
        net = make_net(cfg)
        net.load_state_dict(ck["state"])
    except Exception as e:
        raise InputError(f"{p}: unreadable {what} model, or one of another cosingan version "
                         f"({type(e).__name__})") from None
    return net, cfg
