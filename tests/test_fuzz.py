"""Fuzz the image/label readers: random bytes, truncated and corrupted PNG / JPG / NIfTI / npy files.
Whatever the bytes, a reader returns a valid array or raises InputError (one clean line), never anything else."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cosingan.errors import InputError
from cosingan.data.readers import read_image, read_label, read_mask
from cosingan.data.phantom import chest_phantom

EXTS = [".png", ".jpg", ".nii", ".nii.gz", ".npy"]


def _valid_files() -> dict[str, bytes]:
    img, lab = chest_phantom(24, seed=3)
    grey = np.round((img + 1) * 127.5).astype(np.uint8)
    out = {}
    for name, arr, fmt in (("img.png", grey, "PNG"), ("lab.png", lab, "PNG"), ("img.jpg", grey, "JPEG")):
        b = io.BytesIO()
        Image.fromarray(arr).save(b, format=fmt)
        out[name] = b.getvalue()
    hdr = nib.Nifti1Image(((img + 1) * 700 - 1250)[:, :, None].astype(np.float32), np.diag([0.8, 0.8, 5, 1]))
    out["img.nii"] = hdr.to_bytes()
    out["img.nii.gz"] = gzip.compress(out["img.nii"])
    b = io.BytesIO()
    np.save(b, img)
    out["img.npy"] = b.getvalue()
    return out


VALID = _valid_files()


def _check(path: Path) -> None:
    for reader in (read_image, read_label, read_mask):
        try:
            out = reader(path)
        except InputError as e:
            msg = str(e)
            assert msg and "\n" not in msg and str(path) in msg, msg
            continue
        arr = out[0] if isinstance(out, tuple) else out
        assert arr.ndim == 2 and np.isfinite(np.asarray(arr, dtype=np.float64)).all()


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.binary(max_size=600), ext=st.sampled_from(EXTS))
def test_random_bytes(data, ext):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"f{ext}"
        p.write_bytes(data)
        _check(p)


@FAST
@given(name=st.sampled_from(sorted(VALID)), cut=st.floats(0.0, 1.0))
def test_truncated_files(name, cut):
    data = VALID[name]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data[: int(len(data) * cut)])
        _check(p)


@FAST
@given(name=st.sampled_from(sorted(VALID)), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                            min_size=1, max_size=8))
def test_corrupted_headers(name, flips):
    data = bytearray(VALID[name])
    for pos, val in flips:  # the first bytes hold the headers: magic, sizes, dims, spacing, dtype
        data[pos % len(data)] = val
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(bytes(data))
        _check(p)
