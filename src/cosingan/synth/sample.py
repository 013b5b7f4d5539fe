"""`cosingan sample`: slices for any label map from one trained run, written as a slice folder.

Outputs use the slice-folder layout the readers take (`OUT/images/NAME.png` + `OUT/labels/NAME.png`), so
a sample folder is a training set as it stands. Every sample has its own seed, derived from the seed
argument, the condition's index and the sample's index, so one sample can be regenerated alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.files import save_nifti, save_png
from ..data.labelmap import body_from_image, label4_to_label
from ..data.layout import output_stem, pair_paths, paired_image
from ..data.outputs import output
from ..data.pictures import image_to_uint8, label_to_uint8, tile
from ..data.readers import read_image, read_label
from ..errors import InputError
from ..gan.run import TrainedRun, sample_seed


def load_conditions(run: TrainedRun, labels: list[str], body: str = "auto") -> list[tuple[str, np.ndarray]]:
    """(name, 4-class map at the model's scale) for label map files; the body comes from the paired
    image (slice folders), or is estimated from the lungs."""
    conds = []
    for p in labels:
        path = Path(p)
        lab = read_label(path)
        body_mask = None
        if body in ("auto", "image"):
            img_path = paired_image(path)
            if img_path is None and body == "image":
                raise InputError(f"{path}: --body image needs the slice at ../images/{path.stem}.*")
            if img_path is not None:
                img = read_image(img_path)[0]
                if img.shape != lab.shape:
                    raise InputError(f"{img_path}: image size {img.shape} does not match label map {path}")
                body_mask = body_from_image(img, lab)
        conds.append((output_stem(path), run.condition(lab, body_mask)))
    return conds


def sample_run(run: str | Path, n: int, out: str | Path, labels: list[str] | None = None, seed: int = 0,
               device: str = "cpu", body: str = "auto", batch: int | None = None, progress: bool = True,
               precision: str = "fp32") -> list[Path]:
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    trained = TrainedRun.from_pretrained(run, device, precision=precision)
    own = trained.train_pairs
    conds = load_conditions(trained, labels, body) if labels else (
        [("train", own[0][1])] if len(own) == 1 else [(f"train_{i}", lab) for i, (_, lab) in enumerate(own)])
    names = [name for name, _ in conds]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"--label: several label maps are named {dup[0]!r}; their samples would overwrite "
                         "each other (rename one)")
    with output(out, "sample", (run, *(labels or []))) as out:
        for d in pair_paths(out, "x"):
            d.parent.mkdir(parents=True, exist_ok=True)
        return _write_samples(trained, conds, n, out, seed, batch, progress)


def _write_samples(trained: TrainedRun, conds, n: int, out: Path, seed: int, batch: int | None,
                   progress: bool) -> list[Path]:
    from tqdm.auto import tqdm

    nifti = trained.kind == "nifti"
    written, grid_rows = [], []
    bar = tqdm(total=n * len(conds), desc="sampling", disable=not progress, dynamic_ncols=True)
    for j, (name, label4) in enumerate(conds):
        imgs = trained(label4, [sample_seed(seed, j, k) for k in range(n)], batch)
        lab = label4_to_label(label4)
        for k, img in enumerate(imgs):
            ip, lp = pair_paths(out, f"{name}_{k:04d}")
            save_png(img, ip)
            save_png(lab, lp)
            if nifti:
                ip_nii, lp_nii = pair_paths(out, f"{name}_{k:04d}", ".nii.gz")
                save_nifti(img, ip_nii, spacing=trained.spacing)
                save_nifti(lab, lp_nii, spacing=trained.spacing, is_label=True)
            written.append(ip)
            bar.update(1)
        shown = [label_to_uint8(lab)] + [image_to_uint8(im) for im in imgs[:6]]
        grid_rows.append(shown + [np.full((1, 1), 255, np.uint8)] * (7 - len(shown)))
    bar.close()
    save_png(tile([t for row in grid_rows for t in row], cols=7), out / "grid.png")
    return written
