"""Which torch device runs the networks: one place for every layer (GAN, U-Net, classifier, experiment).

Settings never include the device: a model trained on a GPU is the same model (its weights are stored on
the CPU) and may be reused, sampled or evaluated on either. Same seed, same bytes holds on the CPU only.
"""

from __future__ import annotations

import torch

from .errors import InputError

DEVICE_HELP = "cpu, cuda (cuda:N) or auto (default cpu)"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available in this torch build "
                         f"({torch.__version__}); see README (GPU) or use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"--device {name}: unknown device (use cpu, cuda or auto)")
    return torch.device(name)


def net_device(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device
