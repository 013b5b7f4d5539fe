"""Is low condition fidelity the generator's fault, or the reference's? Condition fidelity is the infection
DSC of arm C's U-Net (trained on real slices) on synthetic images against the maps they were drawn from;
per-case DSC depends strongly on how much infection a slice has, and the synthetic sets' maps (edited,
relaid, with infection-free negatives) have another mix of lesion sizes than the real test slices. This
scores the reference per case on the real test slices and on every synthetic set of one repeat, bins the
cases by infection share of the lung, and prints the mean DSC per bin side by side, with the set's
fidelity reweighted to the real test slices' mix of sizes (size-matched fidelity) and the same reference
on the real test slices (what a generator as faithful as real CT would score), and where the errors are:
false-positive infection outside the truth (share of the lung) and true infection missed (share of it).

    python -m studies.fidelity_by_size EXP [--repeat 0]

EXP is a finished `cosingan experiment few-shot` folder; nothing in it is written.
"""

from __future__ import annotations

import numpy as np
from studies.common import open_repeat, test_folder

# infection share of the lung (truth); the first bin holds slices without infection
BINS = [(0.0, 0.0), (0.0, 0.02), (0.02, 0.05), (0.05, 0.15), (0.15, 1.01)]


def _bin(share: float) -> int:
    if share == 0:
        return 0
    return next(i for i, (lo, hi) in enumerate(BINS) if i and lo < share <= hi)


def per_case(net, scfg, folders, spacing_mm: float) -> list[tuple[int, float, float, float]]:
    """(size bin, infection DSC, false-positive infection outside the truth as a share of the lung, share of
    the true infection missed) per case; DSC is NaN where truth and prediction both lack infection."""
    from cosingan.downstream import seg
    from cosingan.downstream.metrics import score_case

    out = []
    for s in seg.load_folders(folders):
        pred, truth = seg.predict(net, s, scfg.size) == 2, s.label == 2
        sp = s.spacing if s.spacing is not None else (spacing_mm, spacing_mm)
        # score_case owns the benchmark's empty-mask rule; its NSD is computed and not used here (cheap)
        dsc = score_case(np.where(pred, 2, 0), np.where(truth, 2, 0), sp)["infection_dsc"]
        lung = max(int((s.label >= 1).sum()), 1)
        out.append((_bin(float(truth.sum() / lung)), dsc, float((pred & ~truth).sum() / lung),
                    float((truth & ~pred).sum() / truth.sum()) if truth.any() else float("nan")))
    return out


def summary(cases: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """(count, mean DSC over scored cases) per bin; for the bin without infection, the share of cases
    with a false-positive infection (DSC 0; the rest are not scored)."""
    rows = []
    for b in range(len(BINS)):
        v = np.array([d for bb, d, *_ in cases if bb == b], dtype=float)
        ok = v[~np.isnan(v)]
        if b == 0:
            rows.append((len(v), float((v == 0).mean()) if v.size else float("nan")))
        else:
            rows.append((len(v), float(ok.mean()) if ok.size else float("nan")))
    return rows


def main() -> None:
    rep = open_repeat(__doc__)
    exp, cfg, ref, net, scfg = rep.exp, rep.results["config"], rep.ref, rep.net, rep.scfg
    test_cases = per_case(net, scfg, [test_folder(rep)], cfg["spacing_mm"])
    real = summary(test_cases)
    scored_real = sum(n for b, (n, d) in enumerate(real) if b and not np.isnan(d))
    weights = [n / scored_real if b and not np.isnan(d) else 0.0 for b, (n, d) in enumerate(real)]
    names = ["no infection (n, share with a false positive)"] + [
        f"{lo:.0%}-{hi:.0%}" if hi <= 1 else f"> {lo:.0%}" for lo, hi in BINS[1:]]
    sets = sorted(p for p in (exp / "synthetic").glob(f"r{rep.repeat}_*") if (p / "images").is_dir())
    print(f"reference: {ref.name}; infection DSC per case, binned by infection share of the lung (n, mean DSC); "
          "false positive, missed: medians over the cases; "
          "size-matched: the bins' means weighted as the real test slices are ('*': over the bins the set covers)")
    print("| set | all | size-matched | false positive / lung | missed / infection | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 5) + "|")

    def row(name, rows, allcases):
        allv = np.array([c[1] for c in allcases], dtype=float)
        fp, fn = (np.nanmedian([c[i] for c in allcases]) for i in (2, 3))
        # over the size bins the set covers, weights renormalised; '*' when it misses some of the real mix
        cover = [(w, d) for w, (n, d) in zip(weights, rows) if w and not np.isnan(d)]
        total = sum(w for w, _ in cover)
        matched = f"{sum(w * d for w, d in cover) / total:.3f}" + ("" if total > 0.999 else "*") if cover else "-"
        cells = [f"{n}, {d:.3f}" if n and not np.isnan(d) else f"{n}, -" for n, d in rows]
        print(f"| {name} | {np.nanmean(allv):.3f} | {matched} | {fp:.3f} | {fn:.3f} | " + " | ".join(cells) + " |",
              flush=True)

    row("real test slices", real, test_cases)
    for s in sets:
        cases = per_case(net, scfg, [s], cfg["spacing_mm"])
        row(s.name, summary(cases), cases)


if __name__ == "__main__":
    main()
