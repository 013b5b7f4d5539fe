from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cosingan.gan.config import PRESETS, merge
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COVID = SHARED / "medseg_covid_slices" / "train"


def require_shared_data() -> Path:
    """Integration tests need ../shared/data: skipped without it, but a failure in CI (CI=true)."""
    if not (COVID / "images").is_dir():
        msg = f"real dev data not found at {COVID}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (required in CI)")
        pytest.skip(msg)
    return COVID


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run, shared by a module's cases that need a model (as an input only)."""
    from cosingan.data.readers import load_slice
    from cosingan.gan.train import train

    d = tmp_path_factory.mktemp("run")
    img, lab = chest_phantom(40, seed=5)
    save_png(img, d / "i.png")
    save_png(lab, d / "l.png")
    train(d / "run", load_slice(d / "i.png", d / "l.png"), PRESETS["tiny"], progress=False)
    return d / "run"


@pytest.fixture
def tiny_cfg():
    return PRESETS["tiny"]


def tiny(**over):
    """The tiny preset with nested overrides, e.g. tiny(model={"two_stage": False})."""
    return merge(PRESETS["tiny"], over, "test")


@pytest.fixture
def phantom_files(tmp_path: Path) -> tuple[Path, Path]:
    img, lab = chest_phantom(48, seed=0)
    ip, lp = tmp_path / "data" / "images" / "ph.png", tmp_path / "data" / "labels" / "ph.png"
    save_png(img, ip)
    save_png(lab, lp)
    return ip, lp


@pytest.fixture
def phantom_pair() -> tuple[np.ndarray, np.ndarray]:
    return chest_phantom(48, seed=0)


@pytest.fixture
def phantom_folder(tmp_path) -> Path:
    """A slice folder of 6 infected phantoms (images/ + labels/): the experiment's smallest real-shaped input."""
    root = tmp_path / "slices"
    for k in range(6):
        img, lab = chest_phantom(40, seed=20 + k)
        save_png(img, root / "images" / f"ph{k}.png")
        save_png(lab, root / "labels" / f"ph{k}.png")
    return root

