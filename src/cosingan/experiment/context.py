"""What every step of the experiment reads: settings, folders, the splits, and the running record
(results, fidelity, timings). Passed explicitly; nothing global."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .config import ExperimentConfig
from .jobs import Jobs
from .split import Split


@dataclass
class Context:
    cfg: ExperimentConfig
    out: Path
    splits: list[Split]  # one per repeat (the same object for every repeat when the split is fixed)
    split: Split | None = None  # the split of the repeat at hand (see `at`): its pool, test set, normals
    unlabelled: list = field(default_factory=list)  # lung maps found in unannotated slices (unlabelled regime)
    progress: bool = True
    log: Callable[..., None] = print
    timings: dict[str, float] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    fidelity: list[dict] = field(default_factory=list)
    coverage: dict[str, dict] = field(default_factory=dict)  # synthetic set -> the condition maps it uses
    jobs: Jobs = field(default_factory=Jobs)  # where generators and networks train (serial, or Ray tasks)

    def at(self, repeat: int) -> "Context":
        """This context for one repeat: its split; the running record (results, timings) is shared."""
        return replace(self, split=self.splits[repeat])

    def timed(self, key: str, fn):
        t = time.time()
        r = fn()
        self.add_time(key, time.time() - t)
        return r

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds
