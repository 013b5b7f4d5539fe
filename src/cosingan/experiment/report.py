"""The experiment's report. `sections()` turns the record (results.json) into a list of sections
(paragraphs, tables, figures with captions and alt text); one writer per format renders the same
sections: report.md (figures as files beside it) and report.html (self-contained: figures embedded,
so it opens from an email attachment). To add a section, add a function to `SECTIONS`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.files import save_figure, write_text
from ..downstream.metrics import EMPTY_POLICY, NSD_DEFINITION, REGION_DEFINITION, SEG_METRICS
from ..downstream.seg import MIN_SLICES_TO_HOLD_OUT
from .arms import ARMS
from .config import CHECKPOINTS, REGIMES
from .table import COLUMNS


@dataclass
class Table:
    heads: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: str  # relative to the experiment folder
    caption: str
    alt: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ cells

def _columns(rows: list[dict]) -> list[str]:
    return [m for m in COLUMNS if any(m in r for r in rows)]


def _cells(r: dict, cols: list[str]) -> list[str]:
    def fmt(m: str) -> str:
        if m not in r or r[m] is None:
            return "-"
        return f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if r["n"] > 1 else f"{r[m]:.3f}"

    return [str(r["k"] or "all"), ARMS[r["arm"]].title, r["regime"] or "-"] + [fmt(m) for m in cols]


def _heads(cols: list[str]) -> list[str]:
    return ["k", "arm", "conditions"] + [COLUMNS[m] for m in cols]


def _paired_cells(r: dict) -> list[str]:
    out = [str(r["k"]), ARMS[r["arm"]].title, r["regime"] or "-", str(r["n"])]
    for m in SEG_METRICS:
        if m + "_diff" not in r:
            out += ["-", "-"]
            continue
        lo, hi = r[m + "_ci"]
        ci = f" [{lo:+.3f}, {hi:+.3f}]" if r["n"] > 1 and lo is not None else ""
        closure = r.get(m + "_closure")
        out += [f"{r[m + '_diff']:+.3f}{ci}", f"{closure:.2f}" if closure is not None else "-"]
    return out


def _quality_cells(q: dict) -> list[str]:
    from ..synth.quality import COLUMNS as Q, cell

    return [str(q["repeat"]), str(q["k"]), q["slice"]] + [cell(q, m) for m in Q]


# --------------------------------------------------------------------------------------- sections

def _intro(out: Path, record: dict) -> Section:
    c = record["config"]
    arms = "; ".join(a.title for a in ARMS.values() if a.key != "M" or c.get("mixed"))
    regimes = "; ".join(f"{k}: {REGIMES[k]}" for k in c["regimes"])
    return Section("What was compared", [
        f"Arms ({arms}) train the same U-Net with the same budget ({c['seg_steps']} steps at {c['seg_size']} px, "
        + ("learning rate decayed to 0 (poly)" if c.get("seg_schedule") == "poly" else "constant learning rate") + "; "
        + ("each keeps its last step" if c.get("seg_checkpoint") == "last" else
           f"each keeps the step that scores best on {round(CHECKPOINTS['best'] * 100)} % of its training slices, held out, "
           f"or its last step with under {MIN_SLICES_TO_HOLD_OUT} slices") + ") "
        "and are scored on the same real test slices. A trains on synthetic slices from "
        + ("one few-shot CoSinGAN shared by the k real slices" if c.get("shared_generator") else
           "one CoSinGAN per real slice") + f" ({c.get('synth_aug', 'standard')} augmentation); B on the k "
        "real slices with strong augmentation; C on all real pool slices "
        f"({c.get('real_aug', 'standard')} augmentation)"
        + ("; M on A's synthetic set (first regime) plus the k real slices." if c.get("mixed") else ".")
        + f" Condition regimes of the synthetic arms: {regimes}.",
        _split_text(record) + f"; repeats: {c['repeats']} (each a new draw of the k slices and new seeds); CoSinGAN "
        f"preset: {c['preset']}"
        + (f" with {json.dumps(c['gan_config'])}" if c.get("gan_config") else "") + "; "
        f"{c['n_synth']} synthetic pairs per set"
        + (f" ({c['consolidation']:.0%} with part of the infection made dense)" if c.get("consolidation") else "")
        + f"; classifier budget: {c['cls_steps']} steps.",
    ])


def _split_text(record: dict) -> str:
    """How the data was split: one split per repeat (the repeats are scored on different test sets) or one
    for every repeat."""
    sp = record["splits"]
    sizes = "/".join(dict.fromkeys(f"{len(s['pool'])} / {len(s['test'])}" for s in sp))
    if len({s["key"] for s in sp}) > 1:
        return (f"Training pool / test slices: {sizes}, each repeat its own random split of the data (seeded), so "
                "the repeats are scored on different test sets")
    return f"Training pool / test slices: {sizes}, one split for every repeat ({sp[0]['how']})"


def _headline(out: Path, record: dict) -> Section:
    lines = []
    for r in record.get("paired", []):
        parts = [f"{COLUMNS[m]} {r[m + '_closure']:.2f}" for m in SEG_METRICS if r.get(m + "_closure") is not None]
        if parts:
            diff = ""
            if "infection_dsc_diff" in r:
                lo, hi = r["infection_dsc_ci"]
                diff = f"; infection DSC arm - B {r['infection_dsc_diff']:+.3f}" + (
                    f" [{lo:+.3f}, {hi:+.3f}]" if r["n"] > 1 and lo is not None and not math.isnan(lo) else "")
            lines.append(f"k = {r['k']}, {ARMS[r['arm']].title}, {r['regime']}: gap closure (arm - B) / (C - B) "
                         + ", ".join(parts) + diff + f" (n = {r['n']}; closure 1 = as good as all real data, "
                         "0 = no better than B; the interval is the paired 95 % t-interval over repeats).")
    return Section("Headline", lines or ["No synthetic arm to compare."])


def _results(out: Path, record: dict) -> Section:
    rows = record["table"]
    cols = _columns(rows)
    s = Section("Results", ["Mean ± sd over repeats (one value when there is one repeat)."],
                [Table(_heads(cols), [_cells(r, cols) for r in rows])])
    if (out / "metrics.png").exists():
        s.figures.append(Figure("metrics.png", "Segmentation on the real test slices, mean over repeats; error bars: "
                                "sd over repeats.", "Bar charts of lung DSC, lung NSD, infection DSC and "
                                "infection NSD for every arm and condition regime."))
    return s


def _paired(out: Path, record: dict) -> Section | None:
    if not record.get("paired"):
        return None
    heads = ["k", "arm", "conditions", "n"] + [f"{COLUMNS[m]} {w}" for m in SEG_METRICS for w in ("diff", "closure")]
    return Section("Paired differences", [
        "Against arm B (same repeat, same k slices): mean difference [95 % t-interval over repeats], and the "
        "gap closure (arm - B) / (C - B) of the means."], [Table(heads, [_paired_cells(r) for r in record["paired"]])])


def _detection(out: Path, record: dict) -> Section:
    s = Section("Detection", [f"{record.get('detection', 'not run')}."])
    if record.get("normals", {}).get("folder"):
        s.text.append("Caution: the test negatives come from the --normals folder; an arm trained with real normals "
                      "from that same folder can learn to tell the two sources apart (scanner, windowing, "
                      "compression) instead of infection, so read B's and C's detection scores as upper bounds; "
                      "arm A never sees that folder.")
    if (out / "roc.png").exists():
        s.figures.append(Figure("roc.png", "ROC curves of every arm's classifier on the test slices (+ test normals).",
                                "ROC curves, one line per arm, with their AUC in the legend."))
    if record.get("patch_detection"):
        s.text.append(f"Same-source detection (columns 'patch AUC', 'patch accuracy'): {record['patch_detection']}. "
                      "Positives and negatives come from the same slices, so the score measures infection, not "
                      "the scanner; every arm's classifier is trained on patches of its own training set with "
                      "the same budget.")
    if (out / "roc_patch.png").exists():
        s.figures.append(Figure("roc_patch.png", "ROC curves of every arm's patch classifier on the test patches.",
                                "ROC curves of the same-source patch detection, one line per arm, with their AUC."))
    return s


def _fidelity(out: Path, record: dict) -> Section | None:
    if not record.get("fidelity"):
        return None
    num = lambda v: "-" if v is None or math.isnan(v) else f"{v:.3f}"  # noqa: E731  (null: no map with infection)

    def ratio(f: dict) -> str:
        syn, real = f.get("infection_dsc_lesions"), f.get("real_infection_dsc_lesions")
        ok = syn is not None and real is not None and not math.isnan(syn) and not math.isnan(real) and real > 0
        return f"{syn / real:.2f}" if ok else "-"

    return Section("Condition fidelity", [
        "A reference U-Net judges whether synthetic images show what their label maps say: it trains on the "
        "repeat's real test slices (arm C's recipe and budget; no arm trains on them and it is never scored on "
        "them), so it never saw a map it scores, since every synthetic set is made from the pool's maps, the k "
        "slices' or unannotated slices'. Its DSC on the synthetic images against their own maps (infection "
        "over every map, and over the maps with infection only: on an infection-free map any false-positive "
        "speck scores 0), beside its DSC on the real pool slices (what images as faithful as real CT score), "
        "and the ratio of the two for infection on maps with infection."],
        [Table(["repeat", "k", "conditions", "lung DSC", "infection DSC", "infection DSC, maps with infection",
                "lung DSC on real pool", "infection DSC on real pool (with infection)", "infection, relative to real"],
               [[str(f["repeat"]), str(f["k"]), f["regime"], num(f["lung_dsc"]), num(f["infection_dsc"]),
                 num(f.get("infection_dsc_lesions")), num(f.get("real_lung_dsc")),
                 num(f.get("real_infection_dsc_lesions")), ratio(f)] for f in record["fidelity"]])])


def _quality(out: Path, record: dict) -> Section | None:
    if not record.get("quality"):
        return None
    from ..synth.quality import COLUMNS as Q

    return Section("Generator quality", [
        "`cosingan quality` on the test slices' maps, arm C's U-Net as the reference segmenter: condition fidelity "
        "DSC, realism AUC of a real-vs-synthetic classifier (0.5 = indistinguishable; beside it the same test on "
        "deformed copies of the generator's training slice, what a perfect copy of one slice scores), grey-level "
        "Wasserstein distances to the real images per region, and diversity between two samples of one map."],
        [Table(["repeat", "k", "slice"] + list(Q.values()), [_quality_cells(q) for q in record["quality"]])])


def _samples(out: Path, record: dict) -> Section | None:
    from ..synth.dataset import coverage_text

    figs = []
    for g in sorted((out / "synthetic").glob("*/grid.png")):
        name = g.parent.name
        cov = record.get("coverage", {}).get(name)
        figs.append(Figure(str(g.relative_to(out)), f"Synthetic set {name}: real source slice | condition | "
                           "synthetic slice, two pairs per row, spread over the set"
                           + (f"; {coverage_text(cov)}." if cov else "."),
                           f"Grid of real source slices, label maps and synthetic slices of set {name}."))
    return Section("Samples", [], [], figs) if figs else None


def _cases(out: Path, record: dict) -> Section | None:
    names = sorted({p.parent.name for p in (out / "eval").glob("r0_*/cases.png")})  # slice panels (2-D only)
    csvs = sorted(p.parent.name for p in (out / "eval").glob("*/cases.csv"))
    if not csvs:
        return None
    unit = "volume" if record["splits"][0].get("volumes") else "slice"
    s = Section("Per case", [f"Per-{unit} scores of every arm: " + ", ".join(f"eval/{n}/cases.csv" for n in csvs) + "."])
    for n in names:
        s.figures.append(Figure(f"eval/{n}/cases.png", f"{n}: the three worst and three best test slices by "
                                "infection DSC: image | truth | prediction (blue lung, red infection).",
                                f"Worst and best test slices of {n} with truth and prediction overlays."))
    return s


def _definitions(out: Path, record: dict) -> Section:
    c = record["config"]
    excluded: dict[str, int] = {}
    for r in record["results"]:
        for region, n in (r.get("excluded") or {}).items():
            excluded[region] = max(excluded.get(region, 0), n)
    if record["splits"][0].get("volumes"):
        n = "/".join(dict.fromkeys(str(len(s["volumes"]["test"])) for s in record["splits"]))
        cases = (f"DSC and NSD per 3-D test volume (every slice predicted by the 2-D network, stacked), with the "
                 f"voxel spacing, then the mean over volumes ({n} test volumes)")
    else:
        cases = (f"DSC and NSD per 2-D test slice, then the mean over slices; pixel spacing "
                 f"{c.get('spacing_mm', 1.0):g} mm per original pixel where the files carry none")
    return Section("Metric definitions", [
        f"{cases}; regions: {REGION_DEFINITION}; {NSD_DEFINITION}; empty masks: {EMPTY_POLICY}. "
        "Left out (most in any arm): "
        + (", ".join(f"{k} {n}" for k, n in excluded.items()) if excluded else "none") + ".",
        "Detection: AUC of the classifier's score, accuracy, sensitivity and specificity at threshold 0.5."])


def _settings(out: Path, record: dict) -> Section:
    return Section("Settings, timings, versions", [
        "Chosen slices: " + "; ".join(f"repeat {x['repeat']} k={x['k']}: {', '.join(x['slices'])}" for x in record["runs"]),
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in record["timings_s"].items())
        + (f"; wall time of this invocation {record['wall_s']:.0f}" if "wall_s" in record else ""),
        "Settings: " + json.dumps(record["config"]),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()),
    ])


SECTIONS = [_intro, _headline, _results, _paired, _detection, _fidelity, _quality, _samples, _cases, _definitions,
            _settings]


def sections(out: Path, record: dict) -> list[Section]:
    return [s for f in SECTIONS if (s := f(out, record)) is not None]


# ---------------------------------------------------------------------------------------- figures

def write_plots(out: Path, record: dict) -> None:
    """metrics.png (all four segmentation metrics with error bars), infection_dsc.png, and roc.png (every
    arm's ROC curve, when detection ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["table"]
    labels = [f"{r['arm']}{'' if not r['regime'] else '/' + r['regime']} k={r['k'] or 'all'}" for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=True)
    for ax, m in zip(axes, SEG_METRICS):
        ax.bar(range(len(rows)), [r.get(m) or 0 for r in rows], yerr=[r.get(m + "_std") or 0 for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=40, ha="right", fontsize=7)
        ax.set_title(COLUMNS[m], fontsize=9)
    axes[0].set_ylabel("test score")
    fig.tight_layout()
    save_figure(fig, out / "metrics.png")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(rows)), [r.get("infection_dsc") or 0 for r in rows],
           yerr=[r.get("infection_dsc_std") or 0 for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("infection DSC (test)")
    fig.tight_layout()
    save_figure(fig, out / "infection_dsc.png")
    _roc_figure(sorted((out / "eval_cls").glob("*/scores.json")), out / "roc.png")
    _roc_figure(sorted((out / "eval_patch").glob("*/scores.json")), out / "roc_patch.png")


def _roc_figure(curves: list[Path], path: Path) -> None:
    """One ROC line per arm's scores.json (nothing when there are none)."""
    if not curves:
        return
    import matplotlib.pyplot as plt

    from ..downstream.cls import roc_curve
    from ..downstream.metrics import detection_metrics

    fig, ax = plt.subplots(figsize=(5, 5))
    for c in curves:
        d = json.loads(c.read_text())
        p, y = np.array(d["score"]), np.array(d["target"])
        fpr, tpr = roc_curve(p, y)
        ax.plot(fpr, tpr, lw=1.2, label=f"{c.parent.name} (AUC {detection_metrics(p, y)['auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right", fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------- writers

def write_markdown(out: Path, secs: list[Section]) -> None:
    lines = ["# Few-shot experiment", ""]
    for s in secs:
        lines += [f"## {s.title}", ""]
        for p in s.text:
            lines += [p, ""]
        for t in s.tables:
            lines += ["| " + " | ".join(t.heads) + " |", "|" + " --- |" * len(t.heads)]
            lines += ["| " + " | ".join(r) + " |" for r in t.rows]
            lines.append("")
        for f in s.figures:
            lines += [f"![{f.alt}]({f.path})", "", f"*{f.caption}*", ""]
    write_text(out / "report.md", "\n".join(lines))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_html(out: Path, secs: list[Section]) -> None:
    e = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>cosingan few-shot experiment</title>"
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #aaa;padding:3px 6px}"
             "figure{margin:1em 0}img{max-width:100%}figcaption{font-style:italic;font-size:90%}</style></head>"
             "<body><h1>Few-shot experiment</h1>"]
    for s in secs:
        parts.append(f"<h2>{e(s.title)}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in s.text]
        for t in s.tables:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.heads) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows)
                         + "</table>")
        for f in s.figures:
            parts.append(f"<figure><img src='{_data_uri(out / f.path)}' alt='{e(f.alt)}'>"
                         f"<figcaption>{e(f.caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    write_text(out / "report.html", "".join(parts))


def write_report(out: Path, record: dict) -> None:
    write_plots(out, record)
    secs = sections(out, record)
    write_markdown(out, secs)
    write_html(out, secs)
