"""Output folders: cosingan writes only into a new folder, an empty one, or one that the same command
made earlier, and never into (or around) its inputs. Everything is checked before the first write.

A command marks the folders it makes with `.cosingan` (JSON: which command); a folder without the mark
is never written into unless it is empty (a user's folder that happens to hold a `masks.csv` or a
`grid.png` is the user's). While a command writes, it
holds an OS-level lock on the folder (`.cosingan.lock`, via `filelock`), so a second process on the same
folder is refused instead of mixing its files with the first one's.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .layout import BODIES, IMAGES, LABELS

MARKER = ".cosingan"
LOCK = ".cosingan.lock"
OWN = {MARKER, LOCK}


def _kind_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def _made_by(folder: Path, command: str, names: set[str]) -> bool:
    """An unmarked folder that `command` may take: for train-many one that holds only run folders (runs
    trained one by one into it)."""
    return command == "train-many" and all(
        (folder / n).is_dir() and ((folder / n / "checkpoint.pt").exists() or _kind_of(folder / n) == "train")
        for n in names)


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(folder: str | Path, command: str, inputs: tuple = ()) -> Path:
    """Refuse, before any write, an output folder that is an input (or holds one, or lies in one), a
    file, a non-empty folder that `command` did not make, or one we could not write."""
    folder = Path(folder)
    where = folder.resolve()
    for i in inputs:
        if i is None:
            continue
        path = Path(i).resolve()
        if path.is_file() and path.parent.name in (IMAGES, LABELS, BODIES):  # a file of a dataset: its folder,
            path = path.parent  # which other commands read whole
        if _related(where, path):
            raise InputError(f"{folder}: the output folder must not be, hold or lie inside an input ({i}); "
                             "choose another --out")
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder")
        kind = _kind_of(folder) if (folder / MARKER).exists() else None
        if kind is not None and kind != command:
            raise InputError(f"{folder}: holds the output of `cosingan {kind}`, not of `cosingan {command}`; "
                             "choose another --out")
        names = {p.name for p in folder.iterdir()} - OWN
        if kind is None and names and not _made_by(folder, command, names):
            raise InputError(f"{folder}: is not empty and was not made by `cosingan {command}`; choose a new or "
                             "empty folder (nothing was written)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{folder}: output folder is not writable")
    else:
        parent = next((p for p in folder.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise InputError(f"{folder}: output folder is not writable ({parent} is not a folder)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{folder}: output folder is not writable (cannot create it in {parent})")
    return folder


def claim_output(folder: str | Path, command: str, inputs: tuple = ()) -> Path:
    """`check_output`, then create the folder and mark it as `command`'s."""
    folder = check_output(folder, command, inputs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MARKER).exists():
            (folder / MARKER).write_text(json.dumps({"command": command}) + "\n")
    except OSError as e:
        raise InputError(f"{folder}: cannot create the output folder ({e.strerror})") from None
    return folder


@contextmanager
def locked(folder: str | Path) -> Iterator[Path]:
    """Hold the folder's lock for the block; refuse at once if another process holds it."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    lock = FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(f"{folder}: another cosingan process is writing this folder; wait for it or choose "
                         "another --out") from None
    except OSError as e:
        raise InputError(f"{folder}: cannot lock the folder ({e.strerror})") from None
    try:
        yield folder
    finally:
        lock.release()


@contextmanager
def output(folder: str | Path, command: str, inputs: tuple = ()) -> Iterator[Path]:
    """The whole rule for a command's output folder: checked, created, marked, and locked while in use."""
    folder = claim_output(folder, command, inputs)
    with locked(folder):
        yield folder
