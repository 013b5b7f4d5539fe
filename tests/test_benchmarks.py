"""The maintained benchmarks run (a smoke test on the smallest settings; their numbers are not checked:
CI never gates on time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cosingan.data.files import save_png
from cosingan.data.phantom import chest_phantom

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_speed_benchmark_runs_every_part(tmp_path):
    img, lab = chest_phantom(40, seed=0)
    save_png(img, tmp_path / "i.png")
    save_png(lab, tmp_path / "l.png")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--image", str(tmp_path / "i.png"), "--label",
                        str(tmp_path / "l.png"), "--out", str(out), "--presets", "tiny", "--quick", "1",
                        "--ref-iters", "1", "--gen-iters", "1", "--samples", "2", "--batch", "2", "--steps", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["conv_gflops"] and res["synthesis"]["flops_per_image"] > 0
    assert res["synthesis"]["images_per_s_one_at_a_time"] > 0 and "one at a time" in r.stdout
    assert res["synthesis"]["images_per_s_bf16"] > 0 and "--precision bf16 (batch 2)" in r.stdout
    assert set(res["downstream"]["unet_s_per_step"]) == {"no augmentation", "batched strong", "monai per-item strong"}
    assert "per-item / batched" in r.stdout and "images/s" in r.stdout
    stages = res["generator_iterations"]["stages"]
    assert len(stages) == len(res["ours"]["tiny"]["sizes"]) and all(s["flops"] > 0 for s in stages)
    assert sum(x.startswith("generator iteration (tiny), stage") for x in r.stdout.splitlines()) == len(stages)
    assert any(k.endswith("_channels_last") for k in res["conv_gflops"])


def test_seg_nets_benchmark_runs():
    r = subprocess.run([sys.executable, str(BENCH / "seg_nets.py"), "--size", "32", "--batch", "2", "--steps", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ms" in r.stdout


def test_memory_format_benchmark_runs():
    r = subprocess.run([sys.executable, str(BENCH / "memory_format.py"), "--repeats", "1", "--sizes", "16",
                        "--downstream-size", "32", "--trainer-size", "128", "--trainer-iters", "1",
                        "--trainer-rounds", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len([x for x in lines if x.startswith("generator training iteration, stage")]) == 2  # third and last
    assert len([x for x in lines if "modulated" in x]) == 2 and sum("channels-last" in x for x in lines) == 6


def test_the_benchmarks_folder_holds_only_smoke_tested_benchmarks():
    assert sorted(p.name for p in BENCH.glob("*.py")) == ["memory_format.py", "seg_nets.py", "speed.py"]
