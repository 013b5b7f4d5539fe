"""Conditions for synthesis: real label maps with their bodies (sources), random chains of edits of
them, and the `cosingan masks` folder (labels/ + bodies/ + masks.csv)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .edits import edit_map, unknown_edits, user_edits, whole_map_edits
from .files import save_png, write_csv
from .labelmap import (INFECTION, body_from_image, body_from_label, check_label4, label4_to_label, lungs_from_image,
                       reframe, to_label4)
from .layout import body_file, is_slice_folder, label_folder, list_slice_folder, pair_paths, stem, volume_root_kind
from .readers import load_slice, read_label, read_mask

MASKS_CSV = "masks.csv"


@dataclass
class Source:
    """A condition source: a real map with its body (4-class map) and where it came from."""

    name: str
    label4: np.ndarray
    origin: str
    template: np.ndarray | None = None  # the annotated map a `relayout` imitates (None: this map's own)
    made_from: str | None = None  # the real map an edited map of a `cosingan masks` folder was made from
    image: np.ndarray | None = None  # the map's own image, where the source holds it (a run's training pair)

    @property
    def real(self) -> str:
        """The real map behind this one: itself, or the map an edited one was made from."""
        return self.made_from or self.origin


def sources_from_folder(root: str | Path) -> list[Source]:
    """Label maps of a slice folder (images/ + labels/; bodies from the images), or of a mask folder
    made by `cosingan masks` (labels/ + bodies/), or a bare labels/ folder (bodies estimated), or a
    COVID-19-CT-Seg root (see `sources_from_volumes`)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    if volume_root_kind(root):
        return sources_from_volumes(root)
    out = []
    if is_slice_folder(root):
        for ip, lp in list_slice_folder(root):
            sl = load_slice(ip, lp)
            out.append(Source(lp.stem, to_label4(sl.label, body_from_image(sl.image, sl.label)), str(lp)))
        return out
    lab_dir = label_folder(root)
    files = sorted(p for p in lab_dir.iterdir()
                   if p.suffix.lower() in (".png", ".npy", ".gz", ".nii") and not p.name.startswith("."))
    if not files:
        raise InputError(f"{root}: no label maps (expected labels/*.png)")
    made_from = _masks_sources(root) if lab_dir != root else {}
    for lp in files:
        lab = read_label(lp)
        bp = body_file(root, lp)
        body = read_mask(bp) if bp.exists() else body_from_label(lab)
        if body.shape != lab.shape:
            raise InputError(f"{bp}: body mask size {body.shape} does not match label map {lp} {lab.shape}")
        out.append(Source(lp.stem, to_label4(lab, body), str(lp), made_from=made_from.get(stem(lp))))
    return out


def sources_from_volumes(root: str | Path) -> list[Source]:
    """The label map of every slice with lungs of every volume of a COVID-19-CT-Seg root (bodies from the
    images), named VOLUME_zNNN, with origin LABEL_FILE#z=N. MosMedData is refused: its masks hold
    infection only, and a condition needs the lungs."""
    from .volumes import one_at_a_time, select_slices, slice_name, volumes_with_lungs

    out = []
    for v in one_at_a_time(volumes_with_lungs(root, "conditions need lung maps")):
        for sl in select_slices(v):
            out.append(Source(slice_name(v, sl), to_label4(sl.label, body_from_image(sl.image, sl.label)),
                              sl.label_origin))
    if not out:
        raise InputError(f"{root}: no slices with lungs in its volumes")
    return out


def sources_from_unlabelled(root: str | Path) -> list[Source]:
    """Lungs without annotation: the air/body/lung map (`lungs_from_image`) of every image of a folder of
    unannotated slices that show the whole body. A slice whose lungs are not found is refused with the
    reason (InputError naming the file), before anything is written."""
    from .layout import image_files
    from .readers import read_image

    out = []
    for p in image_files(root):
        try:
            out.append(Source(stem(p), lungs_from_image(read_image(p)[0]), str(p)))
        except ValueError as e:
            raise InputError(f"{p}: no lungs found automatically: {e}") from None
    return out


def with_lesions_of(lungs: list[Source], templates: list[Source]) -> list[Source]:
    """Every lung map once per annotated template, framed as the template is (`reframe`), whose lesions a
    `relayout` then imitates on those lungs (named LUNGS_TEMPLATE): k annotated maps and any number of
    unannotated slices give lungs of many people with the k maps' kind of lesions."""
    templates = [t for t in templates if (t.label4 == INFECTION).any()]
    if not templates:
        raise InputError("no annotated map with infection to take lesion layouts from")
    return [Source(f"{u.name}_{t.name}", reframe(u.label4, t.label4), u.origin, t.label4)
            for u in lungs for t in templates]


def _masks_sources(folder: Path) -> dict[str, str]:
    """Map name -> the real map it was made from, for a `cosingan masks` folder (else empty)."""
    import csv

    masks_csv = folder / MASKS_CSV
    if not masks_csv.exists():
        return {}
    with open(masks_csv, newline="") as f:
        return {r["name"]: r["source"] for r in csv.DictReader(f) if r.get("source")}


def masks_source(label_path: str | Path) -> Path | None:
    """The real label map an edited map of a `cosingan masks` folder was made from (None otherwise)."""
    label_path = Path(label_path)
    if label_path.parent.name != "labels":
        return None
    src = _masks_sources(label_path.parent.parent).get(stem(label_path))
    return Path(src) if src else None


def check_edits(edits: list[str]) -> None:
    bad = unknown_edits(edits)
    if bad:
        raise InputError(f"unknown edit(s) {bad}; choose from {', '.join(user_edits())}")


def make_condition(src: Source, edits: list[str], seed: int, negative: bool, min_lesion: int = 12,
                   tries: int = 8, always: tuple[str, ...] = ()) -> tuple[np.ndarray | None, list[str], dict[str, int]]:
    """Apply a random chain of edits to a source map (one or two of `edits`, then every edit of
    `always`, then `negative`). Returns (map or None, edits applied, rejects by reason). Deterministic
    for (source, edits, seed, negative, always)."""
    rng = np.random.default_rng(seed)
    rejects: dict[str, int] = {}
    if negative:  # lesion edits are moot when all infection goes: keep only whole-map edits
        edits = whole_map_edits(edits)
    for _ in range(tries):
        chain: list[str] = []
        if edits:
            k = int(rng.integers(1, min(2, len(edits)) + 1))
            chain = [str(e) for e in rng.choice(edits, size=k, replace=False)]
        chain += list(always)
        if negative:
            chain.append("negative")
        out = src.label4
        try:
            for e in chain:
                out = edit_map(out, e, rng, min_lesion, src.template)
        except ValueError as err:
            rejects[str(err)] = rejects.get(str(err), 0) + 1
            continue
        reason = check_label4(out, min_lesion)
        if reason is None:
            return out, chain, rejects
        rejects[reason] = rejects.get(reason, 0) + 1
    return None, [], rejects


MASK_NAME = re.compile(r"[^/\\]+_m\d{5}")  # what `write_masks` names a map: SOURCE_mNNNNN, never a path


def _remove_earlier(out: Path) -> None:
    """Maps of an earlier `masks` run into this folder (listed in its masks.csv) go before new ones are
    written: a re-run with other settings leaves no stale map behind. Only files this command writes are
    removed: a listed name that is not one of ours (an edited masks.csv naming ../../x, say) or that leads
    out of labels/ and bodies/ is left alone."""
    import csv

    listed = out / MASKS_CSV
    if not listed.exists():
        return
    with open(listed, newline="") as f:
        names = [r.get("name") or "" for r in csv.DictReader(f)]
    for name in names:
        if not MASK_NAME.fullmatch(name) or name.startswith("."):
            continue
        label_path = pair_paths(out, name)[1]
        for p in (label_path, body_file(out, label_path)):
            if p.is_file() and not p.is_symlink() and p.resolve().parent == p.parent.resolve() and \
                    p.parent.resolve().parent == out.resolve():
                p.unlink()
    listed.unlink()


def write_masks(sources: list[Source], out: Path, n: int, edits: list[str], negatives: float, seed: int,
                progress: bool = True, always: tuple[str, ...] = ()) -> dict:
    """`cosingan masks`: n edited maps (labels/ 0/1/2 PNG + bodies/ PNG) and masks.csv."""
    from tqdm.auto import tqdm

    check_edits(list(edits) + list(always))
    _remove_earlier(out)
    rows, rejected, made = [], Counter(), 0
    n_neg = int(round(n * negatives))
    for i in tqdm(range(n), desc="masks", disable=not progress, dynamic_ncols=True):
        src = sources[i % len(sources)]
        negative = i < n_neg
        lab4, chain, rej = make_condition(src, edits, seed * 1_000_003 + i, negative, always=always)
        rejected.update(rej)
        if lab4 is None:
            continue
        name = f"{src.name}_m{i:05d}"
        label_path = pair_paths(out, name)[1]
        save_png(label4_to_label(lab4), label_path)
        save_png(((lab4 > 0) * 255).astype(np.uint8), body_file(out, label_path))
        rows.append({"name": name, "source": src.origin, "edits": "+".join(chain), "seed": seed * 1_000_003 + i})
        made += 1
    write_csv(out / MASKS_CSV, ["name", "source", "edits", "seed"], rows)
    return {"made": made, "asked": n, "rejected": rejected}
