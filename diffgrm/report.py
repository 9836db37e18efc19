"""``diffgrm report``: one user's recommendation as a single HTML file that opens offline.

Everything the explorer shows for a user, frozen: the history, the Top-K, the denoising strip, the
per-digit confidence heatmap and the "why not?" panel for the held-out item (and any items asked
for). plotly.js is inlined once, so the file needs no server and no network: send it by mail,
attach it to a ticket, open it on a plane.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from diffgrm import __version__, viz
from diffgrm.explorer import Explorer
from diffgrm.safeio import write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } tr.hit td { background: #fff1e6; font-weight: 600; }
.cols { display: flex; gap: 2rem; flex-wrap: wrap; } .cols > div { flex: 1 1 480px; }
.note { color: #555; font-size: 0.9rem; } code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def build_report(ex: Explorer, user: str, *, beam: int = 32, k: int = 10, order: str = "confidence",
                 items: Sequence[int] = ()) -> str:
    """The HTML text of the report (see the module docstring)."""
    case = ex.user(user)
    order = order if ex.denoises else "confidence"
    rec = ex.recommend(case.history, beam=beam, k=k, order=order, target=case.target)
    hit = bool(rec.table["hit"].any()) if len(rec.table) else False
    figures: list[tuple[str, go.Figure]] = [
        ("Denoising, step by step", viz.denoising_strip(rec.trace, beams=min(8, len(rec.table)), titles=ex.titles)),
        ("Per-digit confidence along the best beam", viz.confidence_heatmap(rec.trace, beam=0)),
    ]
    whys = []
    for item in dict.fromkeys([case.target, *(int(i) for i in items)]):
        why = ex.why_not(case.history, rec, item)
        label = "the held-out next item" if item == case.target else f"item {item}"
        whys.append((item, why))
        figures.append((f"Why not {label}? {ex.titles[item]}", viz.why_not_figure(why)))

    parts = [f"<h1>User {html.escape(case.user)}: what comes next?</h1>",
             f"<p class='note'>run <code>{html.escape(str(ex.run))}</code> · {ex.kind} · "
             f"{html.escape(str(ex.prepared.report['dataset']))} · {ex.prepared.n_items:,} items · beam {beam}, "
             f"Top-{k}, {html.escape(order if ex.denoises else 'left-to-right')} order · diffgrm {__version__}</p>",
             "<div class='cols'><div>",
             f"<h2>History ({len(case.history)} items, most recent first)</h2>", html_table(ex.history_table(case.history)),
             f"<p><b>Held-out next item:</b> {html.escape(ex.titles[case.target])} "
             f"({'hit: in the Top-' + str(k) if hit else 'not in the Top-' + str(k)})</p>",
             "</div><div>", f"<h2>Top-{k}</h2>",
             html_table(rec.table[["rank", "title", "sid", "probability"]], hits=rec.table["hit"].tolist()),
             "</div></div>"]
    for item, why in whys:
        parts.append(f"<p><b>{html.escape(ex.titles[item])}</b> (SID <code>{viz.sid_text(ex.codes[item])}</code>): "
                     f"{html.escape(why.message)}.</p>")
    for i, (title, fig) in enumerate(figures):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>diffgrm: user "
            f"{html.escape(case.user)}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(run: str | Path, user: str, out: str | Path, data: str | Path | None = None, **kwargs) -> Path:
    """Build the report of ``user`` in ``run`` (its users read from ``data`` when given) and write it
    to ``out`` (atomically)."""
    text = build_report(Explorer(run, data=data), user, **kwargs)
    return write_text(out, text)


def html_table(frame: pd.DataFrame, hits: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for j, row in enumerate(frame.itertuples(index=False)):
        cells = "".join(f"<td>{html.escape(f'{v:.4f}' if isinstance(v, float) else str(v))}</td>" for v in row)
        rows.append(f"<tr class='hit'>{cells}</tr>" if j < len(hits) and hits[j] else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
