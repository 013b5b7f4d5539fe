"""Where the experiment's independent units train: the generators, and every arm's U-Nets and classifiers.

`serial` (the default) trains each where the experiment needs it, in this process. `ray` sends each unit
to a Ray cluster as a task (`--address`, or a local one of `workers` x `threads` CPUs) and lets the
experiment go on: a step whose unit is training elsewhere raises `Pending`, is skipped for now, and the
runner walks the experiment again once the submitted units are back. Every finished step is reused on the
next walk (the experiment's resume), so a walk costs little, and the units that do not depend on each
other (every generator of every repeat; then every network) train side by side. A task receives its
inputs as arrays and returns its output folder's files, which are written here: the workers need
cosingan installed, no shared filesystem. The units train with the same seeds as in the serial run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.files import atomic_path
from ..errors import InputError
from ..gan.checkpoint import run_status
from ..gan.config import Config, config_to_dict
from ..gan.many import read_tree, train_remote, write_tree
from ..gan.train import ensure_trained
from ..settings import check_settings, setting

BACKENDS = ("serial", "ray")


class Pending(Exception):
    """A unit this step needs is training elsewhere: the step waits for the next walk."""


def _train_unit(fn: Callable, args: tuple, threads: int) -> tuple[dict[str, bytes], float]:
    """Ray task: fn(folder, *args) trains into a temporary folder on the worker; returns its files, seconds."""
    import torch

    torch.set_num_threads(threads)
    t = time.time()
    with tempfile.TemporaryDirectory() as d:
        fn(Path(d), *args)
        return read_tree(Path(d)), time.time() - t


@dataclass
class Jobs:
    backend: str = setting("serial", "where generators, U-Nets and classifiers train: serial (here, one after "
                           "another) or ray (as Ray tasks, side by side: every generator, then every network; same "
                           "seeds, same results)", choices=BACKENDS)
    address: str | None = setting(None, "with --backend ray: a running Ray cluster (default: a local one)")
    workers: int = setting(2, "with --backend ray and no --address: units at once", low=1)
    threads: int = setting(1, "with --backend ray: torch threads (Ray CPUs) per unit", low=1)
    gpus: float = 0.0  # GPUs per unit (`--device cuda`)
    submitted: dict = field(default_factory=dict)  # Ray object -> (folder, write)
    seconds: float = 0.0  # spent waiting for units

    def __post_init__(self):
        check_settings(self)
        if self.address and self.backend != "ray":
            raise InputError("--address is for --backend ray")

    def generator(self, run: Path, read: Callable, cfg: Config, progress: bool) -> str:
        """`ensure_trained` here (serial), or the run's training sent out (ray: Pending until it is back)."""
        if self.backend == "serial":
            return ensure_trained(run, read, cfg, progress)
        status = run_status(run, config_to_dict(cfg))
        if status == "done":
            return "done"
        resume = status == "resume"
        self._submit(run, train_remote, (None if resume else read(), None if resume else config_to_dict(cfg),
                                          read_tree(run) if resume else {}, self.threads), write_tree)
        raise Pending(run)

    def network(self, folder: Path, fn: Callable, progress: bool, *args) -> None:
        """fn(folder, progress, *args) trains a network into `folder`: here (serial), or sent out (ray:
        Pending, no progress bar)."""
        if self.backend == "serial":
            fn(folder, progress, *args)
            return
        self._submit(folder, _train_unit, (fn, (False, *args), self.threads), _write_files)
        raise Pending(folder)

    def _submit(self, folder: Path, task: Callable, args: tuple, write: Callable) -> None:
        if any(f == folder for f, _ in self.submitted.values()):
            return
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     **({} if self.address else {"num_cpus": self.workers * self.threads}))
        remote = ray.remote(num_cpus=self.threads, num_gpus=self.gpus)(task)
        self.submitted[remote.remote(*args)] = (folder, write)

    def wait(self, progress: bool = True) -> int:
        """Every submitted unit back and written; returns how many there were (0: nothing was out)."""
        if not self.submitted:
            return 0
        from tqdm.auto import tqdm

        ray, t = _ray(), time.time()
        n, pending = len(self.submitted), list(self.submitted)
        with tqdm(total=n, desc="units (ray)", disable=not progress, dynamic_ncols=True) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                folder, write = self.submitted.pop(ready[0])
                try:
                    files, _ = ray.get(ready[0])
                except Exception as e:
                    cause = getattr(e, "cause", None) or e
                    why = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
                    raise InputError(f"{folder}: training failed on the Ray cluster ({why})") from None
                write(files, folder)
                bar.update(1)
        self.seconds += time.time() - t
        return n

    def close(self) -> None:
        if self.backend == "ray" and _ray().is_initialized() and self.address is None:
            _ray().shutdown()


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'cosingan[ray]'") from None
    return ray


def _write_files(files: dict[str, bytes], folder: Path) -> None:
    """A network's files into its folder, each atomically (the folder keeps what the experiment wrote there)."""
    for rel, data in files.items():
        with atomic_path(folder / rel) as tmp:
            tmp.write_bytes(data)
