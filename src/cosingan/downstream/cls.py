"""Infection detection: "infection present" on a slice, with a small MONAI classifier.

Shortcut guard: COVID slices and normal slices often come framed differently (the dev set's COVID
slices are cropped to the body, MosMed normals are full field of view), and a classifier would learn
the framing. Every slice is therefore cropped to its body's bounding box (tissue threshold, largest
component) before it is resized, for training and evaluation alike.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.files import save_figure, write_json
from ..data.labelmap import largest_component
from ..data.layout import image_files, list_slice_folder
from ..data.readers import read_image, read_label
from ..devices import net_device, resolve_device
from ..errors import InputError
from .augment import image_augmentations
from .metrics import detection_metrics
from .nets import load_net, save_net


@dataclass(frozen=True)
class ClsConfig:
    size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128)
    steps: int = 600
    batch: int = 16
    lr: float = 1e-3
    aug: str = "standard"  # standard | strong (the few-real baseline)
    seed: int = 0
    crop: bool = True  # whole slices are cropped to the body; patches (crop False) are used as they are


def body_crop(image: np.ndarray, threshold: float = -0.4, margin: int = 2) -> np.ndarray:
    """The image cropped to the bounding box of its body (largest bright component)."""
    from scipy import ndimage

    mask = ndimage.binary_opening(image > threshold, iterations=2)
    if not mask.any():
        return image
    mask = largest_component(mask)
    rows, cols = np.nonzero(mask)
    r0, r1 = max(0, rows.min() - margin), min(image.shape[0], rows.max() + 1 + margin)
    c0, c1 = max(0, cols.min() - margin), min(image.shape[1], cols.max() + 1 + margin)
    return image[r0:r1, c0:c1]


def to_input(image: np.ndarray, size: int, crop: bool = True) -> torch.Tensor:
    """Body crop (unless `crop` is False), resized to size x size (the aspect is not kept: every input
    fills the frame)."""
    t = torch.from_numpy(np.ascontiguousarray(body_crop(image) if crop else image))[None, None].float()
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((t[0] + 1) / 2).clamp(0, 1)  # (1, size, size) in [0, 1]


def load_labelled(dirs: list[str | Path]) -> tuple[list[np.ndarray], list[int]]:
    """Slice folders with label maps: target = infection present in the map."""
    images, targets = [], []
    for d in dirs:
        for ip, lp in list_slice_folder(d):
            images.append(read_image(ip)[0])
            targets.append(int((read_label(lp) == 2).any()))
    return images, targets


def shared_images(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    """How many images of `b` also appear (same pixels) in `a`."""
    from ..data.readers import content_hash

    seen = {content_hash(x) for x in a}
    return sum(content_hash(x) in seen for x in b)


def load_images(dirs: list[str | Path]) -> list[np.ndarray]:
    """Every image in the folders (or their images/ subfolder), no labels needed."""
    return [read_image(p)[0] for d in dirs for p in image_files(d)]


def check_config(cfg: ClsConfig) -> None:
    step = 2 ** len(cfg.channels)
    if cfg.size < step or cfg.size % step:
        raise InputError(f"classifier size must be a multiple of {step} (the network halves it "
                         f"{len(cfg.channels)} times), got {cfg.size}")


def check_targets(targets: list[int]) -> None:
    if len(set(targets)) < 2:
        raise InputError("the classifier needs both positives (infection) and negatives (no infection); "
                         "add infection-free data (e.g. synthesize --negatives 0.3)")


def make_net(cfg: ClsConfig) -> torch.nn.Module:
    from monai.networks.nets import Classifier

    return Classifier(in_shape=(1, cfg.size, cfg.size), classes=1, channels=cfg.channels,
                      strides=(2,) * len(cfg.channels))


def train_cls(images: list[np.ndarray], targets: list[int], cfg: ClsConfig, out: str | Path,
              progress: bool = True, device: str = "cpu") -> dict:
    from tqdm.auto import tqdm

    check_targets(targets)
    dev = resolve_device(device)
    out = Path(out)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x_all = torch.stack([to_input(im, cfg.size, cfg.crop) for im in images])
    y_all = torch.tensor(targets, dtype=torch.float32)
    aug = image_augmentations(cfg.aug, cfg.seed, dev)
    net = make_net(cfg).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    # balance the classes: positives weigh negatives / positives
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(targets) - sum(targets)) / sum(targets), device=dev))
    t0 = time.time()
    net.train()
    for _ in tqdm(range(cfg.steps), desc="cls train", disable=not progress, dynamic_ncols=True):
        idx = rng.integers(len(x_all), size=cfg.batch)
        x = aug(x_all[torch.from_numpy(idx)])
        loss = loss_fn(net(x)[:, 0], y_all[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    save_net(net, cfg, out)
    meta = {"config": asdict(cfg), "n": len(targets), "positives": int(sum(targets)), "seconds": time.time() - t0}
    write_json(out / "train.json", meta)
    return meta


def load_cls(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, ClsConfig]:
    net, cfg = load_net(path, ClsConfig, make_net, "classifier")
    return net.to(resolve_device(device)), cfg


@torch.no_grad()
def scores(net: torch.nn.Module, cfg: ClsConfig, images: list[np.ndarray]) -> np.ndarray:
    net.eval()
    out = []
    for b in range(0, len(images), 32):
        x = torch.stack([to_input(im, cfg.size, cfg.crop) for im in images[b: b + 32]]).to(net_device(net))
        out.append(torch.sigmoid(net(x)[:, 0].float()).cpu().numpy())
    return np.concatenate(out)


def evaluate_cls(net, cfg: ClsConfig, positives: list[np.ndarray], negatives: list[np.ndarray],
                 out: str | Path | None = None) -> dict:
    p = scores(net, cfg, positives + negatives)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    m = detection_metrics(p, y)
    if out is not None:
        out = Path(out)
        write_json(out / "summary.json", m)
        write_json(out / "scores.json", {"score": p.tolist(), "target": y.tolist()})  # for joint ROC plots
        _roc_plot(p, y, m["auc"], out / "roc.png")
    return m


def roc_curve(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, highest score first."""
    order = np.argsort(-np.asarray(p), kind="stable")
    ys = np.asarray(y)[order]
    tpr = np.concatenate([[0], np.cumsum(ys) / max(1, ys.sum())])
    fpr = np.concatenate([[0], np.cumsum(1 - ys) / max(1, (1 - ys).sum())])
    return fpr, tpr


def _roc_plot(p: np.ndarray, y: np.ndarray, auc: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = roc_curve(p, y)
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
