"""Channels-last against the default memory format, and the map modulation's cost, side by side in one run.

    python benchmarks/memory_format.py [--threads 2] [--repeats 15] [--sizes 33 100 256] [--downstream-size 128]
        [--trainer-size 256] [--trainer-iters 3] [--trainer-rounds 4]

Times, on the CPU, (0) whole training iterations of a `cpu`-preset few-shot generator (two phantom pairs;
2 critic and 1 generator updates with the gradient penalty and reconstruction) at the third and the last
stage, the model placed as training places it (channels-last) and converted back to NCHW, the two
interleaved; (1) one scale's generator (`cpu`-preset width, 5 convs, two stages; batch 4) training
step and inference at 33, 100 and 256 px, with the model and its inputs in the default (NCHW) and the
channels-last memory format; (2) the same generator with `model.modulation` beside the plain one; (3) the
experiment's U-Net and classifier training steps (batch 8, 128 px) in both formats. Prints each pair's
ratio; nothing is written and no timing gates anything.
"""

from __future__ import annotations

import argparse

import torch
from speed import _timed  # benchmarks/ is the script's folder, so on sys.path


def _ms(fn, repeats: int) -> float:
    return _timed(fn, "cpu", repeats) * 1000


def generator_ms(modulation: bool, size: int, train: bool, channels_last: bool, repeats: int) -> float:
    from cosingan.gan.config import ModelConfig
    from cosingan.gan.model import ScaleGenerator

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = ScaleGenerator(ModelConfig(modulation=modulation), 5).to(memory_format=fmt)
    cond = torch.zeros(4, 4, size, size)
    cond[:, 2] = 1
    prev, z = torch.randn(4, 1, size, size), torch.randn(4, 2, size, size)
    cond, prev, z = (a.contiguous(memory_format=fmt) for a in (cond, prev, z))
    amp = torch.tensor(0.1)

    def step():
        if train:
            x1, x2 = g(prev, cond, z, amp)
            (x1.mean() + x2.mean()).backward()
        else:
            with torch.inference_mode():
                g(prev, cond, z, amp)
    return _ms(step, repeats)


def trainer_ms(size: int, iters: int, repeats: int) -> list[tuple[str, float, float]]:
    """(stage, NCHW ms, channels-last ms) per timed stage: medians of `repeats` alternating rounds."""
    import statistics
    import time
    from dataclasses import replace
    from pathlib import Path

    from cosingan.data.phantom import chest_phantom
    from cosingan.data.readers import Slice
    from cosingan.gan.config import preset
    from cosingan.gan.train import prepare_pair
    from cosingan.gan.trainer import Trainer, stack_pairs

    cfg = preset("cpu")
    cfg = replace(cfg, model=replace(cfg.model, max_size=size, min_size=min(size, cfg.model.min_size)))
    img, lab = stack_pairs([prepare_pair(Slice(*chest_phantom(size, seed), None, "npy"), size) for seed in (0, 1)])
    trainers = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        t = Trainer(Path("unused"), cfg, img, lab)  # nothing is written: only steps run
        t.model.to(memory_format=fmt)
        trainers[fmt] = t
    sizes = trainers[torch.channels_last].sizes
    n = len(sizes)
    rows = []
    for stage in sorted({min(2, n - 1), n - 1}):
        times: dict = {fmt: [] for fmt in trainers}
        for t in trainers.values():
            t.stage, t.iter = stage, 0
            t._begin_stage(fresh=True)
            t.step()  # warm-up
        for _ in range(repeats):
            for fmt, t in trainers.items():
                t0 = time.perf_counter()
                for _ in range(iters):
                    t.step()
                times[fmt].append((time.perf_counter() - t0) / iters * 1000)
        h, w = sizes[stage]
        rows.append((f"stage {stage + 1}/{n} ({h}x{w})", *(statistics.median(times[f]) for f in trainers)))
    return rows


def downstream_ms(kind: str, size: int, channels_last: bool, repeats: int) -> float:
    from cosingan.downstream import cls, seg

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = (seg.make_net(seg.SegConfig()) if kind == "U-Net" else cls.make_net(cls.ClsConfig(size=size)))
    net = net.to(memory_format=fmt)
    x = torch.randn(8, 1, size, size).contiguous(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step():
        loss = net(x).float().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _ms(step, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--sizes", type=int, nargs="+", default=[33, 100, 256], help="generator input sides (px)")
    ap.add_argument("--downstream-size", type=int, default=128, help="U-Net and classifier input side (px)")
    ap.add_argument("--trainer-size", type=int, default=256, help="the training iterations' finest long side (px)")
    ap.add_argument("--trainer-iters", type=int, default=3, help="training iterations per timed round")
    ap.add_argument("--trainer-rounds", type=int, default=4, help="alternating timed rounds per format")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads; ms per call (ratio = first / second)")
    for stage, nchw, last in trainer_ms(a.trainer_size, a.trainer_iters, a.trainer_rounds):
        print(f"generator training iteration, {stage}: NCHW {nchw:.0f}, channels-last {last:.0f} ({nchw / last:.2f}x)")
    for size in a.sizes:
        for train in (True, False):
            what = f"generator {size} px {'train step' if train else 'inference'}"
            nchw, last = (generator_ms(False, size, train, cl, a.repeats) for cl in (False, True))
            mod = generator_ms(True, size, train, False, a.repeats)
            print(f"{what}: NCHW {nchw:.1f}, channels-last {last:.1f} ({nchw / last:.2f}x); "
                  f"modulated (NCHW) {mod:.1f} ({mod / nchw:.2f}x the plain)")
    for kind in ("U-Net", "classifier"):
        nchw, last = (downstream_ms(kind, a.downstream_size, cl, a.repeats) for cl in (False, True))
        print(f"{kind} train step, batch 8, {a.downstream_size} px: NCHW {nchw:.1f}, "
              f"channels-last {last:.1f} ({nchw / last:.2f}x)")


if __name__ == "__main__":
    main()
