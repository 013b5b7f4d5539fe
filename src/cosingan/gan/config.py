"""Frozen configuration dataclasses, presets and their JSON form.

One `Config` describes a run completely; it is written to `RUN/config.json` and stored inside the
checkpoint so a resumed run, or a sampler, rebuilds exactly the same model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import InputError

#: bump when the checkpoint layout or the meaning of a config field changes
FORMAT_VERSION = 1


def _check(obj, section: str, rules: dict[str, tuple]) -> None:
    """Type and range of every field: (kind, low, high) with kind int, float, bool, or a tuple of allowed
    strings. Raises ValueError naming the field; JSON's integers are accepted for float fields."""
    import math

    for name, rule in rules.items():
        v = getattr(obj, name)
        kind, lo, hi = (rule + (None, None))[:3]
        where = f"{section}.{name}" if section else name
        if isinstance(kind, tuple):
            if v not in kind:
                allowed = " or ".join(kind) if len(kind) == 2 else "one of " + ", ".join(kind)
                raise ValueError(f"{where} must be {allowed}, got {v!r}")
            continue
        if kind is bool:
            if not isinstance(v, bool):
                raise ValueError(f"{where} must be true or false, got {v!r}")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
            raise ValueError(f"{where} must be {'a number' if kind is float else 'an integer'}, got {v!r}")
        if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{where} must be {rng}, got {v!r}")


PADDINGS = ("zeros", "replicate", "reflect")


@dataclass(frozen=True)
class ModelConfig:
    max_size: int = 256  # long side of the finest scale (px)
    min_size: int = 25  # short side of the coarsest scale (px), SinGAN's default
    scale_factor: float = 0.75  # target ratio between neighbouring scales; adjusted to land exactly
    channels: int = 32  # conv channels in every G and D block
    num_layers: int = 5  # conv blocks per G/D (receptive field 2*num_layers+1 px)
    # deeper nets where they are cheap: scales whose short side is <= coarse_max px get coarse_layers
    # (a wider receptive field for global layout); 0 = num_layers everywhere
    coarse_layers: int = 0
    coarse_max: int = 64
    body_channel: bool = True  # condition = air/body/lung/infection instead of background/lung/infection
    # four fields in front of the map: depth below the skin, distance from the lungs, place in the body's box
    body_fields: bool = False
    # the generators' conv padding at the image border (the critics keep zeros): zeros is mid-grey in [-1, 1]
    padding: str = "zeros"
    # the map also scales and shifts every hidden layer of the generators per pixel (SPADE-style), not only
    # concatenated at their input
    modulation: bool = False
    # the critics also judge their input average-pooled 4x (a layout path: 4x the receptive field, 1/16 the cost)
    critic_layout: bool = False
    # --- the three CoSinGAN parts, each switchable ---
    two_stage: bool = True  # per scale: structure G + lung-masked refinement G with a lung critic
    refine_layers: int = 3  # conv blocks of the refinement generator

    def __post_init__(self):
        _check(self, "model", {"max_size": (int, 8, 4096), "min_size": (int, 3, 4096),
                               "scale_factor": (float, 0.05, 0.99), "channels": (int, 1, 1024),
                               "num_layers": (int, 1, 64), "coarse_layers": (int, 0, 64), "coarse_max": (int, 1, 4096),
                               "body_channel": (bool,), "body_fields": (bool,), "padding": (PADDINGS,),
                               "modulation": (bool,), "critic_layout": (bool,), "two_stage": (bool,),
                               "refine_layers": (int, 1, 64)})
        if self.min_size > self.max_size:
            raise ValueError(f"model.min_size ({self.min_size}) must not exceed model.max_size ({self.max_size})")


AMP_MODES = ("none", "bf16")  # mixed precision of the generators and critics (fp16 would need loss scaling)


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 400  # iterations per stage (one new scale per stage)
    train_depth: int = 3  # ConSinGAN: how many of the newest scales train together
    lr_g: float = 5e-4
    lr_d: float = 5e-4
    lr_scale: float = 0.1  # lr multiplier per scale of distance below the newest (ConSinGAN)
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay_at: float = 0.8  # fraction of a stage after which lr is multiplied by 0.1
    d_steps: int = 3
    g_steps: int = 1
    gp_weight: float = 0.1
    rec_weight: float = 10.0
    noise_amp: float = 0.1  # noise amplitude = noise_amp * RMSE(real, upsampled reconstruction)
    d_crop: int = 0  # >0: critics see a random crop of at most this side (patch critics: unbiased)
    # differentiable augmentation of the critics' inputs (DiffAugment): comma-separated of color,
    # translation, cutout; "" = off
    d_aug: str = ""
    # mixed reconstruction loss (off: SinGAN's chained MSE only)
    mixed_rec: bool = True
    rec_teacher_weight: float = 0.5  # share of the teacher-forced term (from the real coarser image)
    rec_ssim_weight: float = 0.5  # weight of (1 - SSIM) added to the pixel terms
    # hierarchical data augmentation (off: the single training pair only)
    hier_aug: bool = True
    aug_bank: int = 24  # jointly deformed copies of the training pair, made once per run
    aug_p_coarse: float = 0.8  # probability of training on a deformed copy at the coarsest stage
    aug_p_fine: float = 0.2  # ... and at the finest stage (interpolated in between)
    ckpt_every: int = 100  # iterations between mid-stage checkpoints (stage ends always save)
    # mixed precision: "bf16" runs forwards under bfloat16 autocast (GPUs with bf16: A100, H100, ...);
    # the gradient penalty and the losses stay float32. bf16 needs no loss scaling, unlike fp16.
    amp: str = "none"
    sample_every_stage: bool = True  # write samples_stageNN.png at each stage end

    def __post_init__(self):
        _check(self, "train", {
            "iters": (int, 1, 10**7), "train_depth": (int, 1, 64), "lr_g": (float, 1e-12, 10.0),
            "lr_d": (float, 1e-12, 10.0), "lr_scale": (float, 0.0, 10.0), "lr_decay_at": (float, 0.0, 1.0),
            "d_steps": (int, 1, 1000), "g_steps": (int, 1, 1000), "gp_weight": (float, 0.0, 1e6),
            "rec_weight": (float, 0.0, 1e6), "noise_amp": (float, 0.0, 100.0), "d_crop": (int, 0, 4096),
            "mixed_rec": (bool,), "rec_teacher_weight": (float, 0.0, 1.0), "rec_ssim_weight": (float, 0.0, 100.0),
            "hier_aug": (bool,), "aug_bank": (int, 0, 10000), "aug_p_coarse": (float, 0.0, 1.0),
            "aug_p_fine": (float, 0.0, 1.0), "ckpt_every": (int, 1, 10**7), "amp": (AMP_MODES,),
            "sample_every_stage": (bool,)})
        if not isinstance(self.d_aug, str):
            raise ValueError(f"train.d_aug must be a string such as \"translation,cutout\", got {self.d_aug!r}")
        from .diffaug import parse

        parse(self.d_aug)
        b = self.betas
        if not (isinstance(b, tuple) and len(b) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                             and 0.0 <= x < 1.0 for x in b)):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {b!r}")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "cpu"
    preset: str = "custom"

    def __post_init__(self):
        _check(self, "", {"seed": (int, 0, 2**63 - 1)})
        for name in ("device", "preset"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.model, ModelConfig) or not isinstance(self.train, TrainConfig):
            raise ValueError("model and train must be objects of settings")


PRESETS: dict[str, Config] = {
    # seconds on a CPU: for tests
    "tiny": Config(
        model=ModelConfig(max_size=32, min_size=12, scale_factor=0.7, channels=8, num_layers=3,
                          refine_layers=2),
        train=TrainConfig(iters=6, d_steps=1, aug_bank=4, ckpt_every=3),
        preset="tiny",
    ),
    # a full 256 px model in minutes on a 2-core laptop CPU
    "cpu": Config(
        model=ModelConfig(max_size=256, min_size=25, scale_factor=0.62, channels=32, num_layers=3,
                          refine_layers=2),
        train=TrainConfig(iters=300, d_steps=2, d_crop=80, aug_bank=24),
        preset="cpu",
    ),
    # 512 x 512 as in the paper, for GPUs
    "paper": Config(
        model=ModelConfig(max_size=512, min_size=25, scale_factor=0.75, channels=64, num_layers=5,
                          refine_layers=3),
        train=TrainConfig(iters=1500, d_steps=3, d_crop=0, aug_bank=48),
        preset="paper",
    ),
}
# the cpu preset with half the iterations: `make demo` on the built-in phantom in a few minutes
PRESETS["demo"] = replace(PRESETS["cpu"], train=replace(PRESETS["cpu"].train, iters=150), preset="demo")


def _from_dict(cls, data: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise InputError(f"{where}: unknown config key(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        if name in ("model", "train"):
            if not isinstance(value, dict):
                raise InputError(f"{where}: {name} must be an object of settings, got {value!r}")
            sub = ModelConfig if name == "model" else TrainConfig
            kwargs[name] = _from_dict(sub, value, f"{where} [{name}]")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {e}") from None


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    data = {k: v for k, v in data.items() if k not in ("format_version", "versions")}
    return _from_dict(Config, data, where)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def merge(base: Config, overrides: dict[str, Any], where: str) -> Config:
    """Apply a (possibly partial) nested dict of overrides, e.g. from `--config FILE`."""
    merged = config_to_dict(base)
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: settings must be a JSON object")
    unknown = [f"{key}.{k}" for key in ("model", "train") if isinstance(overrides.get(key), dict)
               for k in sorted(set(overrides[key]) - set(merged[key]))]
    unknown += sorted(k for k in overrides if k not in merged)
    if unknown:  # every one named at once, not the first alone
        raise InputError(f"{where}: unknown config key(s) {', '.join(unknown)}")
    for key, value in overrides.items():
        if key in ("model", "train") and isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return config_from_dict(merged, where)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a JSON config file") from None
    except OSError as e:
        raise InputError(f"{path}: unreadable config file ({e.strerror or type(e).__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file must hold a JSON object")
    return data


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


__all__ = ["Config", "ModelConfig", "TrainConfig", "PRESETS", "FORMAT_VERSION", "preset", "merge",
           "config_from_dict", "config_to_dict", "load_config_file", "replace"]
