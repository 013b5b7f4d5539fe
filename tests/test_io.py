from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from cosingan.errors import InputError
from cosingan.data.files import HU_WINDOW, save_nifti, save_png
from cosingan.data.readers import load_slice, read_image, read_label, to_unit_range


def test_png_pair_round_trip(phantom_files, phantom_pair):
    ip, lp = phantom_files
    sl = load_slice(ip, lp)
    img, lab = phantom_pair
    assert sl.image.dtype == np.float32 and sl.image.ndim == 2
    assert np.abs(sl.image - img).max() <= 1 / 127.5 + 1e-6  # 8-bit quantisation only
    assert np.array_equal(sl.label, lab)
    assert sl.kind == "png" and sl.spacing is None


def test_grey_rgb_jpeg_is_read_as_one_channel(tmp_path):
    a = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "g.jpg", quality=95)
    img = read_image(tmp_path / "g.jpg")[0]
    assert img.shape == (64, 64)


def test_colour_image_is_refused(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="colour image"):
        read_image(tmp_path / "c.png")


def test_nifti_slice_hu_window_and_spacing(tmp_path):
    hu = np.full((40, 30), -1000.0, np.float32)
    hu[10:20, 5:15] = 40.0
    hu[0, 0] = -3000  # below the window: clipped
    nib.save(nib.Nifti1Image(hu[:, :, None], np.diag([0.7, 0.8, 5.0, 1.0])), tmp_path / "s.nii.gz")
    img, kind, spacing, affine = read_image(tmp_path / "s.nii.gz")
    assert kind == "nifti"
    assert img.shape == (30, 40)  # displayed with rows = y
    lo, hi = HU_WINDOW
    assert np.isclose(img.min(), -1.0)
    assert np.isclose(img.max(), (40 - lo) / (hi - lo) * 2 - 1, atol=1e-6)
    assert spacing == (pytest.approx(0.8), pytest.approx(0.7))
    # writing back gives the same HU inside the window
    save_nifti(img, tmp_path / "back.nii.gz", affine=affine)
    back = np.asarray(nib.load(tmp_path / "back.nii.gz").dataobj)[:, :, 0]
    assert np.allclose(back[10:20, 5:15], 40.0, atol=1e-2)


def test_npy_and_separate_masks(tmp_path):
    img = np.linspace(-1000, 200, 32 * 32).reshape(32, 32).astype(np.float32)
    np.save(tmp_path / "i.npy", img)
    lung = np.zeros((32, 32), np.uint8)
    lung[4:28, 2:14] = 1
    lung[4:28, 18:30] = 2  # left/right lung labels merge into one lung
    inf = np.zeros((32, 32), np.uint8)
    inf[10:14, 5:9] = 1
    np.save(tmp_path / "lung.npy", lung)
    np.save(tmp_path / "inf.npy", inf)
    sl = load_slice(tmp_path / "i.npy", lung=tmp_path / "lung.npy", infection=tmp_path / "inf.npy")
    assert set(np.unique(sl.label)) == {0, 1, 2}
    assert (sl.label == 2).sum() == 16 and (sl.label == 1).sum() == 24 * 24 - 16


def test_unit_range_rules():
    assert to_unit_range(np.array([[0, 255]], np.uint8), "png").tolist() == [[-1.0, 1.0]]
    assert to_unit_range(np.array([[0.0, 1.0]]), "npy").tolist() == [[-1.0, 1.0]]
    assert to_unit_range(np.array([[-1250.0, 250.0]]), "npy").tolist() == [[-1.0, 1.0]]


@pytest.mark.parametrize("values,match", [
    ([0, 1, 3], "label values must be"),
    ([0, 0, 0], "no lung"),
])
def test_bad_label_maps(tmp_path, values, match):
    lab = np.array(values * 100, np.uint8)[:256].reshape(16, 16)
    save_png(lab, tmp_path / "l.png")
    with pytest.raises(InputError, match=match):
        read_label(tmp_path / "l.png")


def test_image_given_as_label_is_named(tmp_path, phantom_files):
    ip, _ = phantom_files
    with pytest.raises(InputError, match="looks like an image"):
        read_label(ip)


def test_size_mismatch_names_both_files(tmp_path, phantom_files):
    ip, _ = phantom_files
    lab = np.ones((20, 20), np.uint8)
    save_png(lab, tmp_path / "small.png")
    with pytest.raises(InputError, match=r"small.png: label map size 20x20 does not match image .*ph.png"):
        load_slice(ip, tmp_path / "small.png")


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "not a readable image")])
def test_broken_files(tmp_path, content, match):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_image(p)


def test_missing_file_and_constant_image(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "nope.png")
    save_png(np.full((16, 16), 7, np.uint8), tmp_path / "flat.png")
    with pytest.raises(InputError, match="constant"):
        read_image(tmp_path / "flat.png")
