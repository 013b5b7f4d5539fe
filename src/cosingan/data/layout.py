"""Folder layout: the one public home for how files are named and where they sit.

A *slice folder* is ROOT/images/NAME.ext with ROOT/labels/NAME.ext (any readable extension, matched by
NAME). Masks made by `cosingan masks` add ROOT/bodies/NAME.png. Image-only folders (normals) are either
ROOT/images/* or ROOT/* itself. Every reader and writer of these folders goes through this module.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

IMAGES, LABELS, BODIES = "images", "labels", "bodies"
SPACING = "spacing.json"  # beside images/ and labels/: {NAME: [row mm, col mm]} for files that carry none
CTSEG_IMAGES = "COVID-19-CT-Seg_20cases"  # the COVID-19-CT-Seg root's image folder
MOSMED_STUDIES = "studies"  # the MosMedData root's image folder
RASTER_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
NIFTI_EXT = {".nii", ".nii.gz"}
SLICE_EXT = RASTER_EXT | NIFTI_EXT | {".npy"}


def suffix(path: str | Path) -> str:
    """Lower-case extension; `.nii.gz` counts as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def stem(path: str | Path) -> str:
    """File name without its extension (`.nii.gz` counts as one)."""
    name = Path(path).name
    return name[:-7] if name.lower().endswith(".nii.gz") else Path(name).stem


def output_stem(path: str | Path) -> str:
    """An input's name as the name of an output (a run folder, a sample file); refused where it would make a
    hidden file or a path (`...png` -> `..`)."""
    name = stem(path)
    if not name or name.startswith("."):
        raise InputError(f"{path}: a file name that starts with '.' would name a hidden output; rename the file")
    return name


def slice_files(folder: str | Path) -> list[Path]:
    """Readable slice files directly in `folder`, sorted; hidden files (`.name`, e.g. `._x.png` copied from a
    Mac) are not slices."""
    return sorted(p for p in Path(folder).iterdir() if suffix(p) in SLICE_EXT and not p.name.startswith("."))


def image_folder(root: str | Path) -> Path:
    """ROOT/images when it exists, else ROOT (folders of unlabelled images)."""
    root = Path(root)
    return root / IMAGES if (root / IMAGES).is_dir() else root


def image_files(root: str | Path) -> list[Path]:
    """Every image of an image-only folder (or its images/ subfolder)."""
    d = image_folder(root)
    if not d.is_dir():
        raise InputError(f"{root}: not a folder")
    files = slice_files(d)
    if not files:
        raise InputError(f"{d}: no images")
    return files


def pair_folders(img_dir: str | Path, lab_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs matched by name: IMG_DIR/NAME.* with LAB_DIR/NAME.*."""
    img_dir, lab_dir = Path(img_dir), Path(lab_dir)
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise InputError(f"{d}: not a folder")
    labels = {stem(p): p for p in slice_files(lab_dir)}
    images = slice_files(img_dir)
    pairs = []
    for ip in images:
        lp = labels.get(stem(ip))
        if lp is None:
            raise InputError(f"{ip}: no label map {lab_dir}/{stem(ip)}.* for this image")
        pairs.append((ip, lp))
    if not pairs:
        raise InputError(f"{img_dir}: no images (PNG/JPG, NIfTI or .npy)")
    orphans = sorted(set(labels) - {stem(ip) for ip in images})
    if orphans:
        raise InputError(f"{labels[orphans[0]]}: a label map with no image {img_dir}/{orphans[0]}.* "
                         f"({len(orphans)} such); remove it or add its image")
    return pairs


def is_slice_folder(root: str | Path) -> bool:
    return (Path(root) / IMAGES).is_dir()


def list_slice_folder(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a slice folder."""
    root = Path(root)
    if not (root / IMAGES).is_dir() or not (root / LABELS).is_dir():
        raise InputError(f"{root}: expected a slice folder with {IMAGES}/ and {LABELS}/ inside")
    return pair_folders(root / IMAGES, root / LABELS)


def label_folder(root: str | Path) -> Path:
    """ROOT/labels when it exists, else ROOT (folders of bare label maps)."""
    root = Path(root)
    return root / LABELS if (root / LABELS).is_dir() else root


def sidecar_spacing(image_path: str | Path) -> tuple[float, float] | None:
    """Pixel spacing of ROOT/images/NAME.* from ROOT/spacing.json (written by `cosingan slices`), if any."""
    import json

    image_path = Path(image_path)
    if image_path.parent.name != IMAGES:
        return None
    side = image_path.parent.parent / SPACING
    if not side.exists():
        return None
    try:
        sp = json.loads(side.read_text()).get(stem(image_path))
        return (float(sp[0]), float(sp[1])) if sp else None
    except (ValueError, TypeError, IndexError, AttributeError):
        raise InputError(f"{side}: unreadable spacing sidecar (expected {{NAME: [row mm, col mm]}})") from None


def volume_root_kind(root: str | Path) -> str | None:
    """"covid19-ct-seg", "mosmed" or None (not a volume root) for a folder."""
    root = Path(root)
    if (root / CTSEG_IMAGES).is_dir() or root.name == CTSEG_IMAGES:
        return "covid19-ct-seg"
    if (root / MOSMED_STUDIES).is_dir():
        return "mosmed"
    return None


def paired_image(label_path: str | Path) -> Path | None:
    """DIR/labels/NAME.ext -> DIR/images/NAME.<any ext>, or None outside a slice folder."""
    label_path = Path(label_path)
    if label_path.parent.name != LABELS:
        return None
    img_dir = label_path.parent.parent / IMAGES
    if not img_dir.is_dir():
        return None
    name = stem(label_path)  # the exact name: never a pattern (a name may hold [ ] * ?)
    return next((c for c in sorted(img_dir.iterdir()) if stem(c) == name and c.is_file()), None)


def body_file(root: str | Path, label_path: str | Path) -> Path:
    """Where `cosingan masks` keeps the body mask of a label map."""
    return Path(root) / BODIES / Path(label_path).name


def pair_paths(root: str | Path, name: str, ext: str = ".png") -> tuple[Path, Path]:
    """Where a slice folder keeps the pair NAME: (ROOT/images/NAME.ext, ROOT/labels/NAME.ext)."""
    root = Path(root)
    return root / IMAGES / f"{name}{ext}", root / LABELS / f"{name}{ext}"


def nnunet_pair_paths(root: str | Path, case: str) -> tuple[Path, Path]:
    """nnU-Net v2 raw dataset layout of one single-channel training case."""
    root = Path(root)
    return root / "imagesTr" / f"{case}_0000.nii.gz", root / "labelsTr" / f"{case}.nii.gz"
