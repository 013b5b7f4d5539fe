"""Slice-folder and volume readers, on NIfTI volumes written here (the public layouts)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cosingan.errors import InputError
from cosingan.data.files import save_png
from cosingan.data.layout import list_slice_folder
from cosingan.data.readers import read_slice_folder
from cosingan.data.volumes import read_covid19_ct_seg, read_mosmed, select_slices


def _volume(z=6, h=40, w=36, hu=True):
    """HU volume (X, Y, Z) with a body, two lungs on slices 1..4 and infection on slices 2..3."""
    vol = np.full((w, h, z), -1000.0, np.float32)
    vol[4:32, 4:36] = 40.0  # body
    mask = np.zeros((w, h, z), np.uint8)
    mask[6:16, 8:32, 1:5] = 1  # left lung
    mask[20:30, 8:32, 1:5] = 2  # right lung
    mask[8:12, 20:26, 2:4] = 3  # infection in the left lung
    vol[mask > 0] = -850.0
    vol[mask == 3] = -300.0
    if not hu:  # Radiopaedia cases: already windowed to 0..255
        vol = np.clip((vol + 1250) / 1500 * 255, 0, 255).round()
    return vol, mask


def _save(arr, path, spacing=(0.7, 0.7, 5.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([*spacing, 1.0])), path)


def test_covid19_ct_seg_layout_merges_lungs_windows_hu_and_keeps_spacing(tmp_path):
    root = tmp_path / "ctseg"
    vol, mask = _volume()
    _save(vol, root / "COVID-19-CT-Seg_20cases" / "coronacases_001.nii.gz")
    _save(mask, root / "Lung_and_Infection_Mask" / "coronacases_001.nii.gz")
    rvol, rmask = _volume(hu=False)
    _save(rvol, root / "COVID-19-CT-Seg_20cases" / "radiopaedia_4_85506_1.nii.gz", (0.8, 0.8, 6.0))
    # this case has only separate masks
    lung = np.where(rmask == 3, 1, rmask)
    _save(lung.astype(np.uint8), root / "Lung_Mask" / "radiopaedia_4_85506_1.nii.gz", (0.8, 0.8, 6.0))
    _save((rmask == 3).astype(np.uint8), root / "Infection_Mask" / "radiopaedia_4_85506_1.nii.gz", (0.8, 0.8, 6.0))

    vols = read_covid19_ct_seg(root)
    assert [v.name for v in vols] == ["coronacases_001", "radiopaedia_4_85506_1"]
    for v in vols:
        assert v.image.shape == v.label.shape == (6, 40, 36)  # (Z, H, W), display orientation
        assert set(np.unique(v.label)) == {0, 1, 2}
        assert v.image.min() >= -1 and v.image.max() <= 1
    a, b = vols
    assert a.spacing == (pytest.approx(0.7), pytest.approx(0.7), pytest.approx(5.0))
    assert b.spacing[2] == pytest.approx(6.0)
    # HU and already-windowed cases land on the same grey levels (lung window)
    lung_a = a.image[a.label == 1].mean()
    lung_b = b.image[b.label == 1].mean()
    assert lung_a == pytest.approx((-850 + 1250) / 1500 * 2 - 1, abs=1e-5)
    assert lung_b == pytest.approx(lung_a, abs=0.01)
    assert np.array_equal(a.label, b.label)  # both mask layouts give the same 0/1/2 map

    with_lungs = select_slices(a)
    assert len(with_lungs) == 4 and with_lungs[0].spacing == (pytest.approx(0.7), pytest.approx(0.7))
    assert len(select_slices(a, infection="with")) == 2
    assert len(select_slices(a, infection="without")) == 2
    assert all(s.image.shape == (40, 36) for s in with_lungs)


def test_mosmed_layout_has_infection_only(tmp_path):
    vol, mask = _volume()
    _save(vol, tmp_path / "studies" / "CT-1" / "study_0255.nii.gz")
    _save((mask == 3).astype(np.uint8), tmp_path / "masks" / "study_0255_mask.nii.gz")
    _save(vol, tmp_path / "studies" / "CT-1" / "study_0256.nii.gz")  # no mask: skipped
    (v,) = read_mosmed(tmp_path)
    assert v.name == "study_0255" and not v.has_lung
    assert set(np.unique(v.label)) == {0, 2}
    assert len(select_slices(v)) == 2  # only slices with infection can be placed


def test_mask_shape_mismatch_is_named(tmp_path):
    vol, mask = _volume()
    _save(vol, tmp_path / "COVID-19-CT-Seg_20cases" / "c1.nii.gz")
    _save(mask[:, :, :3], tmp_path / "Lung_and_Infection_Mask" / "c1.nii.gz")
    with pytest.raises(InputError, match=r"Lung_and_Infection_Mask/c1.nii.gz: mask shape .* does not match"):
        read_covid19_ct_seg(tmp_path)


def test_slice_folder_pairs_and_missing_label(tmp_path, phantom_pair):
    img, lab = phantom_pair
    for n in ("a", "b"):
        save_png(img, tmp_path / "images" / f"{n}.png")
        save_png(lab, tmp_path / "labels" / f"{n}.png")
    assert [p[0].name for p in list_slice_folder(tmp_path)] == ["a.png", "b.png"]
    assert len(read_slice_folder(tmp_path)) == 2
    save_png(img, tmp_path / "images" / "c.png")
    with pytest.raises(InputError, match=r"images/c.png: no label map"):
        list_slice_folder(tmp_path)
    with pytest.raises(InputError, match="expected a slice folder"):
        list_slice_folder(tmp_path / "images")


def test_volumes_are_read_lazily_one_at_a_time(tmp_path):
    """A root's headers are checked up front but no voxels read; `one_at_a_time` lets each go before the
    next, so a root of many CT volumes needs the memory of one. Shape and spacing from the header agree
    with the voxels also when the stored axes are permuted and flipped."""
    from cosingan.data.volumes import one_at_a_time

    vol, mask = _volume()
    _save(vol, tmp_path / "COVID-19-CT-Seg_20cases" / "c1.nii.gz")
    _save(mask, tmp_path / "Lung_and_Infection_Mask" / "c1.nii.gz")
    swapped = np.array([[0, -0.8, 0, 0], [0.6, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])  # stored (Y, X, Z), x flipped
    for name, arr in (("COVID-19-CT-Seg_20cases", vol), ("Lung_and_Infection_Mask", mask)):
        nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(1, 0, 2)), swapped), tmp_path / name / "c2.nii.gz")
    vols = read_covid19_ct_seg(tmp_path)
    assert all(v._arrays is None for v in vols)
    seen = []
    for v in one_at_a_time(vols):
        assert v.image.shape == v.label.shape == v.shape
        seen.append((v.shape, v.spacing, int((v.label == 2).sum())))
        assert sum(u._arrays is not None for u in vols) == 1
    assert all(v._arrays is None for v in vols)
    assert seen[0][0] == seen[1][0] == (6, 40, 36) and seen[0][2] == seen[1][2] == 4 * 6 * 2
    assert seen[0][1] == (pytest.approx(0.7), pytest.approx(0.7), pytest.approx(5.0))
    assert seen[1][1] == (pytest.approx(0.6), pytest.approx(0.8), pytest.approx(4.0))


def test_bad_mask_values_are_named_when_the_voxels_are_read(tmp_path):
    vol, mask = _volume()
    mask[0, 0, 0] = 7
    _save(vol, tmp_path / "COVID-19-CT-Seg_20cases" / "c1.nii.gz")
    _save(mask, tmp_path / "Lung_and_Infection_Mask" / "c1.nii.gz")
    (v,) = read_covid19_ct_seg(tmp_path)
    with pytest.raises(InputError, match=r"Lung_and_Infection_Mask/c1.nii.gz: unexpected mask values 7 \("):
        v.label
