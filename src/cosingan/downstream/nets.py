"""One-dict checkpoints of the small downstream networks: OUT/model.pt = {"config", "state"}."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data.files import save_torch, torch_load
from ..errors import InputError


def save_net(net, cfg, out: Path) -> None:
    """OUT/model.pt = {"config": the config dataclass as a dict, "state": weights}; atomic."""
    save_torch({"config": dataclasses.asdict(cfg), "state": {k: v.cpu() for k, v in net.state_dict().items()}},
               Path(out) / "model.pt")  # weights on the CPU, whatever device trained them


def load_net(path: str | Path, config_cls, make_net, what: str):
    """(network, config) from a folder or file written by `save_net`; lists in the config become tuples."""
    p = Path(path)
    p = p / "model.pt" if p.is_dir() else p
    if not p.exists():
        raise InputError(f"{p}: no {what} model")
    try:
        ck = torch_load(p)
        cfg = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["config"].items()})
        net = make_net(cfg)
        net.load_state_dict(ck["state"])
    except Exception as e:
        raise InputError(f"{p}: unreadable {what} model, or one of another cosingan version "
                         f"({type(e).__name__})") from None
    return net, cfg


TRAINED_ON = "trained_on.json"  # beside model.pt: what the model was trained on (a digest of its data)


def reuse_or_claim(folder: Path, cfg, data: str) -> bool:
    """The one rule for reusing a trained network. True: FOLDER holds a model trained with exactly `cfg` on
    exactly `data` (a digest), to be reused. False: FOLDER holds no model and is claimed for the training
    about to start (`data` is recorded there). A model of other settings or other data is refused with one
    line, never silently replaced or reused."""
    import json

    folder = Path(folder)
    record, meta = folder / TRAINED_ON, folder / "train.json"
    if not ((folder / "model.pt").exists() and meta.exists()):
        from ..data.files import write_json

        write_json(record, {"data": data})
        return False
    stored = json.loads(meta.read_text()).get("config") or {}
    want = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if stored != want:
        diff = sorted(k for k in set(want) | set(stored) if stored.get(k) != want.get(k))
        raise InputError(f"{folder}: was trained with other settings ("
                         + ", ".join(f"{k}: {stored.get(k)} -> {want.get(k)}" for k in diff) + "); use another --out")
    if not record.exists() or json.loads(record.read_text()).get("data") != data:
        raise InputError(f"{folder}: was trained on other files (other slices, normals or settings); use another --out")
    return True
