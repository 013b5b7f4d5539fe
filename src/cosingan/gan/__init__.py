"""The GAN layer: the conditional multi-scale pyramid, its training, and a trained run as an object.

    from cosingan.gan import TrainedRun, ensure_trained, preset
"""

from .config import Config, ModelConfig, TrainConfig, preset
from .run import TrainedRun, sample_seed
from .train import ensure_trained, train

__all__ = ["Config", "ModelConfig", "TrainConfig", "TrainedRun", "ensure_trained", "preset", "sample_seed", "train"]
