"""A trained run as an object: load it once, then sample any label map.

    run = TrainedRun.from_pretrained("RUN", device="cpu")
    label4 = run.condition(label)            # 0/1/2 map (+ body) -> 4-class map at the model's scale
    images = run(label4, seeds=[0, 1, 2])    # (3, H, W) in [-1, 1], one image per seed

It knows how its input came (`kind`: png, nifti or npy; `spacing` in mm after resizing to the training
size), so whoever writes its samples can match the input's format.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.labelmap import body_from_label, to_label4
from ..errors import InputError
from ..devices import resolve_device
from .checkpoint import CKPT, load_checkpoint
from .config import Config, config_from_dict
from .encoding import condition
from .model import CoSinGAN
from .pyramid import condition_pyramid, resize_image, resize_labels, sizes_like


#: the generators' arithmetic when sampling: float32, or bfloat16 autocast (convolutions in bf16; faster on
#: CPUs with AVX-512 BF16 and on GPUs, slower on CPUs without; docs/performance.md)
PRECISIONS = ("fp32", "bf16")
PRECISION_HELP = ("the generators' arithmetic when sampling: fp32, or bf16 (about 1.45x faster on CPUs with AVX-512 "
                  "BF16 and on GPUs, slower on other CPUs; images within a grey level of fp32's on average)")


def sample_seed(seed: int, cond_index: int, sample_index: int) -> int:
    """The noise seed of one sample: one sample can be regenerated alone."""
    return (seed * 1_000_003 + cond_index * 10_007 + sample_index) % (2**63 - 1)


@dataclass
class TrainedRun:
    folder: Path
    model: CoSinGAN
    config: Config
    kind: str  # how the training slice came: png, nifti or npy
    spacing: list[float] | None  # mm per pixel (row, col) at the training size; None when unknown
    train_image: np.ndarray  # the training pair at the training size: image in [-1, 1], (h, w) or (k, h, w)
    train_label4: np.ndarray  # ... and its air/body/lung/infection map (k pairs: a few-shot generator)
    stage_seconds: list[float]
    digest: str  # of the checkpoint file: which generator this is, whatever its folder is called
    precision: str = "fp32"  # of sampling, one of PRECISIONS

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu", require_finished: bool = True,
                        precision: str = "fp32") -> "TrainedRun":
        if precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        folder = Path(folder)
        dev = resolve_device(device)
        ckpt = load_checkpoint(folder, map_location=dev)
        cfg = config_from_dict(ckpt["config"], str(folder / CKPT))
        pairs = ckpt["model"]["rec_noise"].shape[0] if "rec_noise" in ckpt["model"] else 1
        model = CoSinGAN(cfg.model, [tuple(s) for s in ckpt["sizes"]], pairs).place(dev)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise InputError(f"{folder / CKPT}: weights do not fit the stored model config "
                             f"({str(e).splitlines()[0]})") from None
        if require_finished and not ckpt.get("done"):
            raise InputError(f"{folder}: training is not finished (stage {ckpt['stage'] + 1} of "
                             f"{model.num_scales}); resume it with `cosingan train --resume {folder}`")
        model.eval()
        data = ckpt["data"]
        digest = hashlib.sha1((folder / CKPT).read_bytes()).hexdigest()
        return cls(folder, model, cfg, data["kind"], data["spacing"], data["image"].cpu().numpy(),
                   data["label4"].cpu().numpy(), list(ckpt.get("stage_seconds", [])), digest, precision)

    @property
    def train_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every training pair (image, 4-class map): one for a single-image generator, k for a few-shot one."""
        if self.train_image.ndim == 2:
            return [(self.train_image, self.train_label4)]
        return list(zip(self.train_image, self.train_label4))

    @property
    def device(self) -> torch.device:
        return self.model.sizes.device

    @property
    def batch(self) -> int:
        """Samples drawn at once unless told: two on the CPU, where larger batches overflow the caches
        (docs/performance.md), four in bf16 (the same bytes), 16 on a GPU (the batch the CPU used before)."""
        if self.device.type != "cpu":
            return 16
        return 4 if self.precision == "bf16" else 2

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return self.model.size_list()

    def resize_label4(self, label4: np.ndarray) -> np.ndarray:
        """A 4-class map resized (nearest) so its long side is the model's finest long side."""
        return resize_labels(label4, sizes_like(self.sizes, *label4.shape)[-1])

    def condition(self, label: np.ndarray, body: np.ndarray | None = None) -> np.ndarray:
        """A 0/1/2 label map (and body mask; estimated from the lungs when None) as the 4-class map
        this model generates for, at its pixel scale."""
        if body is None:
            body = body_from_label(label)
        return self.resize_label4(to_label4(label, body))

    def __call__(self, label4: np.ndarray, seeds: list[int], batch: int | None = None) -> np.ndarray:
        """Images in [-1, 1], (len(seeds), H, W), one per seed, for one 4-class map."""
        return self.sample_maps([label4] * len(seeds), seeds, batch)

    @torch.no_grad()
    def sample_maps(self, label4s: list[np.ndarray], seeds: list[int], batch: int | None = None,
                    carried: list[tuple[np.ndarray, np.ndarray] | None] | None = None, at: int = 0
                    ) -> np.ndarray:
        """Images in [-1, 1], (len(seeds), H, W), one per (4-class map, seed); the maps share one shape.
        A sample does not depend on its batch, to float rounding (~1e-7; a pixel on a rounding edge may move
        by one grey level in its PNG). `carried`: per map an image and its weight (0..1) at the maps' size, or
        None; each is blended into scale `at`'s output, and the finer scales draw over it (`synth.anatomy`'s
        inject)."""
        if len(label4s) != len(seeds) or len({m.shape for m in label4s}) > 1:
            raise ValueError("sample_maps: one seed per map, and maps of one shape")
        if carried is not None and len(carried) != len(seeds):
            raise ValueError("sample_maps: one carried image (or None) per map")
        batch = self.batch if batch is None else batch
        if batch < 1:
            raise ValueError(f"sample_maps: batch must be at least 1, got {batch}")
        device = self.device
        sizes = sizes_like(self.sizes, *label4s[0].shape)
        mc = self.config.model
        out = []
        with torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            for b0 in range(0, len(seeds), batch):
                maps = torch.from_numpy(np.stack(label4s[b0: b0 + batch])).to(device)
                pyr = condition_pyramid(condition(maps, mc.body_channel, mc.body_fields), sizes)
                # one generator per sample, drawn scale by scale: a sample does not depend on its batch
                noise = _per_scale_noise(pyr, seeds[b0: b0 + batch], device)
                if carried is None:
                    x = self.model(pyr, noise)[1]
                else:
                    x = self.model(pyr, noise, stop=at + 1)[1]
                    x = _blend_in(x, carried[b0: b0 + batch], sizes[at], device)
                    x = self.model(pyr, noise, start=at + 1, x=x)[1]
                out.append(x[:, 0].float().clamp(-1, 1).cpu().numpy())
        return np.concatenate(out)


def _blend_in(x: torch.Tensor, carried: list, size: tuple[int, int], device) -> torch.Tensor:
    """x (B, 1, h, w) with each item's carried image blended in by its weight, both resized to (h, w)."""
    x = x.clone()
    for b, c in enumerate(carried):
        if c is None:
            continue
        image, weight = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device) for a in c)
        image = resize_image(image, size)
        weight = F.interpolate(weight, size=size, mode="area")
        x[b: b + 1] = weight * image + (1 - weight) * x[b: b + 1]
    return x


def _per_scale_noise(pyr: list[torch.Tensor], seeds: list[int], device) -> list[torch.Tensor]:
    gens = [torch.Generator().manual_seed(sd) for sd in seeds]
    return [torch.cat([torch.randn(1, 2, *c.shape[-2:], generator=g) for g in gens]).to(device) for c in pyr]
