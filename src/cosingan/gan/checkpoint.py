"""The run folder's checkpoint: one plain dict, written atomically, loaded with `weights_only=True`.

It holds the config, scale sizes, weights, optimizer and RNG states (bit-identical resume), the log,
the training pair and how it came (kind, spacing). `run_status` is the one place that decides whether a
run folder is new, to be resumed, or done.
"""

from __future__ import annotations

import platform
import random
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..data.files import save_torch, torch_load
from ..errors import InputError
from .config import FORMAT_VERSION, config_from_dict, config_to_dict

CKPT = "checkpoint.pt"
REQUIRED = ("config", "sizes", "stage", "iter", "model", "opt_g", "opt_d", "rng", "log", "stage_ends", "data")
REQUIRED_DATA = ("image", "label4", "kind", "spacing")


def versions() -> dict[str, str]:
    import monai

    return {"cosingan": __version__, "torch": str(torch.__version__), "monai": str(monai.__version__),
            "numpy": str(np.__version__), "python": platform.python_version()}


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), n[4]))
    p = s["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(run: Path, ckpt: dict) -> None:
    save_torch(ckpt, run / CKPT)


def load_checkpoint(run: str | Path, map_location="cpu") -> dict:
    path = Path(run) / CKPT
    if not path.exists():
        raise InputError(f"{path}: no checkpoint in this run folder")
    try:
        ckpt = torch_load(path, map_location)
    except Exception as e:
        raise InputError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise InputError(f"{path}: not a cosingan checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format {ckpt['format_version']} is not supported by this "
                         f"cosingan (format {FORMAT_VERSION}); retrain or use a matching version")
    missing = [k for k in REQUIRED if k not in ckpt] + [f"data.{k}" for k in REQUIRED_DATA
                                                        if k not in (ckpt.get("data") or {})]
    if missing:
        raise InputError(f"{path}: incomplete checkpoint (missing {', '.join(missing)}); retrain the run")
    return ckpt


def run_status(run: str | Path, cfg_dict: dict | None = None, content: str | None = None) -> str:
    """"new" (no checkpoint), "resume" (interrupted) or "done"; with `cfg_dict`, a run made with other
    settings is refused (`check_same_config`), and with `content` (`train.slices_content`), one trained on
    other slices (a file changed under the same name), from the same single read of the checkpoint."""
    if not (Path(run) / CKPT).exists():
        return "new"
    ckpt = load_checkpoint(run)
    if cfg_dict is not None:
        check_same_config(run, cfg_dict, ckpt)
    stored = ckpt.get("data", {}).get("content")
    if content is not None and stored is not None and stored != content:
        raise InputError(f"{run}: holds a run trained on another slice (its image or label changed since); use "
                         "another folder for this one")
    return "done" if ckpt.get("done") else "resume"


def check_same_config(run: str | Path, cfg_dict: dict, ckpt: dict | None = None) -> None:
    """Refuse to reuse a run trained with other settings (the device may differ: it changes no weights). The
    stored settings are read as `TrainedRun` reads them: a field added since the run was trained takes its
    default, which is the behaviour the run was trained with (tests/test_compat.py)."""
    raw = (ckpt or load_checkpoint(run))["config"]
    try:
        stored = config_to_dict(config_from_dict(raw, f"{Path(run) / CKPT}"))
    except InputError:  # settings this version does not know: they differ, and the diff names them
        stored = dict(raw)
    want = dict(cfg_dict)
    diff = []
    for key in sorted(set(stored) | set(want)):
        if key == "device":
            continue
        a, b = stored.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if _plain(a.get(k)) != _plain(b.get(k))]
        elif _plain(a) != _plain(b):
            diff.append(key)
    if diff:
        raise InputError(f"{run}: holds a run trained with other settings ({', '.join(diff)}); use another folder "
                         "for these settings")


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
