"""`cosingan quality`: graded measures of a generator against real slices (tiny, on phantoms)."""

from __future__ import annotations

import json

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
                 "--c2st-steps", "2", "--quiet"]) == 0
    rec = json.loads((out / "quality.json").read_text())
    assert [r["run"] for r in rec["rows"]] == runs
    assert not set(rec["reference"]) & set(rec["held_out"]) and len(rec["held_out"]) == 3
    for r in rec["rows"]:
        assert 0 <= r["fidelity_lung_dsc"] <= 1 and 0 <= r["fidelity_infection_dsc"] <= 1
        assert 0 <= r["realism_auc"] <= 1
        assert r["w1_lung"] >= 0 and r["w1_body"] >= 0 and r["diversity_lung"] > 0
    assert "realism AUC" in capsys.readouterr().out
    md = (out / "quality.md").read_text()
    assert "| a/g |" in md and "| b/g |" in md  # told apart, each with its own realism classifier
    assert sorted(p.name for p in (out / "c2st").iterdir()) == ["a__g", "b__g"]
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
