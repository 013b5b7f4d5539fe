"""CT volumes: COVID-19-CT-Seg and MosMedData roots read into display-oriented volumes, and the 2-D
slices of a volume as the engine consumes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .layout import CTSEG_IMAGES, MOSMED_STUDIES, NIFTI_EXT, stem, suffix, volume_root_kind
from .readers import Slice, check_file, to_unit_range


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

    check_file(path)
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


def read_volumes(root: str | Path) -> list[Volume]:
    """The volumes of a COVID-19-CT-Seg or MosMedData root (see the two readers)."""
    kind = volume_root_kind(root)
    if kind == "covid19-ct-seg":
        return read_covid19_ct_seg(root)
    if kind == "mosmed":
        return read_mosmed(root)
    raise InputError(f"{root}: not a COVID-19-CT-Seg root ({CTSEG_IMAGES}/ inside) or a MosMedData root "
                     f"({MOSMED_STUDIES}/ inside)")


def read_covid19_ct_seg(root: str | Path) -> list[Volume]:
    """COVID-19-CT-Seg (Ma et al. 2020): ROOT/COVID-19-CT-Seg_20cases/*.nii.gz with masks in
    ROOT/Lung_and_Infection_Mask (1 left lung, 2 right lung, 3 infection), or else ROOT/Lung_Mask
    (1, 2) plus ROOT/Infection_Mask (1). Left and right lung merge into label 1, infection is 2."""
    root = Path(root)
    img_dir = root / CTSEG_IMAGES
    if not img_dir.is_dir():
        if root.name == CTSEG_IMAGES:
            img_dir, root = root, root.parent
        else:
            raise InputError(f"{root}: no COVID-19-CT-Seg_20cases/ folder inside")
    images = sorted(p for p in img_dir.iterdir() if suffix(p) in NIFTI_EXT)
    if not images:
        raise InputError(f"{img_dir}: no NIfTI volumes")
    out = []
    for ip in images:
        name = stem(ip)
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
    img_dir = root / MOSMED_STUDIES / category
    if not img_dir.is_dir():
        raise InputError(f"{root}: no studies/{category}/ folder inside")
    out = []
    for ip in sorted(p for p in img_dir.iterdir() if suffix(p) in NIFTI_EXT):
        name = stem(ip)
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


def teaching_slices(vol: Volume, n: int) -> list[Slice]:
    """n slices with infection of a volume, as a person would pick them to teach a generator (see
    `labelmap.teaching_miss`: large lungs, 5-40 % of the lung infected), spread along the volume; when
    fewer qualify, the closest ones. In slice order."""
    from .labelmap import areas, teaching_miss

    cands = select_slices(vol, "with")
    if not cands or n < 1:
        return []
    miss = teaching_miss(*zip(*(areas(s.label) for s in cands)))
    ok = np.nonzero(miss == 0)[0]
    if len(ok) >= n:  # evenly spaced among the qualifying slices
        pick = ok[np.round(np.linspace(0, len(ok) - 1, n)).astype(int)]
    else:
        pick = np.argsort(miss, kind="stable")[:n]
    return [cands[i] for i in sorted(set(int(i) for i in pick))]


def slice_z(sl: Slice) -> int:
    """The index in its volume of a slice made by `select_slices` (its path ends in #z=N)."""
    return int(sl.image_path.rsplit("#z=", 1)[1])


def slice_name(vol: Volume, sl: Slice) -> str:
    """VOLUME_zNNN: the name of a volume's slice in exported folders, condition sources and run folders."""
    return f"{vol.name}_z{slice_z(sl):03d}"


def volumes_with_lungs(root: str | Path, need: str) -> list[Volume]:
    """The volumes of a root, refusing MosMedData (its masks hold infection only) for a use that `need`s
    the lungs."""
    vols = read_volumes(root)
    for v in vols:
        if not v.has_lung:
            raise InputError(f"{v.label_path or root}: no lung labels (MosMedData masks hold infection only); "
                             f"{need}: use a COVID-19-CT-Seg root or slice folders")
    return vols


def export_slices(volumes: list[Volume], out: Path, infection: str = "any", progress: bool = True) -> list[dict]:
    """`cosingan slices`: the slices of volumes (see `select_slices`) as a slice folder: 8-bit PNG images
    (lung window), 0/1/2 label maps, spacing.json (the pixel spacing PNG cannot carry; the readers take
    it from there) and slices.csv (which volume and slice each came from)."""
    import json

    from tqdm.auto import tqdm

    from .files import save_png, write_csv, write_text
    from .layout import SPACING, pair_paths

    rows, spacing = [], {}
    for vol in tqdm(volumes, desc="slices", disable=not progress, dynamic_ncols=True):
        for sl in select_slices(vol, infection):
            name, z = slice_name(vol, sl), slice_z(sl)
            ip, lp = pair_paths(out, name)
            save_png(sl.image, ip)
            save_png(sl.label, lp)
            spacing[name] = [float(s) for s in sl.spacing]
            rows.append({"name": name, "volume": vol.name, "z": z, "infection": int((sl.label == 2).any())})
    write_text(out / SPACING, json.dumps(spacing, indent=1))
    write_csv(out / "slices.csv", ["name", "volume", "z", "infection"], rows)
    return rows
