"""--device: every network (generator, U-Net, classifier) runs where asked; weights are stored on the CPU.

The CUDA cases run only where torch sees a GPU (they are skipped, with that reason, on CPU-only machines
such as CI); the CPU cases always run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosingan.cli import main
from cosingan.data.files import save_png, torch_load
from cosingan.data.phantom import chest_phantom

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this torch build / machine")


@pytest.fixture
def slices(phantom_folder):
    return phantom_folder


@pytest.mark.parametrize("argv", [
    ["seg", "train", "--data", "{d}", "--out", "{o}", "--steps", "1", "--device", "tpu"],
    ["cls", "train", "--data", "{d}", "--out", "{o}", "--steps", "1", "--device", "tpu"],
    ["experiment", "few-shot", "--data", "{d}", "--k", "1", "--out", "{o}", "--device", "tpu"],
])
def test_unknown_device_is_refused_before_any_write(tmp_path, slices, capsys, argv):
    out = tmp_path / "out"
    assert main([a.format(d=slices, o=out) for a in argv]) == 2
    assert "--device tpu" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, slices, capsys):
    out = tmp_path / "out"
    assert main(["seg", "train", "--data", str(slices), "--out", str(out), "--steps", "1", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()


def _tensors_on_cpu(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device.type == "cpu"
    if isinstance(obj, dict):
        return all(_tensors_on_cpu(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_tensors_on_cpu(v) for v in obj)
    return True


@CUDA
def test_seg_and_cls_train_on_cuda_and_load_on_cpu(tmp_path, slices):
    from cosingan.downstream import cls, seg

    for kind, argv in (("seg", ["seg", "train", "--data", str(slices), "--steps", "3", "--size", "32"]),
                       ("cls", ["cls", "train", "--data", str(slices), "--negatives", str(slices / "images"),
                                "--steps", "3", "--size", "32"])):
        if kind == "cls":  # the phantoms all have infection: negatives are made infection-free copies
            neg = tmp_path / "neg"
            for k, p in enumerate(sorted((slices / "images").iterdir())):
                img, _ = chest_phantom(40, seed=90 + k)
                save_png(img, neg / f"n{k}.png")
            argv[argv.index("--negatives") + 1] = str(neg)
        out = tmp_path / kind
        assert main(argv + ["--out", str(out), "--device", "cuda", "--quiet"]) == 0
        raw = torch.load(out / "model.pt", weights_only=True)  # where the tensors were saved from
        assert _tensors_on_cpu(raw["state"])  # portable checkpoints
    net, cfg = seg.load_seg(tmp_path / "seg")  # a GPU-trained model evaluates on the CPU ...
    on_cpu = seg.evaluate(net, cfg, seg.load_folders([slices]))["mean"]
    net, cfg = seg.load_seg(tmp_path / "seg", "cuda")  # ... and on the GPU, to the same scores
    on_gpu = seg.evaluate(net, cfg, seg.load_folders([slices]))["mean"]
    assert on_cpu["lung_dsc"] == pytest.approx(on_gpu["lung_dsc"], abs=0.02)
    net, cfg = cls.load_cls(tmp_path / "cls", "cuda")
    assert np.isfinite(cls.scores(net, cfg, [chest_phantom(40, seed=1)[0]])).all()


@CUDA
def test_tiny_experiment_on_cuda(tmp_path, slices):
    out = tmp_path / "exp"
    assert main(["experiment", "few-shot", "--data", str(slices), "--k", "1", "--out", str(out), "--preset", "tiny",
                 "--regimes", "kmaps", "--n-synth", "4", "--seg-steps", "2", "--seg-size", "32", "--cls-steps", "2",
                 "--device", "cuda", "--quiet"]) == 0
    rec = json.loads((out / "results.json").read_text())
    assert rec["config"]["device"] == "cuda"
    assert all(0.0 <= r["infection_dsc"] <= 1.0 for r in rec["table"])
    run = next((out / "gan").iterdir())
    assert json.loads((run / "config.json").read_text())["device"] == "cuda"
    assert torch_load(run / "checkpoint.pt")["model"]  # a GPU-trained run loads on the CPU
