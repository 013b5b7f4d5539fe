"""Are synthetic lesions as conspicuous as real ones, and is that what the fidelity reference misses?

For the real test slices' own label maps, one sample of each generator of a finished experiment (drawn as
`cosingan quality` draws them: no density step) beside the real slice of the same map. Per image:
lesion contrast (mean grey level of the infection minus the median of the normal lung within 8 px of it;
the median, because real lung around lesions carries vessels and unlabelled haze that lift its mean),
then arm C's U-Net (the condition-fidelity reference) on both: infection DSC, the share of the infection
it misses, and the contrast of the infection pixels it misses and of those it finds. Printed as mean
over the maps, real and synthetic side by side, with the paired differences per map.

    python -m studies.lesion_contrast EXP [--repeat 0]

EXP is a finished `cosingan experiment few-shot` folder with quality on; nothing in it is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from studies.common import open_repeat, test_folder

RING_PX = 8  # normal lung within this distance of the infection is its background
MIN_PX = 30  # maps with less infection or background than this are skipped


def measures(image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> tuple[float, ...] | None:
    """(infection DSC, share missed, lesion contrast, missed-pixel contrast, found-pixel contrast) of
    one image in [-1, 1], its 0/1/2 label map and the reference's infection prediction (bool)."""
    from scipy import ndimage

    truth = label == 2
    ring = ndimage.binary_dilation(truth, iterations=RING_PX) & (label == 1)
    if truth.sum() < MIN_PX or ring.sum() < MIN_PX:
        return None
    grey = (image + 1.0) * 127.5
    background = float(np.median(grey[ring]))
    missed, found = truth & ~pred, truth & pred

    def contrast(mask):
        return float(grey[mask].mean() - background) if mask.any() else float("nan")

    dsc = 2.0 * found.sum() / (pred.sum() + truth.sum())
    return float(dsc), float(missed.sum() / truth.sum()), contrast(truth), contrast(missed), contrast(found)


def main() -> None:
    from cosingan.data.labelmap import body_from_image, label4_to_label
    from cosingan.data.pictures import resize
    from cosingan.data.readers import Slice
    from cosingan.downstream import seg
    from cosingan.gan.run import TrainedRun, sample_seed
    from cosingan.synth.quality import QualityConfig

    rep = open_repeat(__doc__)
    ref, net, scfg = rep.ref, rep.net, rep.scfg
    runs = [q["run"] for q in rep.results["quality"] if q["repeat"] == rep.repeat]
    test = seg.load_folders([test_folder(rep)])
    seed = QualityConfig().seed
    names = ["infection DSC", "missed / infection", "lesion contrast", "missed px contrast", "found px contrast"]
    print(f"reference: {ref.name}; {len(test)} test maps; contrast in grey levels (0..255) above the median "
          f"normal lung within {RING_PX} px")
    print("| generator | images | maps | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 3) + "|")
    notes = []
    for run in runs:
        tr = TrainedRun.from_pretrained(run)
        rows = {"real": {}, "synthetic": {}}
        for j, sl in enumerate(test):
            label4 = tr.condition(sl.label, body_from_image(sl.image, sl.label))
            label = label4_to_label(label4)
            fake = tr(label4, [sample_seed(seed, j, 0)])[0]
            for kind, img in (("real", resize(sl.image, label4.shape)), ("synthetic", fake)):
                pred = seg.predict(net, Slice(img, label, None, "png"), scfg.size) == 2
                m = measures(img, label, pred)
                if m is not None:
                    rows[kind][j] = m
        both = sorted(set(rows["real"]) & set(rows["synthetic"]))
        for kind in ("real", "synthetic"):
            v = np.nanmean([rows[kind][j] for j in both], axis=0)
            print(f"| {Path(run).name} | {kind} | {len(both)} | " + " | ".join(f"{x:.3f}" if i < 2 else f"{x:.1f}"
                                                                        for i, x in enumerate(v)) + " |")
        d = np.array([np.subtract(rows["synthetic"][j], rows["real"][j]) for j in both])
        r = np.corrcoef(d[:, 2], d[:, 0])[0, 1]
        print(f"| {Path(run).name} | synthetic − real, paired | {len(both)} | " + " | ".join(
            f"{x:+.3f}" if i < 2 else f"{x:+.1f}" for i, x in enumerate(np.nanmean(d, axis=0))) + " |", flush=True)
        notes.append(f"{Path(run).name}: per map, correlation of the contrast and the DSC differences {r:.2f}")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
