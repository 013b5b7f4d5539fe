"""`cosingan quality`: graded measures of a generator against real slices (tiny, on phantoms)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosingan.cli import main
from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom
from cosingan.data.readers import Slice
from cosingan.gan import train

from conftest import tiny


def _real(root, n=6):
    for k in range(n):
        img, lab = chest_phantom(40, seed=70 + k)
        save_png(img, root / "images" / f"r{k}.png")
        save_png(lab, root / "labels" / f"r{k}.png")
    return root


def test_quality_reports_every_measure_per_generator(tmp_path, capsys):
    data = _real(tmp_path / "real")
    runs = []
    for k in range(2):
        img, lab = chest_phantom(40, seed=90 + k)
        run = tmp_path / "ab"[k] / "g"  # two runs of one folder name (two experiments' generators, say)
        train(run, Slice(img, lab, None, "png"), tiny(seed=k), progress=False)
        runs.append(str(run))
    out = tmp_path / "q"
    assert main(["quality", *runs, "--data", str(data), "--out", str(out), "--seg-steps", "2",
                 "--c2st-steps", "2", "--c2st-seeds", "2", "--quiet"]) == 0
    rec = json.loads((out / "quality.json").read_text())
    assert [r["run"] for r in rec["rows"]] == runs
    assert not set(rec["reference"]) & set(rec["held_out"]) and len(rec["held_out"]) == 3
    for r in rec["rows"]:
        assert 0 <= r["fidelity_lung_dsc"] <= 1 and 0 <= r["fidelity_infection_dsc"] <= 1
        for region in ("", "_lung", "_body"):  # whole image and per region, each over 2 classifier seeds
            assert 0 <= r[f"realism_auc{region}"] <= 1 and r[f"realism_auc{region}_sd"] >= 0
        assert 0 <= r["realism_auc_copy"] <= 1 and r["realism_auc_copy_sd"] >= 0  # its training slice's copies
        assert r["w1_lung"] >= 0 and r["w1_body"] >= 0 and r["diversity_lung"] > 0
    assert "realism AUC" in capsys.readouterr().out
    md = (out / "quality.md").read_text()
    assert "| a/g |" in md and "| b/g |" in md  # told apart, each with its own realism classifier
    assert sorted(p.name for p in (out / "c2st").iterdir()) == ["a__g", "b__g"]
    assert sorted(p.name for p in (out / "c2st" / "a__g").iterdir()) == ["body", "copy", "lung", "whole"]
    assert sorted(p.name for p in (out / "c2st" / "a__g" / "whole").iterdir()) == ["0", "1", "seed1"]
    r = rec["rows"][0]
    assert f"| {r['realism_auc']:.3f} ± {r['realism_auc_sd']:.3f} |" in md
    assert f"| {r['realism_auc_copy']:.3f} ± {r['realism_auc_copy_sd']:.3f} |" in md
    # the reference segmenter is trained once and reused
    first = (out / "segmenter" / "model.pt").stat().st_mtime_ns
    assert main(["quality", runs[0], "--data", str(data), "--out", str(out), "--seg-steps", "2",
                 "--c2st-steps", "2", "--quiet"]) == 0
    assert (out / "segmenter" / "model.pt").stat().st_mtime_ns == first


def test_quality_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notrun").mkdir()
    data = _real(tmp_path / "real", 4)
    assert main(["quality", str(tmp_path / "notrun"), "--data", str(data), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosingan: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()


def test_realism_test_is_cross_fitted_over_both_halves(tmp_path):
    from cosingan.synth.quality import QualityConfig, _c2st

    rng = np.random.default_rng(0)
    real = [np.clip(rng.normal(0.3, 0.1, (32, 32)), -1, 1).astype(np.float32) for _ in range(8)]
    fake = [np.clip(rng.normal(-0.3, 0.1, (32, 32)), -1, 1).astype(np.float32) for _ in range(8)]
    cfg = QualityConfig(c2st_steps=30, c2st_size=32)
    assert _c2st(real, fake, cfg, tmp_path / "two", False, "cpu") == 1.0  # told apart in both folds
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["0", "1"]
    one = QualityConfig(c2st_steps=30, c2st_size=32, c2st_folds=1)
    assert _c2st(real, fake, one, tmp_path / "one", False, "cpu") == 1.0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["0"]

    def weights(d):
        return torch.cat([t.flatten().float() for t in torch.load(d / "model.pt", weights_only=False)["state"].values()])

    # the first fold is the same classifier either way (fold f trains with seed + f) ...
    assert torch.equal(weights(tmp_path / "one" / "0"), weights(tmp_path / "two" / "0"))
    # ... and the second one trains on the other half: another classifier
    assert not torch.equal(weights(tmp_path / "two" / "1"), weights(tmp_path / "two" / "0"))
    with pytest.raises(ValueError, match="c2st_folds"):
        QualityConfig(c2st_folds=3)


def test_realism_by_region_composites_the_synthetic_part_into_the_real_slice(tmp_path, monkeypatch):
    """lungs only: the real slice with the synthetic lungs; body only: the synthetic slice with the real lungs."""
    import cosingan.synth.quality as q

    seen = {}
    monkeypatch.setattr(q, "_c2st", lambda real, fake, cfg, out, progress, device, run=0:
                        seen.setdefault(out.name, fake) and 0.5)
    real, fake = [np.zeros((4, 4), np.float32)], [np.ones((4, 4), np.float32)]
    lungs = [np.zeros((4, 4), bool)]
    lungs[0][1:3, 1:3] = True
    row = q.realism(real, fake, lungs, q.QualityConfig(), tmp_path, False, "cpu")
    assert set(row) == {"realism_auc", "realism_auc_lung", "realism_auc_body"}
    assert (seen["whole"][0] == 1).all()
    assert (seen["lung"][0] == lungs[0]).all() and (seen["body"][0] == ~lungs[0]).all()


def test_training_copies_are_the_training_slice_deformed_to_each_shape(tmp_path):
    """The realism test's reference: the generator's own slice, deformed, one copy per map's frame."""
    from cosingan.data.pictures import resize
    from cosingan.gan.run import TrainedRun
    from cosingan.synth.quality import training_copies

    img, lab = chest_phantom(40, seed=91)
    train(tmp_path / "g", Slice(img, lab, None, "png"), tiny(), progress=False)
    run = TrainedRun.from_pretrained(tmp_path / "g")
    shapes = [(32, 32), (24, 32), (32, 28)]
    copies = training_copies(run, shapes, seed=0)
    assert [c.shape for c in copies] == shapes
    assert all(c.min() >= -1 and c.max() <= 1 for c in copies)
    own = run.train_pairs[0][0]
    for c, s in zip(copies, shapes):  # the slice itself, moved a little: close to it, never the same
        r = np.corrcoef(c.ravel(), resize(own, s).ravel())[0, 1]
        assert 0.3 < r < 0.9999
    assert not np.array_equal(copies[0], training_copies(run, shapes, seed=1)[0])
    assert all(np.array_equal(a, b) for a, b in zip(copies, training_copies(run, shapes, seed=0)))
