"""Atomic writers (temp file + rename: a killed process never leaves half a file) and safe loads."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .pictures import image_to_uint8

HU_WINDOW = (-1250.0, 250.0)  # lung window used by COVID-19-CT-Seg (readers map it to [-1, 1])
_UMASK = os.umask(0)
os.umask(_UMASK)


TEMP_SUFFIX = ".cosingan-tmp"  # only this module's temporary files end so: only they are ever swept


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temp path next to `path`; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite(x):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, data, indent: int = 2) -> None:
    """Strict JSON (NaN and infinity written as null)."""
    write_text(path, json.dumps(_finite(data), indent=indent, allow_nan=False))


def write_csv(path: str | Path, fields: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)


def save_png(arr: np.ndarray, path: str | Path) -> None:
    """uint8 arrays (grey or RGB) are written as they are; float images in [-1, 1] are mapped to 0..255."""
    from PIL import Image

    a = arr if arr.dtype == np.uint8 else image_to_uint8(arr)
    with atomic_path(path) as tmp:
        Image.fromarray(a).save(tmp, format="PNG")


def save_figure(fig, path: str | Path, dpi: int = 90) -> None:
    """A matplotlib figure as PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


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


def save_torch(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: Path, map_location="cpu"):
    """torch.load with weights_only=True (never unpickles code); its protocol warnings are not ours to show."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)
