"""A training process killed with SIGKILL resumes from its last checkpoint and ends bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cosingan.gan.checkpoint import CKPT


def _train_cmd(args):
    return [sys.executable, "-m", "cosingan.cli", "train", *args, "--quiet"]


def _mtime(p):
    try:
        return p.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_at_several_points_then_resume_matches_uninterrupted(tmp_path, phantom_files):
    ip, lp = phantom_files
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train": {"iters": 12, "ckpt_every": 2}}))
    base = ["--image", str(ip), "--label", str(lp), "--preset", "tiny", "--config", str(cfg), "--seed", "1"]
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(base + ["--out", str(ref)]), check=True, timeout=300)

    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(base + ["--out", str(run)]))
    kills = 0
    for _ in range(3):  # kill whenever a fresh checkpoint has landed, then resume
        seen = _mtime(run / CKPT)
        t0 = time.time()
        while proc.poll() is None and _mtime(run / CKPT) == seen and time.time() - t0 < 120:
            time.sleep(0.02)
        if proc.poll() is not None:
            break
        time.sleep(0.05 * kills)  # land at different moments: right after a save, and mid-iteration
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert torch.load(run / CKPT, weights_only=True)["format_version"] >= 1  # never a torn file
        proc = subprocess.Popen(_train_cmd(["--resume", str(run)]))
    assert proc.wait(timeout=300) == 0
    assert kills >= 1
    a = torch.load(ref / CKPT, weights_only=True)
    b = torch.load(run / CKPT, weights_only=True)
    assert a["done"] and b["done"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after {kills} kills"
    assert not list(run.glob(".*.cosingan-tmp"))
