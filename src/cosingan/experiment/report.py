"""The experiment's report, one writer per format: report.md, infection_dsc.png and report.html, all
from the same record (results.json) and the same table cells."""

from __future__ import annotations

import html
from pathlib import Path

from ..data.files import save_figure, write_text
from ..downstream.metrics import EMPTY_POLICY, NSD_DEFINITION
from .arms import ARMS
from .table import COLUMNS


def _columns(rows: list[dict]) -> list[str]:
    return [m for m in COLUMNS if any(m in r for r in rows)]


def _cells(r: dict, cols: list[str]) -> list[str]:
    def fmt(m: str) -> str:
        if m not in r:
            return "-"
        return f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if r["n"] > 1 else f"{r[m]:.3f}"

    return [str(r["k"] or "all"), ARMS[r["arm"]].title, r["regime"] or "-"] + [fmt(m) for m in cols]


def _heads(cols: list[str]) -> list[str]:
    return ["k", "arm", "conditions"] + [COLUMNS[m] for m in cols]


def _paragraphs(record: dict) -> list[str]:
    """The text of the report (settings, detection caveat, timings, chosen slices), one string each."""
    c = record["config"]
    detection = f"Detection: {record.get('detection', 'not run')}." + (
        " Caution: the test negatives come from the --normals folder; an arm trained with real "
        "normals from that same folder can learn to tell the two sources apart (scanner, "
        "windowing, compression) instead of infection, so read B's and C's detection scores "
        "as upper bounds; arm A never sees that folder." if record.get("normals", {}).get("folder") else "")
    excluded: dict[str, int] = {}
    for r in record["results"]:
        for region, n in r.get("excluded", {}).items():
            excluded[region] = max(excluded.get(region, 0), n)
    metrics = (f"Metrics: DSC and NSD per 2-D test slice, then the mean over slices; {NSD_DEFINITION}; pixel "
               f"spacing {c.get('spacing_mm', 1.0):g} mm per original pixel where the files carry none; empty "
               f"masks: {EMPTY_POLICY}. Left out (most in any arm): "
               + (", ".join(f"{k} {v}" for k, v in excluded.items()) if excluded else "none") + ".")
    return [
        f"Training pool: {len(record['pool'])} slices; test: {len(record['test_slices'])} slices; "
        f"repeats: {c['repeats']}; preset: {c['preset']}; U-Net budget: {c['seg_steps']} steps at "
        f"{c['seg_size']} px; classifier budget: {c['cls_steps']} steps.",
        detection,
        metrics,
    ]


def _footer(record: dict) -> list[str]:
    return [
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in record["timings_s"].items())
        + (f"; wall time of this invocation {record['wall_s']:.0f}" if "wall_s" in record else ""),
        "Chosen slices: " + "; ".join(f"repeat {x['repeat']} k={x['k']}: {', '.join(x['slices'])}"
                                      for x in record["runs"]),
    ]


PAIRED_METRICS = ("lung_dsc", "lung_nsd", "infection_dsc", "infection_nsd")
PAIRED_TEXT = ("Paired differences against arm B (same repeat, same k slices): mean [95 % t-interval over "
               "repeats], and the gap closure (arm - B) / (C - B) of the means.")


def _paired_heads(rows: list[dict]) -> list[str]:
    ms = [m for m in PAIRED_METRICS if any(m + "_diff" in r for r in rows)]
    return ["k", "arm", "conditions", "n"] + [f"{COLUMNS[m]} {w}" for m in ms for w in ("diff", "closure")]


def _paired_cells(r: dict) -> list[str]:
    out = [str(r["k"]), ARMS[r["arm"]].title, r["regime"] or "-", str(r["n"])]
    for m in PAIRED_METRICS:
        if m + "_diff" not in r:
            continue
        lo, hi = r[m + "_ci"]
        ci = f" [{lo:+.3f}, {hi:+.3f}]" if r["n"] > 1 else ""
        out += [f"{r[m + '_diff']:+.3f}{ci}", f"{r[m + '_closure']:.2f}" if m + "_closure" in r else "-"]
    return out


QUALITY_TEXT = ("Generator quality (`cosingan quality` on the test slices' maps, arm C's U-Net as the "
                "reference segmenter): condition fidelity DSC, realism AUC of a real-vs-synthetic classifier "
                "(0.5 = indistinguishable), grey-level Wasserstein distances to the real images per region, and "
                "diversity between two samples of one map.")


def _quality_heads() -> list[str]:
    from ..synth.quality import COLUMNS as Q

    return ["repeat", "k", "slice"] + list(Q.values())


def _quality_cells(q: dict) -> list[str]:
    from ..synth.quality import COLUMNS as Q

    return [str(q["repeat"]), str(q["k"]), q["slice"]] + [
        f"{q[m]:.3f}" if m.startswith(("fid", "real")) else f"{q[m]:.1f}" for m in Q]


FIDELITY_TEXT = ("Condition fidelity: DSC of the all-real U-Net (arm C) on synthetic images against "
                 "the label maps they were generated from.")
FIDELITY_HEADS = ["repeat", "k", "conditions", "lung DSC", "infection DSC"]


def _fidelity_cells(f: dict) -> list[str]:
    return [str(f["repeat"]), str(f["k"]), f["regime"], f"{f['lung_dsc']:.3f}", f"{f['infection_dsc']:.3f}"]


def _figures(out: Path) -> list[Path]:
    return sorted((out / "synthetic").glob("*/grid.png")) + sorted((out / "eval_cls").glob("*/roc.png"))


def write_markdown(out: Path, record: dict) -> None:
    rows = record["table"]
    cols = _columns(rows)
    heads = _heads(cols)
    lines = ["# Few-shot experiment", ""]
    for p in _paragraphs(record):
        lines += [p, ""]
    lines += ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    lines += ["| " + " | ".join(_cells(r, cols)) + " |" for r in rows]
    if record.get("paired"):
        ph = _paired_heads(record["paired"])
        lines += ["", PAIRED_TEXT, "", "| " + " | ".join(ph) + " |", "|" + " --- |" * len(ph)]
        lines += ["| " + " | ".join(_paired_cells(r)) + " |" for r in record["paired"]]
    if record.get("fidelity"):
        lines += ["", FIDELITY_TEXT, "", "| " + " | ".join(FIDELITY_HEADS) + " |", "|" + " --- |" * len(FIDELITY_HEADS)]
        lines += ["| " + " | ".join(_fidelity_cells(f)) + " |" for f in record["fidelity"]]
    if record.get("quality"):
        qh = _quality_heads()
        lines += ["", QUALITY_TEXT, "", "| " + " | ".join(qh) + " |", "|" + " --- |" * len(qh)]
        lines += ["| " + " | ".join(_quality_cells(q)) + " |" for q in record["quality"]]
    lines.append("")
    for p in _footer(record):
        lines += [p, ""]
    lines += ["![infection DSC](infection_dsc.png)", ""]
    lines += [f"![{g.parent.name}]({g.relative_to(out)})" for g in _figures(out)]
    write_text(out / "report.md", "\n".join(lines) + "\n")


def write_plot(out: Path, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["table"]
    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"{r['arm']}{'' if not r['regime'] else '/' + r['regime']} k={r['k'] or 'all'}" for r in rows]
    ax.bar(range(len(rows)), [r["infection_dsc"] for r in rows], yerr=[r["infection_dsc_std"] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("infection DSC (test)")
    fig.tight_layout()
    save_figure(fig, out / "infection_dsc.png")


def _html_table(heads: list[str], rows: list[list[str]]) -> str:
    return ("<table border=1 cellpadding=4><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            + "</table>")


def write_html(out: Path, record: dict) -> None:
    rows = record["table"]
    cols = _columns(rows)
    text = _paragraphs(record) + ([FIDELITY_TEXT] if record.get("fidelity") else []) + _footer(record)
    imgs = ["infection_dsc.png"] + [str(g.relative_to(out)) for g in _figures(out)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>cosingan few-shot</title></head><body>"
            "<h1>Few-shot experiment</h1>" + "".join(f"<p>{html.escape(t)}</p>" for t in text)
            + _html_table(_heads(cols), [_cells(r, cols) for r in rows])
            + (f"<h2>Paired differences</h2><p>{html.escape(PAIRED_TEXT)}</p>"
               + _html_table(_paired_heads(record["paired"]), [_paired_cells(r) for r in record["paired"]])
               if record.get("paired") else "")
            + ("<h2>Condition fidelity</h2>" + _html_table(FIDELITY_HEADS, [_fidelity_cells(f) for f in record["fidelity"]])
               if record.get("fidelity") else "")
            + (f"<h2>Generator quality</h2><p>{html.escape(QUALITY_TEXT)}</p>"
               + _html_table(_quality_heads(), [_quality_cells(q) for q in record["quality"]])
               if record.get("quality") else "")
            + "".join(f"<p><img src='{html.escape(i)}' style='max-width:100%'></p>" for i in imgs)
            + "</body></html>\n")
    write_text(out / "report.html", page)


def write_report(out: Path, record: dict) -> None:
    write_markdown(out, record)
    write_plot(out, record)
    write_html(out, record)
