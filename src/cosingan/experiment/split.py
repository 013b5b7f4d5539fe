"""Who sees which slices: the pool/test split, the normals split, and the k slices of each draw.
Test slices never reach training; every choice is seeded and recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.labelmap import areas, teaching_miss
from ..data.layout import IMAGES, LABELS, image_folder, list_slice_folder, slice_files, stem, suffix, volume_root_kind
from ..data.readers import Slice, content_hash, read_image, read_label, read_slice_folder
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


def split(data: Path, test: Path | None, cfg: ExperimentConfig, seed) -> tuple[list[Pair], list[Pair]]:
    """(train pool, test) pairs of a slice folder: `test`'s slices, or a seeded random split of the data."""
    if cfg.split == "task1":
        raise InputError(f"{data}: --split task1 names cases of a COVID-19-CT-Seg root; a slice folder is "
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
    seen: dict[str, Pair] = {}
    for p in pool:  # a copy under another name would land on both sides of the split
        first = seen.setdefault(_pair_hash(p), p)
        if first is not p:
            raise InputError(f"{data}: {p[0].name} has the same image and label as {first[0].name}; a slice "
                             "twice in --data could be split into both training and test: remove the copy")
    order = np.random.default_rng(seed).permutation(len(pool))
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


def split_volumes(vols: list, test: list | None, cfg: ExperimentConfig, seed, data: Path) -> tuple[list, list]:
    """(training volumes, test volumes) of a COVID-19-CT-Seg or MosMedData root's volumes: the benchmark's
    Task-1 fold (`split` task1), a seeded random split of the cases, or the volumes of `--test`."""
    if test is not None:
        tests = test
        shared = {v.name for v in vols} & {v.name for v in tests}
        if shared:
            raise InputError(f"{Path(tests[0].image_path).parent}: {len(shared)} test case(s) are also in --data "
                             f"{data} ({sorted(shared)[0]}, ...)")
        return vols, tests
    by = {v.name: v for v in vols}
    if cfg.split == "task1":
        train, tst = task1_fold(cfg.fold)
        missing = [n for n in train + tst if n not in by]
        if missing:
            raise InputError(f"{data}: the Task-1 split needs cases that are not there ({', '.join(missing[:3])}"
                             f"{', ...' if len(missing) > 3 else ''})")
        return [by[n] for n in train], [by[n] for n in tst]
    order = np.random.default_rng(seed).permutation(len(vols))
    n_test = max(1, int(round(len(vols) * cfg.test_fraction)))
    if len(vols) - n_test < 1:
        raise InputError(f"{data}: {len(vols)} volume(s) are too few for a training and a test split")
    return [vols[i] for i in sorted(order[n_test:])], [vols[i] for i in sorted(order[:n_test])]


def split_normals(normals: Path, seed) -> tuple[list[Path], list[Path]]:
    """Infection-free images: (training half, test half), seeded (an int or a list of ints)."""
    d = image_folder(normals)
    if not d.is_dir():
        raise InputError(f"{normals}: not a folder")
    files = slice_files(d)
    if len(files) < 2:
        raise InputError(f"{normals}: needs at least 2 images to split into training and test negatives")
    order = np.random.default_rng([*np.atleast_1d(seed).tolist(), 7]).permutation(len(files))
    half = len(files) // 2
    return [files[i] for i in sorted(order[half:])], [files[i] for i in sorted(order[:half])]


def split_dir(out: Path, key: str, side: str) -> Path:
    """Where an experiment folder keeps a split's slices: OUT/data/[KEY/]pool or .../test."""
    return Path(out) / "data" / key / side


@dataclass(eq=False)
class Split:
    """One repeat's training pool and test set. Decided (seeded, recorded) before anything is written; then
    `link` makes its folders under OUT/data/KEY and reads its test set once. Repeats that share a split
    (--test, `--split fixed`, the Task-1 fold) share one object."""

    key: str  # folder under OUT/data: r0, r1, ... (a split per repeat) or '' (one for every repeat)
    how: str  # how it was made, for the report: e.g. "random (seed [0, 1, 3])", "--test"
    pool: list[Pair]
    tests: list[Pair]
    normal_pool: list[Path]
    normal_test: list[Path]
    train_volumes: list = field(default_factory=list)  # volume roots: the cases behind pool and tests
    test_volumes: list = field(default_factory=list)  # ... scored per volume in 3-D
    # filled by `link`: the folders, and the test set read once (every arm of the split is scored on it)
    pool_dir: Path | None = None
    test_dir: Path | None = None
    test_slices: list[Slice] = field(default_factory=list)
    test_pos: list[np.ndarray] = field(default_factory=list)  # detection test images with infection
    test_neg: list[np.ndarray] = field(default_factory=list)  # ... and without (+ the test normals)
    test_patches: tuple | None = None  # same-source detection: (patches, targets) of the test slices, made once
    test_key: str | None = None  # hash of the test data: stored scores are reused only for the same data

    @property
    def can_detect(self) -> bool:
        return bool(self.test_pos and self.test_neg)

    def identity(self) -> dict:
        """What decides the split, known before anything is written: the slices (or cases) on each side
        and the normals' halves. An experiment folder keeps its splits: its models were trained on them."""
        ident = {"key": self.key, "how": self.how, "normals_pool": [p.name for p in self.normal_pool],
                 "normals_test": [p.name for p in self.normal_test]}
        if self.test_volumes:
            return {**ident, "volumes": {"train": [v.name for v in self.train_volumes],
                                         "test": [v.name for v in self.test_volumes]}}
        return {**ident, "pool": [p[0].name for p in self.pool], "test": [p[0].name for p in self.tests]}

    def record(self) -> dict:
        """What results.json keeps of the split: its identity and the slices on each side."""
        return {**self.identity(), "pool": [p[0].name for p in self.pool], "test": [p[0].name for p in self.tests]}

    def link(self, out: Path, progress: bool) -> None:
        """The pool and test folders under OUT/data (symlinks; volume slices exported once), the test set read."""
        self.pool_dir, self.test_dir = split_dir(out, self.key, "pool"), split_dir(out, self.key, "test")
        if self.test_volumes:
            from ..data.volumes import export_slices

            for vols, d in ((self.train_volumes, self.pool_dir), (self.test_volumes, self.test_dir)):
                if not (d / "slices.csv").exists():  # exported once; the folder is ours
                    export_slices(vols, d, "any", progress)
            self.pool, self.tests = list_slice_folder(self.pool_dir), list_slice_folder(self.test_dir)
        else:
            link_folder(self.tests, self.test_dir)
            link_folder(self.pool, self.pool_dir)
        self.test_slices = read_slice_folder(self.test_dir)
        if not self.test_slices:
            raise InputError(f"no slices in {self.test_dir}")
        self.test_pos = [s.image for s in self.test_slices if (s.label == 2).any()]
        self.test_neg = [s.image for s in self.test_slices if not (s.label == 2).any()]
        self.test_neg += [read_image(p)[0] for p in self.normal_test]


def make_splits(data: Path, test: Path | None, normals: Path | None, cfg: ExperimentConfig) -> list[Split]:
    """Every repeat's split, decided before anything is written: its own seeded split per repeat (`--split
    per-repeat`), or one split for every repeat (`--test`, `--split fixed`, `--split task1`)."""
    fixed = test is not None or cfg.split != "per-repeat"
    if volume_root_kind(data):
        from ..data.volumes import read_volumes

        vols, test_vols = read_volumes(data), (read_volumes(test) if test is not None else None)
    out: list[Split] = []
    for r in range(1 if fixed else cfg.repeats):
        seed = cfg.split_seed(r)
        how = ("--test" if test is not None else f"Task-1 fold {cfg.fold}" if cfg.split == "task1"
               else f"random (seed {seed})")
        normal_pool, normal_test = split_normals(normals, seed) if normals else ([], [])
        if volume_root_kind(data):
            train_v, test_v = split_volumes(vols, test_vols, cfg, seed, data)
            out.append(Split("" if fixed else f"r{r}", how, [], [], normal_pool, normal_test, train_v, test_v))
            continue
        pool, tests = split(data, test, cfg, seed)
        if len(pool) < max(cfg.ks):
            raise InputError(f"{data}: {len(pool)} training slices are too few for k={max(cfg.ks)}")
        out.append(Split("" if fixed else f"r{r}", how, pool, tests, normal_pool, normal_test))
    return out * cfg.repeats if fixed else out


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


def teaching_candidates(pool: list[Pair], k: int) -> list[int]:
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
    the typical slices (`select` area, see `teaching_candidates`); seeded by (seed, repeat, k)."""
    rng = np.random.default_rng([cfg.seed, repeat, k])
    if cfg.select == "area":
        cand = teaching_candidates(pool, k)
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
