"""Time one U-Net training step (batch 8, 128 px, DiceCELoss) for the MONAI networks we considered.

    python benchmarks/seg_nets.py [--size 128] [--batch 8] [--steps 6]

Prints ms per step and the ratio to the chosen network (cosingan.downstream.seg.make_net), measured side by side.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    from cosingan.downstream.seg import SegConfig, make_net

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    torch.manual_seed(0)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.randn(a.batch, 1, a.size, a.size)
    y = torch.randint(0, 3, (a.batch, 1, a.size, a.size))
    nets = {"cosingan (MONAI UNet, 1 res unit)": make_net(SegConfig(size=a.size)),
            "MONAI BasicUNet (16,16,32,64,128,16)": BasicUNet(spatial_dims=2, in_channels=1, out_channels=3,
                                                               features=(16, 16, 32, 64, 128, 16))}
    ms = {}
    for name, net in nets.items():
        opt = torch.optim.Adam(net.parameters())
        for i in range(2 + a.steps):
            if i == 2:
                t = time.perf_counter()
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        ms[name] = (time.perf_counter() - t) / a.steps * 1000
    base = next(iter(ms.values()))
    print(f"torch threads: {torch.get_num_threads()}")
    for name, v in ms.items():
        print(f"{name:40s} {v:7.0f} ms/step  ({v / base:.2f}x)")


if __name__ == "__main__":
    main()
