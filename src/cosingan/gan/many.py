"""Train one generator per annotated slice: a local process pool, or Ray across a cluster.

The unit of work is one run folder RUNS/NAME (NAME = the image's file name without extension). A
finished run is skipped, an interrupted one resumes, so the command can be re-run after a crash.
Every slice is read and validated before any training starts: a bad file stops the command with one
line and nothing trained.

Threads: each worker gets `torch.set_num_threads(threads)`, by default the machine's cores divided
by the workers, so N workers never oversubscribe the cores.

Ray: workers need cosingan installed but no shared filesystem. A task receives the slice (arrays) and
the files of an interrupted run, trains in a temporary folder on its node and returns the run folder's
files; the driver writes them to RUNS/NAME/ through a temporary folder and a rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..data.files import write_csv
from ..data.layout import output_stem
from ..data.outputs import claim_output, locked
from ..data.readers import Slice, load_slice
from ..errors import InputError
from .checkpoint import run_status
from .config import Config, config_from_dict, config_to_dict


def _die_with_parent() -> None:
    """Pool worker initializer: on Linux the kernel sends the worker SIGTERM when its parent dies, so a
    killed `train-many` leaves no orphan training into its run folders."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _train_local(run: str, sl: Slice | None, cfg: dict | None, threads: int) -> float:
    """Worker: train (or resume, sl=None) the run folder in place; returns seconds."""
    import torch

    from .train import ensure_trained

    torch.set_num_threads(threads)
    t = time.time()
    ensure_trained(run, sl, config_from_dict(cfg, run) if cfg else None, progress=False)
    return time.time() - t


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def train_remote(sl: Slice | None, cfg: dict | None, files: dict[str, bytes], threads: int):
    """Ray task: train in a temporary folder on the worker node; return (files of the run, seconds)."""
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        for rel, data in files.items():  # an interrupted run's files: resume it
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_bytes(data)
        seconds = _train_local(str(run), sl, cfg, threads)
        return read_tree(run), seconds


def write_tree(files: dict[str, bytes], run: Path) -> None:
    """Replace RUN with the files, via a temporary sibling folder and a rename."""
    tmp = run.parent / f".{run.name}.incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    if run.exists():
        shutil.rmtree(run)
    tmp.rename(run)


def train_many(pairs: list[tuple[Path, Path]], out: str | Path, cfg: Config, workers: int = 2,
               backend: str = "local", address: str | None = None, threads: int | None = None,
               progress: bool = True) -> list[dict]:
    """Train every pair not yet finished; returns one summary row per pair (also RUNS/summary.csv)."""
    names = [output_stem(ip) for ip, _ in pairs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"{pairs[0][0].parent}: several images share the name {sorted(dup)[0]!r}")
    _check_pool(workers, backend)
    slices = [load_slice(ip, lp) for ip, lp in pairs]  # validate everything before training anything
    return train_slices(dict(zip(names, slices)), out, cfg, workers, backend, address, threads, progress,
                        inputs=(pairs[0][0].parent, pairs[0][1].parent))


def train_volumes(root: str | Path, per_volume: int, out: str | Path, cfg: Config, workers: int = 2,
                  backend: str = "local", address: str | None = None, threads: int | None = None,
                  progress: bool = True) -> list[dict]:
    """One generator for each of `per_volume` slices of every volume of a COVID-19-CT-Seg root, picked as
    a person would (`volumes.teaching_slices`); run folders RUNS/VOLUME_zNNN."""
    from ..data.volumes import one_at_a_time, slice_name, teaching_slices, volumes_with_lungs

    if per_volume < 1:
        raise InputError(f"--per-volume must be at least 1, got {per_volume}")
    _check_pool(workers, backend)
    chosen = {}
    for v in one_at_a_time(volumes_with_lungs(root, "a generator needs lung and infection")):
        chosen.update({slice_name(v, s): s for s in teaching_slices(v, per_volume)})
    if not chosen:
        raise InputError(f"{root}: no slices with infection in its volumes")
    return train_slices(chosen, out, cfg, workers, backend, address, threads, progress, inputs=(root,))


def _check_pool(workers: int, backend: str) -> None:
    if backend not in ("local", "ray"):
        raise InputError(f"--backend must be local or ray, got {backend!r}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")


def train_slices(slices: dict[str, Slice], out: str | Path, cfg: Config, workers: int = 2, backend: str = "local",
                 address: str | None = None, threads: int | None = None, progress: bool = True,
                 inputs: tuple = ()) -> list[dict]:
    """One run folder RUNS/NAME per named slice (validated already), in parallel; the one owner of the
    claim, the lock and the skip / resume of train-many."""
    out = Path(out)
    claim_output(out, "train-many", inputs)
    with locked(out):
        return _train_all(list(slices), list(slices.values()), out, cfg, workers, backend, address, threads,
                          progress)


def _train_all(names, slices, out: Path, cfg: Config, workers: int, backend: str, address, threads,
               progress: bool) -> list[dict]:
    from tqdm.auto import tqdm
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    cfg_dict = config_to_dict(cfg)
    from .train import slices_content

    state = {n: run_status(out / n, cfg_dict, slices_content(sl)) for n, sl in zip(names, slices)}
    rows = {n: {"name": n, "image": sl.origin, "status": "skipped (finished before)" if state[n] == "done"
                else "", "seconds": 0.0} for n, sl in zip(names, slices)}
    todo = [(n, sl) for n, sl in zip(names, slices) if state[n] != "done"]

    bar = tqdm(total=len(todo), desc="models", unit="model", disable=not progress, dynamic_ncols=True)

    def finish(n: str, seconds: float | None, err: BaseException | None) -> None:
        if err is not None:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            rows[n]["status"] = f"failed: {msg}"
        else:
            rows[n]["status"] = "resumed" if state[n] == "resume" else "trained"
            rows[n]["seconds"] = round(seconds, 1)
        bar.update(1)

    if todo and backend == "local":
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_die_with_parent) as ex:
            futs = {ex.submit(_train_local, str(out / n), None if state[n] == "resume" else sl,
                              None if state[n] == "resume" else cfg_dict, threads): n for n, sl in todo}
            for f in as_completed(futs):
                err = f.exception()
                finish(futs[f], None if err else f.result(), err)
    elif todo:
        try:
            import ray
        except ImportError:
            raise InputError("--backend ray needs Ray: pip install 'cosingan[ray]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": workers * threads}))
        try:
            remote = ray.remote(num_cpus=threads)(train_remote)
            futs = {}
            for n, sl in todo:
                resume = state[n] == "resume"
                files = read_tree(out / n) if resume else {}
                futs[remote.remote(None if resume else sl, None if resume else cfg_dict, files, threads)] = n
            pending = list(futs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                n = futs[ready[0]]
                try:
                    files, seconds = ray.get(ready[0])
                    write_tree(files, out / n)
                    finish(n, seconds, None)
                except Exception as e:  # a failed task: report it, keep the others
                    finish(n, None, getattr(e, "cause", None) or e)
        finally:
            if started:
                ray.shutdown()
    bar.close()
    result = [rows[n] for n in names]
    write_csv(out / "summary.csv", ["name", "image", "status", "seconds"], result)
    return result

