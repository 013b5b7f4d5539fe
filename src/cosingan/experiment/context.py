"""What every step of the experiment reads: settings, folders, the split, the test set read once,
and the running record (results, fidelity, timings). Passed explicitly; nothing global."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.readers import Slice
from .config import ExperimentConfig
from .split import Pair


@dataclass
class Context:
    cfg: ExperimentConfig
    out: Path
    pool: list[Pair]
    tests: list[Pair]
    pool_dir: Path
    test_dir: Path
    normal_pool: list[Path]
    normal_test: list[Path]
    test_slices: list[Slice]  # read once: every arm is scored on them
    test_pos: list[np.ndarray]  # detection test images with infection
    test_neg: list[np.ndarray]  # ... and without (test slices without infection + the test normals)
    test_volumes: list = field(default_factory=list)  # volume data: segmentation is scored per volume in 3-D
    volumes: dict | None = None  # volume data: training and test case names, and the split
    test_patches: tuple | None = None  # same-source detection: (patches, targets) of the test slices, made once
    test_key: str | None = None  # hash of the test data: stored scores are reused only for the same data
    unlabelled: list = field(default_factory=list)  # lung maps found in unannotated slices (unlabelled regime)
    progress: bool = True
    log: Callable[..., None] = print
    timings: dict[str, float] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    fidelity: list[dict] = field(default_factory=list)

    def timed(self, key: str, fn):
        t = time.time()
        r = fn()
        self.add_time(key, time.time() - t)
        return r

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    @property
    def can_detect(self) -> bool:
        return bool(self.test_pos and self.test_neg)
