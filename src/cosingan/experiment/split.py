"""Who sees which slices: the pool/test split, the normals split, and the k slices of each draw.
Test slices never reach training; every choice is seeded and recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.labelmap import areas, teaching_miss
from ..data.layout import IMAGES, LABELS, image_folder, list_slice_folder, slice_files, stem, suffix
from ..data.readers import content_hash, read_image, read_label
from ..errors import InputError
from .config import ExperimentConfig

Pair = tuple[Path, Path]


def link_folder(pairs: list[Pair], out: Path) -> Path:
    """A slice folder of symlinks (no copies of the data). One made before (a resumed run) is completed;
    one that links other files (a run with other settings or data in the same OUT) is refused before
    anything is linked: models trained on it would otherwise be reused for data they never saw."""
    links = {out / sub / src.name: src.resolve() for ip, lp in pairs for src, sub in ((ip, IMAGES), (lp, LABELS))}
    for sub in (IMAGES, LABELS):
        for dst in sorted((out / sub).iterdir()) if (out / sub).is_dir() else []:
            if dst not in links or dst.resolve() != links[dst]:
                raise InputError(f"{out}: holds {dst.name}, which this run does not link there (an experiment "
                                 "with other slices or settings); use a new --out")
    for dst, src in links.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(src)
    return out


def repeat_folder(pairs: list[Pair], copies: int, out: Path) -> Path:
    """A slice folder that holds every pair `copies` times (symlinks NAME_cNN): oversampling by count."""
    for sub in (IMAGES, LABELS):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for ip, lp in pairs:
        for c in range(copies):
            for src, sub in ((ip, IMAGES), (lp, LABELS)):
                dst = out / sub / f"{stem(src)}_c{c:03d}{suffix(src)}"
                if not dst.exists():
                    dst.symlink_to(src.resolve())
    return out


def _pair_hash(pair: Pair) -> str:
    """Content of a slice (decoded image and label map), whatever its file name or format."""
    image, _, _, _ = read_image(pair[0])
    return content_hash(image, read_label(pair[1]))


def split(data: Path, test: Path | None, cfg: ExperimentConfig) -> tuple[list[Pair], list[Pair]]:
    """(train pool, test) pairs. Without a test folder the data is split (seeded)."""
    if cfg.split != "random":
        raise InputError(f"{data}: --split {cfg.split} names cases of a COVID-19-CT-Seg root; a slice folder is "
                         "split at random (seeded) or by --test")
    pool = list_slice_folder(data)
    if test is not None:
        tests = list_slice_folder(test)
        overlap = {p[0].resolve() for p in pool} & {p[0].resolve() for p in tests}
        if overlap:
            raise InputError(f"{test}: {len(overlap)} test slice(s) are also in --data {data}")
        seen = {_pair_hash(p): p for p in pool}
        copies = [(t, seen[h]) for t in tests if (h := _pair_hash(t)) in seen]
        if copies:
            (t, d), n = copies[0], len(copies)
            raise InputError(f"{test}: {n} test slice(s) have the same image and label as slices of --data "
                             f"(e.g. {t[0].name} = {d[0].name}); test slices must not be training slices")
        return pool, tests
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pool))
    n_test = max(1, int(round(len(pool) * cfg.test_fraction)))
    if len(pool) - n_test < max(cfg.ks):
        raise InputError(f"{data}: {len(pool)} slices are too few for k={max(cfg.ks)} plus a test split")
    return [pool[i] for i in sorted(order[n_test:])], [pool[i] for i in sorted(order[:n_test])]


def task1_fold(fold: int) -> tuple[list[str], list[str]]:
    """The COVID-19-CT-Seg benchmark's Task-1 fold: (4 training case names, 16 test case names)."""
    folds = json.loads((Path(__file__).parent / "task1_split.json").read_text())["folds"]
    if not 0 <= fold < len(folds):
        raise InputError(f"--fold must be 0..{len(folds) - 1} for the Task-1 split, got {fold}")
    return list(folds[fold]["train"]), list(folds[fold]["test"])


def split_volumes(data: Path, test: Path | None, cfg: ExperimentConfig) -> tuple[list, list]:
    """(training volumes, test volumes) of a COVID-19-CT-Seg or MosMedData root: the benchmark's Task-1
    fold (`split` task1), a seeded random split of the cases, or the volumes of `--test`."""
    from ..data.volumes import read_volumes

    vols = read_volumes(data)
    if test is not None:
        tests = read_volumes(test)
        shared = {v.name for v in vols} & {v.name for v in tests}
        if shared:
            raise InputError(f"{test}: {len(shared)} test case(s) are also in --data {data} ({sorted(shared)[0]}, ...)")
        return vols, tests
    by = {v.name: v for v in vols}
    if cfg.split == "task1":
        train, tst = task1_fold(cfg.fold)
        missing = [n for n in train + tst if n not in by]
        if missing:
            raise InputError(f"{data}: the Task-1 split needs cases that are not there ({', '.join(missing[:3])}"
                             f"{', ...' if len(missing) > 3 else ''})")
        return [by[n] for n in train], [by[n] for n in tst]
    order = np.random.default_rng(cfg.seed).permutation(len(vols))
    n_test = max(1, int(round(len(vols) * cfg.test_fraction)))
    if len(vols) - n_test < 1:
        raise InputError(f"{data}: {len(vols)} volume(s) are too few for a training and a test split")
    return [vols[i] for i in sorted(order[n_test:])], [vols[i] for i in sorted(order[:n_test])]


def split_normals(normals: Path, seed: int) -> tuple[list[Path], list[Path]]:
    """Infection-free images: (training half, test half), seeded."""
    d = image_folder(normals)
    if not d.is_dir():
        raise InputError(f"{normals}: not a folder")
    files = slice_files(d)
    if len(files) < 2:
        raise InputError(f"{normals}: needs at least 2 images to split into training and test negatives")
    order = np.random.default_rng([seed, 7]).permutation(len(files))
    half = len(files) // 2
    return [files[i] for i in sorted(order[half:])], [files[i] for i in sorted(order[:half])]


@dataclass(frozen=True)
class Draw:
    """The k real slices of one repeat (and arm B's k real normals), drawn from the pool."""

    repeat: int
    k: int
    seed: int  # the repeat's seed: generators, networks and conditions of this draw use it
    chosen: list[Pair]
    normals: list[Path]
    folder: Path  # a slice folder of the chosen pairs

    @property
    def tag(self) -> str:
        return f"r{self.repeat}_k{self.k}"

    @property
    def names(self) -> list[str]:
        return [p[0].name for p in self.chosen]


def typical(pool: list[Pair], k: int) -> list[int]:
    """Indices of the pool slices a person would pick to teach normal and infected lung: large lungs
    (at least the pool's median lung share of the slice, so no basal slices that are mostly liver) and
    an infected share of the lung between 5 and 40 % (both normal lung and lesions to learn from). When
    fewer than 2k qualify, the slices closest to those ranges."""
    lung, inf = zip(*(areas(read_label(lp)) for _, lp in pool))
    miss = teaching_miss(lung, inf)
    ok = np.nonzero(miss == 0)[0]
    return [int(i) for i in ok] if len(ok) >= 2 * k else [int(i) for i in np.argsort(miss, kind="stable")[: 2 * k]]


def draw(cfg: ExperimentConfig, pool: list[Pair], normal_pool: list[Path], repeat: int, k: int,
         out: Path) -> Draw:
    """The k slices of one repeat: drawn at random from the pool (`select` random), or at random among
    the typical slices (`select` area, see `typical`); seeded by (seed, repeat, k)."""
    rng = np.random.default_rng([cfg.seed, repeat, k])
    if cfg.select == "area":
        cand = typical(pool, k)
        chosen = [pool[i] for i in sorted(rng.choice(cand, size=k, replace=False))]
    else:  # among the annotated slices with infection (slices of volumes also come without)
        infected = [i for i, (_, lp) in enumerate(pool) if (read_label(lp) == 2).any()]
        if len(infected) < k:
            raise InputError(f"the training pool has {len(infected)} slice(s) with infection, too few for k={k}")
        cand = len(pool) if len(infected) == len(pool) else infected
        chosen = [pool[i] for i in sorted(rng.choice(cand, size=k, replace=False))]
    if normal_pool:
        normals = [normal_pool[i] for i in sorted(rng.choice(len(normal_pool), size=min(k, len(normal_pool)),
                                                             replace=False))]
    else:  # slices of volumes: k infection-free slices of the pool itself (same source as the test negatives)
        clean = [i for i, (_, lp) in enumerate(pool) if not (read_label(lp) == 2).any()]
        normals = [pool[i][0] for i in sorted(rng.choice(clean, size=min(k, len(clean)), replace=False))] if clean else []
    folder = link_folder(chosen, out / "data" / f"r{repeat}_k{k}")
    return Draw(repeat, k, cfg.repeat_seed(repeat), chosen, normals, folder)
