"""CT volumes: COVID-19-CT-Seg and MosMedData roots read into display-oriented volumes, and the 2-D
slices of a volume as the engine consumes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import InputError
from .labelmap import midline_sides
from .layout import CTSEG_IMAGES, MOSMED_STUDIES, NIFTI_EXT, stem, suffix, volume_root_kind
from .readers import Slice, check_file, to_unit_range


@dataclass(eq=False)
class Volume:
    """A CT volume in display orientation: (Z, H, W) image in [-1, 1] and label 0/1/2. Reading a root
    checks every file's header (shape, spacing) but reads no voxels: `image` and `label` read them on
    first use and `release()` lets them go, so a root of many volumes needs the memory of one (see
    `one_at_a_time`)."""

    name: str
    shape: tuple[int, int, int]  # (Z, H, W)
    spacing: tuple[float, float, float]  # mm: (row, col, slice)
    has_lung: bool  # MosMedData masks hold infection only
    image_path: str
    label_path: str
    read: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = field(repr=False)
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        return self._voxels()[0]

    @property
    def label(self) -> np.ndarray:
        return self._voxels()[1]

    @property
    def sides(self) -> np.ndarray | None:
        """The lungs apart, where the masks tell them (COVID-19-CT-Seg): 1 left lung, 2 right lung (the infection
        in it included), 0 elsewhere; None where they do not (MosMedData)."""
        return self._voxels()[2]

    def _voxels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            self._arrays = self.read()
        return self._arrays

    def release(self) -> None:
        self._arrays = None


def one_at_a_time(volumes: Iterable[Volume]) -> Iterator[Volume]:
    """Each volume, its voxels released once the caller moves on to the next: one volume in memory."""
    for v in volumes:
        try:
            yield v
        finally:
            v.release()


def _open(path: Path, what: str):
    """The NIfTI image (voxels not read), its shape (Z, H, W) and spacing (row, col, slice) in display
    orientation, from the header alone (checked)."""
    import nibabel as nib

    check_file(path)
    try:
        img = nib.load(str(path))
        ornt = nib.io_orientation(img.affine)
        shape, zooms = img.shape, img.header.get_zooms()
    except Exception as e:
        raise InputError(f"{path}: not a readable NIfTI {what} ({type(e).__name__}: {e})") from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3-D {what}, got shape {tuple(shape)}")
    axis = [int(a) for a in ornt[:, 0]]  # canonical axis of each stored axis
    canon = [0, 0, 0]
    zc = [0.0, 0.0, 0.0]
    for i in range(3):
        canon[axis[i]], zc[axis[i]] = int(shape[i]), float(zooms[i])
    if not all(0.01 <= z <= 50 for z in zc):
        raise InputError(f"{path}: absurd voxel spacing {' x '.join(f'{z:g}' for z in zc)} mm")
    # display orientation: (Z, H, W) with rows = canonical axis 1 reversed (anterior up), cols = axis 0
    return img, (canon[2], canon[1], canon[0]), (zc[1], zc[0], zc[2])


def _read_volume(path: Path, what: str = "volume") -> np.ndarray:
    """NIfTI -> (Z, H, W) in display orientation (same rotation as 2-D slices)."""
    import nibabel as nib

    img, _, _ = _open(path, what)
    try:
        data = np.asarray(nib.as_closest_canonical(img).dataobj, dtype=np.float32)
    except Exception as e:
        raise InputError(f"{path}: not a readable NIfTI {what} ({type(e).__name__}: {e})") from None
    if data.ndim == 4:
        data = data[..., 0]
    return np.rot90(data, axes=(0, 1)).transpose(2, 0, 1).copy()  # (Z, H, W), anterior up


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
        _, shape, spacing = _open(ip, "volume")
        both = root / "Lung_and_Infection_Mask" / ip.name
        if both.exists():
            masks = [both]
        else:
            lung_p = root / "Lung_Mask" / ip.name
            if not lung_p.exists():
                raise InputError(f"{ip}: no mask {both} or {lung_p}")
            inf_p = root / "Infection_Mask" / ip.name
            masks = [lung_p] + ([inf_p] if inf_p.exists() else [])
        for mp in masks:
            mshape = _open(mp, "mask")[1]
            if mshape != shape:
                raise InputError(f"{mp}: mask shape {mshape} does not match volume {ip} {shape}")
        out.append(Volume(stem(ip), shape, spacing, True, str(ip), str(masks[0]),
                          partial(_read_ctseg, ip, masks, both.exists())))
    return out


def _read_ctseg(ip: Path, masks: list[Path], combined: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The voxels of a COVID-19-CT-Seg case: one `combined` mask (1 left lung, 2 right lung, 3 infection),
    or a lung mask (1, 2) and an optional infection mask (1). Also the lungs' sides (see `Volume.sides`;
    infection voxels of a combined mask go to the side of the midline between the two lungs they lie on)."""
    m = _read_volume(masks[0], "mask")
    values = set(np.unique(m).tolist())
    bad = values - {0, 1, 2, 3} if combined else set()
    if bad:
        raise InputError(f"{masks[0]}: unexpected mask values {', '.join(f'{x:g}' for x in sorted(bad))} "
                         "(expected 0 background, 1 and 2 lungs, 3 infection)")
    label = (m > 0).astype(np.uint8)
    sides = np.where((m == 1) | (m == 2), m, 0).astype(np.uint8)
    if combined:
        label[m == 3] = 2
        sides = np.where(m == 3, midline_sides(m == 3, sides), sides)
    else:
        if len(masks) == 2:
            label[_read_volume(masks[1], "mask") > 0] = 2
        if values != {0, 1, 2}:  # not a left (1) / right (2) lung mask: the sides are not known
            sides = None
    return _volume_to_unit(_read_volume(ip), ip), label, sides


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
        _, shape, spacing = _open(ip, "volume")
        mshape = _open(mp, "mask")[1]
        if mshape != shape:
            raise InputError(f"{mp}: mask shape {mshape} does not match volume {ip} {shape}")
        out.append(Volume(name, shape, spacing, False, str(ip), str(mp), partial(_read_mosmed, ip, mp)))
    if not out:
        raise InputError(f"{img_dir}: no study with a mask in {root / 'masks'}")
    return out


def _read_mosmed(ip: Path, mp: Path) -> tuple[np.ndarray, np.ndarray, None]:
    return _volume_to_unit(_read_volume(ip), ip), np.where(_read_volume(mp, "mask") > 0, 2, 0).astype(np.uint8), None


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
                         vol.image_path, vol.label_path, z))
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
    """The index in its volume of a slice made by `select_slices`."""
    if sl.z is None:
        raise ValueError(f"{sl.origin}: not a slice of a volume")
    return sl.z


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
    for vol in one_at_a_time(tqdm(volumes, desc="slices", disable=not progress, dynamic_ncols=True)):
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
