"""train-many: one tiny generator per slice, with a local process pool and with a local Ray instance."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom
from cosingan.gan.checkpoint import load_checkpoint
from cosingan.gan.train import train


@pytest.fixture
def four_slices(tmp_path):
    for k in range(4):
        img, lab = chest_phantom(40, seed=30 + k)
        save_png(img, tmp_path / "images" / f"s{k}.png")
        save_png(lab, tmp_path / "labels" / f"s{k}.png")
    return tmp_path / "images", tmp_path / "labels"


def _summary(out):
    with open(out / "summary.csv") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def _args(images, labels, out, *extra):
    return ["train-many", "--images", str(images), "--labels", str(labels), "--out", str(out),
            "--preset", "tiny", "--workers", "2", "--threads", "1", "--quiet", *extra]


def test_local_pool_trains_four_models_then_skips_them(tmp_path, four_slices, capsys):
    images, labels = four_slices
    out = tmp_path / "runs"
    assert main(_args(images, labels, out)) == 0
    rows = _summary(out)
    assert set(rows) == {"s0", "s1", "s2", "s3"}
    assert all(r["status"] == "trained" and float(r["seconds"]) > 0 for r in rows.values())
    weights = {}
    for n in rows:
        ck = load_checkpoint(out / n)
        assert ck["done"]
        weights[n] = next(v for k, v in ck["model"].items() if k.endswith("weight"))
        assert json.loads((out / n / "config.json").read_text())["train"]["iters"] == 6  # the tiny preset
    assert not torch.equal(weights["s0"], weights["s1"])  # each run learnt its own slice
    assert "4 of 4 runs ready" in capsys.readouterr().out
    # again: everything is finished, nothing is retrained
    assert main(_args(images, labels, out)) == 0
    assert all(r["status"] == "skipped (finished before)" for r in _summary(out).values())


def test_interrupted_run_is_resumed(tmp_path, four_slices):
    from cosingan.gan.config import PRESETS
    from cosingan.data.readers import load_slice

    images, labels = four_slices
    for k in (0, 3):  # two slices are enough here
        (images / f"s{k}.png").unlink()
        (labels / f"s{k}.png").unlink()
    out = tmp_path / "runs"
    train(out / "s2", load_slice(images / "s2.png", labels / "s2.png"), PRESETS["tiny"], stop_after=5,
          progress=False)
    assert not load_checkpoint(out / "s2").get("done")
    assert main(_args(images, labels, out)) == 0
    rows = _summary(out)
    assert rows["s2"]["status"] == "resumed" and rows["s1"]["status"] == "trained"
    assert load_checkpoint(out / "s2")["done"]


def test_ray_backend_trains_four_models(tmp_path, four_slices):
    pytest.importorskip("ray", reason="the Ray backend is an optional extra (pip install 'cosingan[ray]')")
    images, labels = four_slices
    out = tmp_path / "runs"
    from cosingan.gan.config import PRESETS
    from cosingan.data.readers import load_slice

    # one interrupted run: its files travel to the Ray task, which resumes it
    train(out / "s1", load_slice(images / "s1.png", labels / "s1.png"), PRESETS["tiny"], stop_after=5,
          progress=False)
    assert main(_args(images, labels, out, "--backend", "ray")) == 0
    rows = _summary(out)
    assert {n: r["status"] for n, r in rows.items()} == {"s0": "trained", "s1": "resumed", "s2": "trained",
                                                         "s3": "trained"}
    for n in rows:
        assert load_checkpoint(out / n)["done"] and (out / n / "config.json").exists()
        assert (out / n / "train_image.png").exists()
    assert not list(out.glob(".*incoming"))


def test_bad_slice_stops_before_any_training(tmp_path, four_slices, capsys):
    images, labels = four_slices
    (labels / "s3.png").write_bytes(b"not a png")
    out = tmp_path / "runs"
    assert main(_args(images, labels, out)) == 2
    err = capsys.readouterr().err
    assert "s3.png" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_label_is_named(tmp_path, four_slices, capsys):
    images, labels = four_slices
    (labels / "s0.png").unlink()
    assert main(_args(images, labels, tmp_path / "runs")) == 2
    assert "s0.png" in capsys.readouterr().err
