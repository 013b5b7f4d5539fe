"""How well does each scale of a trained generator reproduce its own training slice?

SinGAN's reconstruction (the fixed noise at the coarsest scale, none above) is what its fine scales are
trained to draw; how far it falls short of the training slice shows how much detail the fine scales
learned. Per scale: the chained reconstruction (every scale from the coarsest) and the teacher-forced one
(this scale alone, from the real slice one scale coarser), each against the real slice at that scale: SSIM
(MONAI, 7 px window, as the mixed loss) and RMSE in grey levels (0-255).

    python -m studies.reconstruction RUN [RUN ...]

Nothing is written.
"""

from __future__ import annotations

import argparse

import torch


@torch.no_grad()
def per_scale(folder: str) -> list[dict]:
    from monai.metrics import SSIMMetric

    from cosingan.gan import TrainedRun
    from cosingan.gan.trainer import build_pyramids

    run = TrainedRun.from_pretrained(folder)
    m = run.model
    pyr = build_pyramids(run.train_image, run.train_label4, run.sizes, run.config.model, run.device)
    noises = m.rec_noises(pyr.conds)
    ssim = SSIMMetric(spatial_dims=2, data_range=2.0, win_size=7)
    rows, chain = [], None
    for i in range(m.num_scales):
        chain = m(pyr.conds, noises, i, i + 1, x=chain)[1]
        teacher = m(pyr.conds, noises, i, i + 1, x=pyr.reals[i - 1] if i else None)[1]
        real = pyr.reals[i]
        row = {"scale": i, "size": tuple(real.shape[-2:])}
        for name, x in (("chain", chain), ("teacher", teacher)):
            row[f"{name}_ssim"] = float(ssim(x.clamp(-1, 1), real).mean())
            row[f"{name}_rmse"] = float(torch.sqrt(((x.clamp(-1, 1) - real) ** 2).mean()) * 127.5)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args(argv)
    print("| run | scale | size | chain SSIM | chain RMSE | teacher SSIM | teacher RMSE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.runs:
        for r in per_scale(folder):
            print(f"| {folder} | {r['scale']} | {r['size'][0]} x {r['size'][1]} | {r['chain_ssim']:.3f} | "
                  f"{r['chain_rmse']:.1f} | {r['teacher_ssim']:.3f} | {r['teacher_rmse']:.1f} |")


if __name__ == "__main__":
    main()
