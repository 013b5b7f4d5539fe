"""Training and sampling speed, side by side in one run on one machine; writes JSON, prints ratios.

    python benchmarks/speed.py --image IMG --label LABEL [--out bench.json] [--device cpu|cuda]
                               [--presets tiny cpu] [--quick N] [--ref-iters 3] [--gen-iters 5]
                               [--parts gan downstream]

Measures, each part in its own process (so peak memory is that part's own):
1. our training, per stage and per model, for each preset (a full run; `--quick N` trains N
   iterations per stage instead and extrapolates to the preset's iterations, flagged in the output);
2. a plain SinGAN-style reference loop on the same image at the same finest size: one unconditional
   generator and critic per scale (5 conv blocks, 32 channels, SinGAN's scale factor 0.75 from 25 px),
   each iteration 3 critic steps and 3 generator steps with WGAN-GP and the reconstruction loss, the
   frozen coarser scales run again at every step as SinGAN does; `--ref-iters` timed iterations per
   scale, extrapolated to SinGAN's 2000 iterations per scale;
3. one training iteration of the last preset's generator at every stage, its FLOPs beside its time and the
   limit they set (`--gen-iters` timed iterations per stage);
4. synthesis throughput of the trained cpu model (images/s, batches of label maps, one map at a time, and
   with `--precision bf16`), beside its FLOPs per image and the machine's measured convolution throughput:
   the limit it could reach;
5. the downstream networks: a U-Net step and a classifier step (the experiment's sizes, batch 8) with the
   strong augmentation of whole batches (`BatchAugment`, today's) beside MONAI's per-item transforms (the
   earlier path, `augment.monai_strong`), and without augmentation, each beside its FLOP-based limit;
6. peak memory: the process's peak resident set (CPU), or torch's peak allocation (CUDA).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from pathlib import Path


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _ours(image: str, label: str, preset: str, device: str, quick: int, run_dir: str, q) -> None:
    import torch

    from cosingan.gan.config import merge, preset as get_preset
    from cosingan.data.readers import load_slice
    from cosingan.gan.checkpoint import load_checkpoint
    from cosingan.gan.train import train

    cfg = merge(get_preset(preset), {"device": device}, "benchmark")
    full_iters = cfg.train.iters
    if quick:
        cfg = merge(cfg, {"train": {"iters": min(quick, full_iters), "sample_every_stage": False}}, "benchmark")
    t = time.perf_counter()
    tr = train(run_dir, load_slice(image, label), cfg, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    total = time.perf_counter() - t
    stages = list(load_checkpoint(Path(run_dir))["stage_seconds"])
    scale = full_iters / cfg.train.iters
    q.put({"preset": preset, "sizes": [list(s) for s in tr.sizes], "iters_per_stage": full_iters,
           "measured_iters_per_stage": cfg.train.iters, "extrapolated": scale != 1,
           "stage_seconds": [s * scale for s in stages], "model_seconds": total * scale,
           "peak_mb": _peak_mb(device)})


def _reference(image: str, label: str, max_size: int, device: str, iters: int, q) -> None:
    """A SinGAN-style loop (Shaham et al. 2019, official defaults), timed per iteration and scale."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from cosingan.data.readers import load_slice
    from cosingan.gan.pyramid import resize_image, scale_sizes

    torch.manual_seed(0)
    dev = torch.device(device)
    sl = load_slice(image, label)
    h, w = sl.image.shape
    sizes = scale_sizes(h, w, 25, max_size, 0.75)
    full = torch.from_numpy(sl.image)[None, None].to(dev)
    reals = [resize_image(full, hw) for hw in sizes]

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]

    def net(tail_act: bool) -> nn.Module:
        layers = block(1, 32) + block(32, 32) + block(32, 32) + block(32, 32) + [nn.Conv2d(32, 1, 3, 1, 1)]
        if tail_act:
            layers.append(nn.Tanh())
        return nn.Sequential(*layers).to(dev)

    gens, per_iter = [], []

    def up(x, hw):
        return F.interpolate(x, size=hw, mode="bilinear", align_corners=True)

    def draw_concat(k: int, rec: bool) -> torch.Tensor:
        """SinGAN runs every frozen coarser scale again at each step."""
        x = torch.zeros_like(reals[0])
        with torch.no_grad():
            for i in range(k):
                z = torch.zeros_like(reals[i]) if rec and i > 0 else torch.randn_like(reals[i])
                x = gens[i](x + 0.1 * z) + x
                x = up(x, sizes[i + 1])
        return x

    for k, real in enumerate(reals):
        G, D = net(True), net(False)
        oG = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
        oD = torch.optim.Adam(D.parameters(), lr=5e-4, betas=(0.5, 0.999))
        z_opt = torch.randn_like(real) if k == 0 else torch.zeros_like(real)
        times = []
        for it in range(iters + 1):  # the first iteration warms up and is not timed
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(3):  # critic steps
                prev = draw_concat(k, rec=False)
                fake = G(prev + 0.1 * torch.randn_like(real)) + prev
                alpha = torch.rand(1, 1, 1, 1, device=dev)
                mix = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
                grad = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)[0]
                gp = ((grad.norm(2, dim=1) - 1) ** 2).mean()
                loss_d = -D(real).mean() + D(fake.detach()).mean() + 0.1 * gp
                oD.zero_grad()
                loss_d.backward()
                oD.step()
            z_prev = draw_concat(k, rec=True)
            for _ in range(3):  # generator steps
                fake = G(prev + 0.1 * torch.randn_like(real)) + prev
                rec = G(z_prev + z_opt) + z_prev
                loss_g = -D(fake).mean() + 10 * F.mse_loss(rec, real)
                oG.zero_grad()
                loss_g.backward()
                oG.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if it:
                times.append(time.perf_counter() - t)
        gens.append(G.eval())
        per_iter.append(sum(times) / len(times))
    q.put({"sizes": [list(s) for s in sizes], "timed_iters_per_scale": iters, "s_per_iter": per_iter,
           "model_seconds_2000": 2000 * sum(per_iter), "peak_mb": _peak_mb(device)})


def _synthesis(run_dir: str, device: str, n: int, batch: int, q) -> None:
    from dataclasses import replace

    import torch

    from cosingan.gan import TrainedRun

    model = TrainedRun.from_pretrained(run_dir, device)
    bf16 = replace(model, precision="bf16")
    batch, batch_bf16 = batch or model.batch, batch or bf16.batch
    label4 = model.train_label4
    flops = _flops(lambda: model(label4, [0], 1))
    model(label4, list(range(16)), 16)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()

    def rate(count: int, b: int, m=model) -> float:
        t = time.perf_counter()
        m(label4, list(range(count)), b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return count / (time.perf_counter() - t)

    batched = rate(n, batch)
    single = rate(max(1, n // 4), 1)  # one map at a time, as datasets were made before batching over maps
    sixteen = rate(n, 16)  # the batch of every device before the CPU's default became 2
    rate(batch_bf16, batch_bf16, bf16)  # warm-up: other kernels
    half = rate(n, batch_bf16, bf16)
    q.put({"images": n, "batch": batch, "size": list(label4.shape[-2:]), "images_per_s": batched,
           "images_per_s_one_at_a_time": single, "images_per_s_batch16": sixteen, "images_per_s_bf16": half,
           "batch_bf16": batch_bf16, "flops_per_image": flops, "peak_mb": _peak_mb(device)})


def _generator_iterations(image: str, label: str, preset: str, device: str, iters: int, q) -> None:
    """FLOPs and seconds of one training iteration at every stage of a `preset` generator on the slice (the
    trainer's own step: critic and generator updates with the gradient penalty and the reconstruction),
    each stage entered as training enters it; weights untrained, which changes neither."""
    import statistics

    import torch

    from cosingan.data.readers import load_slice
    from cosingan.gan.config import merge, preset as get_preset
    from cosingan.gan.train import prepare_pair
    from cosingan.gan.trainer import Trainer

    cfg = merge(get_preset(preset), {"device": device}, "benchmark")
    torch.manual_seed(0)
    t = Trainer(Path("unused"), cfg, *prepare_pair(load_slice(image, label), cfg.model.max_size))  # writes nothing
    rows = []
    for stage, (h, w) in enumerate(t.sizes):
        t.stage, t.iter = stage, 0
        t._begin_stage(fresh=True)
        flops = _flops(t.step)  # also the warm-up
        times = []
        for _ in range(iters):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            t.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        rows.append({"stage": stage + 1, "size": [h, w], "flops": flops, "s_per_iter": statistics.median(times)})
    q.put({"preset": preset, "iters_per_stage": cfg.train.iters, "stages": rows})


def _flops(fn) -> float:
    """FLOPs that one call of fn runs (torch's FLOP formulas: convolutions and matrix products, backward
    included). Counted by a dispatch mode of our own, because `FlopCounterMode`'s module hooks break the
    gradient penalty's `autograd.grad` ("A leaf node was passed to _will_engine_execute_node")."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    formulas = FlopCounterMode(display=False).flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **(kwargs or {}), out_val=out)
            return out

    with Count():
        fn()
    return float(Count.total)


def _timed(fn, device: str, n: int) -> float:
    """Seconds per call, after one warm-up call."""
    import torch

    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def _conv_throughput(device: str, q) -> None:
    """The machine's convolution throughput (GFLOP/s) on the shapes the project runs: 3x3, 32 channels."""
    import torch

    out = {}
    for size, batch in ((128, 8), (256, 4)):
        for fmt, tag in ((torch.contiguous_format, ""), (torch.channels_last, "_channels_last")):
            conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(device, memory_format=fmt)
            x = torch.randn(batch, 32, size, size, device=device).contiguous(memory_format=fmt)
            with torch.no_grad():
                f = _flops(lambda: conv(x))
                s = _timed(lambda: conv(x), device, 20)
            out[f"{size}px_batch{batch}{tag}"] = f / s / 1e9
    q.put(out)


def _downstream(device: str, steps: int, q) -> None:
    """Seconds per training step of the U-Net and the classifier: batched augmentation, MONAI per-item, none."""
    import torch

    from cosingan.data.phantom import chest_phantom
    from cosingan.data.readers import Slice
    from cosingan.downstream import cls, seg
    from cosingan.downstream.augment import augmentations, image_augmentations, monai_strong, plain

    dev = torch.device(device)
    img, lab = chest_phantom(256, seed=0)
    d = seg.prepare_slice(Slice(img, lab, None, "png"), 128)
    images, labels = d["image"][None].repeat(8, 1, 1, 1), d["label"][None].repeat(8, 1, 1, 1)
    net = seg.make_net(seg.SegConfig()).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    def step(x, y):
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    batched, per_item = augmentations("strong", 0, dev), monai_strong(0)

    def monai_batch():
        items = [{k: plain(v) for k, v in per_item({"image": images[i], "label": labels[i]}).items()} for i in range(8)]
        return (torch.stack([it["image"] for it in items]).to(dev),
                torch.stack([it["label"] for it in items]).round().long().to(dev))

    x0, y0 = images.to(dev), labels.long().to(dev)
    res = {"unet_flops_per_step": _flops(lambda: step(x0, y0))}
    res["unet_s_per_step"] = {"no augmentation": _timed(lambda: step(x0, y0), device, steps),
                              "batched strong": _timed(lambda: step(*batched(images, labels)), device, steps),
                              "monai per-item strong": _timed(lambda: step(*monai_batch()), device, steps)}
    ccfg = cls.ClsConfig()
    cnet = cls.make_net(ccfg).to(dev)
    copt = torch.optim.Adam(cnet.parameters(), lr=1e-3)
    xc = torch.rand(8, 1, ccfg.size, ccfg.size)
    target = torch.ones(8, device=dev)

    def cstep(x):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(cnet(x)[:, 0], target)
        copt.zero_grad(set_to_none=True)
        loss.backward()
        copt.step()

    cb, cm = image_augmentations("strong", 0, dev), monai_strong(0, keys=("image",))
    res["cls_flops_per_step"] = _flops(lambda: cstep(xc.to(dev)))
    res["cls_s_per_step"] = {
        "no augmentation": _timed(lambda: cstep(xc.to(dev)), device, steps),
        "batched strong": _timed(lambda: cstep(cb(xc)), device, steps),
        "monai per-item strong": _timed(lambda: cstep(torch.stack([plain(cm({"image": xc[i]})["image"])
                                                                   for i in range(8)]).to(dev)), device, steps)}
    q.put(res)


def _in_process(fn, *args):
    """Run one part in a fresh process (its own peak memory); return what it reports."""
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    while True:  # a part that dies reports nothing: stop with its name instead of waiting for ever
        try:
            out = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive() and q.empty():
                raise SystemExit(f"benchmark part {fn.__name__} failed (exit code {p.exitcode}); its error is above")
    p.join()
    return out


def hardware(device: str) -> dict:
    import os

    import torch

    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "device": device}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", nargs="+", default=["tiny", "cpu"])
    ap.add_argument("--quick", type=int, default=0, help="iterations per stage to time (0: full runs)")
    ap.add_argument("--ref-iters", type=int, default=3, help="timed reference iterations per scale")
    ap.add_argument("--gen-iters", type=int, default=5, help="timed generator iterations per stage (FLOPs beside)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=0, help="synthesis batch (0: the trained run's default)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of each downstream network")
    ap.add_argument("--parts", nargs="+", default=["gan", "downstream"], choices=["gan", "downstream"])
    a = ap.parse_args()
    res: dict = {"hardware": hardware(a.device), "ours": {}}
    res["conv_gflops"] = _in_process(_conv_throughput, a.device)
    peak = max(res["conv_gflops"].values())
    print("convolution throughput (3x3, 32 channels): " + ", ".join(f"{k} {v:.0f} GFLOP/s"
                                                                       for k, v in res["conv_gflops"].items()))
    if "downstream" in a.parts:
        ds = res["downstream"] = _in_process(_downstream, a.device, a.steps)
        for net in ("unet", "cls"):
            flops, t = ds[f"{net}_flops_per_step"], ds[f"{net}_s_per_step"]
            limit = flops / (peak * 1e9)
            print(f"{net} step (batch 8), {flops / 1e9:.2f} GFLOP, limit {limit * 1e3:.0f} ms at {peak:.0f} GFLOP/s: "
                  + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items())
                  + f"; per-item / batched {t['monai per-item strong'] / t['batched strong']:.2f}x", flush=True)
    if "gan" not in a.parts:
        Path(a.out).write_text(json.dumps(res, indent=2))
        print(f"-> {a.out}")
        return
    with tempfile.TemporaryDirectory() as d:
        for p in a.presets:
            run = str(Path(d) / p)
            res["ours"][p] = _in_process(_ours, a.image, a.label, p, a.device, a.quick, run)
            o = res["ours"][p]
            print(f"ours {p:5s}: {o['model_seconds'] / 60:6.2f} min per model "
                  f"({'extrapolated from ' + str(o['measured_iters_per_stage']) + ' it/stage' if o['extrapolated'] else 'measured'}), "
                  f"stages {' / '.join(f'{s:.0f}' for s in o['stage_seconds'])} s, peak {o['peak_mb']:.0f} MB", flush=True)
        last = a.presets[-1]
        gi = res["generator_iterations"] = _in_process(_generator_iterations, a.image, a.label, last, a.device,
                                                       a.gen_iters)
        for row in gi["stages"]:
            limit = row["flops"] / (peak * 1e9)
            print(f"generator iteration ({last}), stage {row['stage']} ({row['size'][0]}x{row['size'][1]}): "
                  f"{row['flops'] / 1e9:.2f} GFLOP, limit {limit * 1e3:.0f} ms at {peak:.0f} GFLOP/s, measured "
                  f"{row['s_per_iter'] * 1e3:.0f} ms ({limit / row['s_per_iter']:.2f} of the limit)", flush=True)
        total = sum(r["flops"] for r in gi["stages"]) * gi["iters_per_stage"]
        measured = sum(r["s_per_iter"] for r in gi["stages"]) * gi["iters_per_stage"]
        print(f"generator ({last}), every stage's iterations: {total / 1e12:.2f} TFLOP, limit "
              f"{total / (peak * 1e9) / 60:.1f} min, iterations alone {measured / 60:.1f} min "
              f"({total / (peak * 1e9) / measured:.2f} of the limit)", flush=True)
        max_size = res["ours"][last]["sizes"][-1]
        ref = _in_process(_reference, a.image, a.label, max(max_size), a.device, a.ref_iters)
        res["reference"] = ref
        print(f"SinGAN-style reference at {max(max_size)} px ({len(ref['sizes'])} scales): "
              f"{ref['model_seconds_2000'] / 60:.1f} min per model at 2000 it/scale "
              f"(s/it {' / '.join(f'{s:.2f}' for s in ref['s_per_iter'])}), peak {ref['peak_mb']:.0f} MB", flush=True)
        res["synthesis"] = _in_process(_synthesis, str(Path(d) / last), a.device, a.samples, a.batch)
        syn = res["synthesis"]
        print(f"synthesis ({last} model, {syn['size'][0]}x{syn['size'][1]}, batch {syn['batch']}): "
              f"{syn['images_per_s']:.1f} images/s ({syn['flops_per_image'] / 1e9:.2f} GFLOP per image: at most "
              f"{peak * 1e9 / syn['flops_per_image']:.0f} images/s at {peak:.0f} GFLOP/s), one at a time "
              f"{syn['images_per_s_one_at_a_time']:.1f} images/s (batched {syn['images_per_s'] / syn['images_per_s_one_at_a_time']:.2f}x), "
              f"batch 16 {syn['images_per_s_batch16']:.1f} images/s, "
              f"--precision bf16 (batch {syn['batch_bf16']}) {syn['images_per_s_bf16']:.1f} images/s "
              f"({syn['images_per_s_bf16'] / syn['images_per_s']:.2f}x), "
              f"peak {syn['peak_mb']:.0f} MB")
    ours = res["ours"][last]["model_seconds"]
    finest_ours = res["ours"][last]["stage_seconds"][-1] / res["ours"][last]["iters_per_stage"]
    res["ratios"] = {f"reference_2000_over_{last}": ref["model_seconds_2000"] / ours,
                     "finest_scale_s_per_iter_reference_over_ours": ref["s_per_iter"][-1] / finest_ours}
    print(f"finest scale, seconds per iteration: reference {ref['s_per_iter'][-1]:.2f}, ours {finest_ours:.2f} "
          f"({res['ratios']['finest_scale_s_per_iter_reference_over_ours']:.1f}x)")
    print(f"speed-up of `{last}` over the SinGAN-style reference (2000 it/scale), same image and size: "
          f"{res['ratios'][f'reference_2000_over_{last}']:.1f}x")
    print(f"hardware: {res['hardware']}")
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
