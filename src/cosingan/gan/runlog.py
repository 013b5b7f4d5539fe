"""What a training run shows a person: log.csv, curves.png and the per-stage sample grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.files import save_figure, write_text


def write_log_csv(run: Path, log: list[dict]) -> None:
    first = ["step", "stage", "iter"]
    cols = first + sorted({k for e in log for k in e} - set(first))
    lines = [",".join(cols)] + [",".join(f"{e[k]:.6g}" if isinstance(e.get(k), float) else str(e.get(k, ""))
                                         for k in cols) for e in log]
    write_text(run / "log.csv", "\n".join(lines) + "\n")


def write_curves(run: Path, log: list[dict], stage_ends: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("wdist", "Wasserstein estimate (global critic)"), ("wdist_lung", "Wasserstein (lung critic)"),
            ("rec", "reconstruction loss"), ("adv", "generator adversarial loss")]
    keys = [(k, t) for k, t in keys if any(k in e for e in log)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.2 * len(keys)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (k, title) in zip(axes, keys):
        xs = [e["step"] for e in log if k in e]
        ys = [e[k] for e in log if k in e]
        ax.plot(xs, ys, lw=0.6)
        if k == "rec":
            ax.set_yscale("log")
        for s in stage_ends:
            ax.axvline(s, color="grey", lw=0.5, ls=":")
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("iteration (dotted: stage ends)")
    fig.tight_layout()
    save_figure(fig, run / "curves.png")
