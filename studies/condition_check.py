"""Does a trained run follow its label maps? An intensity check on samples, no segmenter needed.

For each condition (the training map, and label maps of OTHER real slices with their bodies) it samples
N slices and reports, inside vs outside the infection label:
  * the mean grey level of infection, normal lung and body pixels (real CT: infection is brighter
    than aerated lung);
  * pixel AUC: how well the grey level (3x3 mean) separates infection from normal-lung pixels;
  * diversity: mean absolute difference between two samples of the same map, inside the lung and
    outside it (grey levels 0..255).
Reference rows are computed on the REAL slices whose maps are used.

    python -m studies.condition_check RUN --data ../shared/data/medseg_covid_slices/train \
        --others 5 --n 8 --out RUN/condition_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cosingan.data.labelmap import BODY, INFECTION, LUNG, body_from_image
from cosingan.data.readers import load_slice
from cosingan.gan import TrainedRun, sample_seed


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of pos > neg."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="mergesort"), kind="mergesort") + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def stats(img: np.ndarray, label4: np.ndarray, rng: np.random.Generator) -> dict:
    g = (img + 1) * 127.5
    sm = ndimage.uniform_filter(g, 3)
    inf, lung, body = label4 == INFECTION, label4 == LUNG, label4 == BODY
    pi, pl = sm[inf], sm[lung]
    k = 5000  # subsample pixels for the AUC
    pi = rng.choice(pi, min(k, len(pi)), replace=False) if len(pi) else pi
    pl = rng.choice(pl, min(k, len(pl)), replace=False) if len(pl) else pl
    return {"infection": float(g[inf].mean()) if inf.any() else float("nan"), "lung": float(g[lung].mean()),
            "body": float(g[body].mean()) if body.any() else float("nan"), "auc": auc(pi, pl)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="slice folder with images/ and labels/")
    ap.add_argument("--others", type=int, default=5, help="how many other slices' maps to use")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    model = TrainedRun.from_pretrained(args.run)
    rng = np.random.default_rng(0)
    data = Path(args.data)
    names = sorted(p.name for p in (data / "labels").glob("*.png"))
    rows = []
    conds = [("train (own map)", model.train_label4, model.train_image)]
    pick = [names[i] for i in np.linspace(0, len(names) - 1, args.others + 1).round().astype(int)][: args.others]
    for name in pick:
        sl = load_slice(data / "images" / name, data / "labels" / name)
        label4 = model.condition(sl.label, body_from_image(sl.image, sl.label))
        real = torch.nn.functional.interpolate(torch.from_numpy(sl.image)[None, None], size=label4.shape,
                                               mode="bilinear", antialias=True)[0, 0].numpy()
        conds.append((f"other map {name}", label4, real))
    t0 = time.time()
    for j, (what, label4, real) in enumerate(conds):
        imgs = model(label4, [sample_seed(0, j, k) for k in range(args.n)])
        s = [stats(im, label4, rng) for im in imgs]
        lungmask = label4 >= LUNG
        div_in = float(np.mean([np.abs(imgs[i] - imgs[i + 1])[lungmask].mean() for i in range(0, len(imgs) - 1, 2)]) * 127.5)
        div_out = float(np.mean([np.abs(imgs[i] - imgs[i + 1])[~lungmask].mean() for i in range(0, len(imgs) - 1, 2)]) * 127.5)
        row = {"condition": what,
               "synthetic": {k: float(np.nanmean([x[k] for x in s])) for k in s[0]},
               "real": stats(real, label4, rng),
               "diversity_in_lung": div_in, "diversity_outside_lung": div_out}
        rows.append(row)
    dt = time.time() - t0
    print(f"{'condition':34s} {'inf/lung/body grey (synthetic)':>32s} {'(real)':>20s} {'AUC syn':>8s} {'AUC real':>8s} {'div in/out':>12s}")
    for r in rows:
        sy, re = r["synthetic"], r["real"]
        print(f"{r['condition']:34s} {sy['infection']:10.1f}{sy['lung']:11.1f}{sy['body']:11.1f} "
              f"{re['infection']:6.1f}{re['lung']:7.1f}{re['body']:7.1f} {sy['auc']:8.3f} {re['auc']:8.3f} "
              f"{r['diversity_in_lung']:6.1f}/{r['diversity_outside_lung']:.1f}")
    print(f"sampling: {len(conds) * args.n} images in {dt:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"run": args.run, "n": args.n, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
