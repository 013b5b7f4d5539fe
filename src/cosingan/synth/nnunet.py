"""nnU-Net v2 raw datasets: naming rule, dataset.json, and nnU-Net's own integrity checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..data.files import write_json


def nnunet_name_ok(name: str) -> bool:
    m = re.fullmatch(r"Dataset(\d{3})_[A-Za-z0-9_\-]+", name)
    return bool(m) and int(m.group(1)) > 10  # 001-010 are reserved by nnU-Net


NNUNET_LABELS = {"background": 0, "lung": 1, "infection": 2}


def write_nnunet_json(out: Path, num_training: int) -> None:
    meta = {"channel_names": {"0": "CT"}, "labels": NNUNET_LABELS, "numTraining": num_training,
            "file_ending": ".nii.gz", "name": out.name.split("_", 1)[1],
            "description": "CoSinGAN synthetic CT slices (see manifest.csv)"}
    write_json(out / "dataset.json", meta)


def verify_nnunet(out: str | Path) -> list[str]:
    """nnU-Net's integrity checks on a dataset folder; returns the problems (empty = valid)."""
    import nibabel as nib

    out = Path(out)
    problems = []
    try:
        meta = json.loads((out / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [f"{out / 'dataset.json'}: unreadable ({e})"]
    labels = meta.get("labels", {})
    if sorted(labels.values()) != list(range(len(labels))) or labels.get("background") != 0:
        problems.append("labels are not consecutive integers starting with background: 0")
    ending = meta.get("file_ending", ".nii.gz")
    cases = sorted(p.name[: -len(ending)] for p in (out / "labelsTr").glob(f"*{ending}"))
    if len(cases) != meta.get("numTraining"):
        problems.append(f"numTraining {meta.get('numTraining')} but {len(cases)} label files")
    n_ch = len(meta.get("channel_names", {}))
    for c in cases:
        lab = nib.load(str(out / "labelsTr" / f"{c}{ending}"))
        for ch in range(n_ch):
            ip = out / "imagesTr" / f"{c}_{ch:04d}{ending}"
            if not ip.exists():
                problems.append(f"{ip}: missing")
                continue
            img = nib.load(str(ip))
            if img.shape != lab.shape:
                problems.append(f"{c}: image shape {img.shape} != label shape {lab.shape}")
            if not np.allclose(img.affine, lab.affine, atol=1e-4):
                problems.append(f"{c}: image and label geometry (affine) differ")
        values = set(np.unique(np.asarray(lab.dataobj)).tolist())
        if not values <= set(labels.values()):
            problems.append(f"{c}: unexpected label values {sorted(values - set(labels.values()))}")
    return problems
