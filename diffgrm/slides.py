"""``diffgrm report RUN --user U --slides``: one user's decoding as a slide deck in one HTML file.

For a class or a meeting room: one ``<section>`` per slide, each the height of the screen, in large
type: who the user is and what they watched, the fully masked SID, every denoising step, the Top-K,
and why the held-out item was (not) found. Arrow keys, space or Page Down move between slides; the
file needs no server and no network (plotly.js is inlined once).
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from diffgrm import __version__, viz
from diffgrm.explorer import Explorer
from diffgrm.report import html_table
from diffgrm.safeio import write_text

STYLE = """
html { scroll-snap-type: y mandatory; } body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #1d1d1d; }
section { box-sizing: border-box; height: 100vh; padding: 4vh 5vw; scroll-snap-align: start; overflow: hidden;
  border-bottom: 1px solid #eee; display: flex; flex-direction: column; }
h1 { font-size: 3rem; margin: 20vh 0 1rem; } h2 { font-size: 2.2rem; margin: 0 0 1.5vh; }
p { font-size: 1.5rem; line-height: 1.4; margin: 0.6rem 0; } .small { font-size: 1.1rem; color: #555; }
table { border-collapse: collapse; font-size: 1.35rem; } td, th { padding: 0.3rem 0.9rem; border-bottom: 1px solid #e5e5e5; }
th { text-align: left; background: #f4f4f4; } tr.hit td { background: #ffe9d6; font-weight: 700; }
code { background: #f1f1f1; padding: 0 0.3rem; } .figure { flex: 1; min-height: 0; }
.count { position: fixed; right: 1.2rem; bottom: 0.8rem; color: #888; font-size: 1rem; }
"""
SCRIPT = """
const slides = [...document.querySelectorAll('section')];
const current = () => slides.findIndex(s => s.getBoundingClientRect().top >= -5);
document.addEventListener('keydown', e => {
  const step = {ArrowRight: 1, ArrowDown: 1, ' ': 1, PageDown: 1, ArrowLeft: -1, ArrowUp: -1, PageUp: -1}[e.key];
  if (step === undefined) return;
  e.preventDefault();
  const i = Math.min(slides.length - 1, Math.max(0, current() + step));
  slides[i].scrollIntoView();
});
document.addEventListener('scroll', () => {
  document.querySelector('.count').textContent = (current() + 1) + ' / ' + slides.length;
});
"""
FIGURE_HEIGHT = 560


def build_deck(ex: Explorer, user: str, *, beam: int = 32, k: int = 10, order: str = "confidence") -> str:
    """The deck's HTML (see the module docstring)."""
    case = ex.user(user)
    order = order if ex.denoises else "confidence"
    rec = ex.recommend(case.history, beam=beam, k=k, order=order, target=case.target, exclude_seen=True)
    trace, n = rec.trace, rec.trace.n_steps
    beams = min(8, len(rec.table))
    words = ex.code_words()
    first_figure = True  # plotly.js is inlined with the first figure only

    def figure(fig: go.Figure) -> str:
        nonlocal first_figure
        fig.update_layout(height=FIGURE_HEIGHT, font={"size": 16})
        out = fig.to_html(full_html=False, include_plotlyjs=first_figure, config={"displaylogo": False, "responsive": True})
        first_figure = False
        return f"<div class='figure'>{out}</div>"

    hit = bool(rec.table["hit"].any()) if len(rec.table) else False
    decoder = f"{ex.label or 'DiffGRM'}, surest digits first" if ex.denoises else "the AR decoder, left to right"
    slides = [
        ("", f"<h1>User {html.escape(case.user)}: what comes next?</h1>"
             f"<p>{html.escape(decoder)} · {html.escape(str(ex.prepared.report['dataset']))} · {ex.prepared.n_items:,} items, each "
             f"named by a SID of {ex.n_digits} digits x {ex.prepared.catalogue.codebook_size} codes</p>"
             f"<p class='small'>run <code>{html.escape(str(ex.run))}</code> · beam {beam}, Top-{k} · diffgrm "
             f"{__version__} · arrow keys or space to move</p>"),
        (f"What user {case.user} watched (newest first)",
         html_table(ex.history_table(case.history)[["title", "sid"]].head(12))
         + f"<p>The next item, held out: <b>{html.escape(ex.titles[case.target])}</b> "
           f"(SID <code>{viz.sid_text(ex.codes[case.target])}</code>)</p>"),
        (f"Step 0 of {n}: every digit masked",
         "<p>The decoder has read the history and starts from a fully masked SID; each row is one of the final "
         "recommendations, followed back to the start.</p>"
         + figure(viz.denoising_strip(trace, beams=beams, titles=ex.titles, initial_step=viz.START, player=False,
                                      code_words=words))),
    ]
    path = trace.lineage(0)
    for s in range(n):
        d, c, p = int(trace.digit[s, path[s]]), int(trace.code[s, path[s]]), float(trace.prob[s, path[s]])
        named = f"{c} ({', '.join(words[d][c])})" if words[d][c] else str(c)
        slides.append((f"Step {s + 1} of {n}: digit {d} = code {named}",
                       f"<p>The best beam fills digit {d} with probability {p:.2f}; {n - s - 1} digit(s) still "
                       "masked.</p>"
                       + figure(viz.denoising_strip(trace, beams=beams, titles=ex.titles, initial_step=s,
                                                    player=False, code_words=words))))
    slides.append((f"The Top-{k}", html_table(rec.table[["rank", "title", "sid"]], hits=rec.table["hit"].tolist())
                   + f"<p>The held-out item is {'in' if hit else 'not in'} the list.</p>"))
    why = ex.why_not(case.history, rec, case.target)
    slides.append((f"Why {'' if hit else 'not '}{ex.titles[case.target]}?",
                   f"<p>{html.escape(why.message)}.</p>" + figure(viz.why_not_figure(why, message=False))))
    body = "\n".join(f"<section id='slide-{i + 1}'>" + (f"<h2>{html.escape(title)}</h2>" if title else "") + content
                     + "</section>" for i, (title, content) in enumerate(slides))
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>diffgrm: user "
            f"{html.escape(case.user)}</title><style>{STYLE}</style></head><body>\n{body}\n"
            f"<div class='count'>1 / {len(slides)}</div><script>{SCRIPT}</script></body></html>\n")



def write_deck(run, user: str, out, data=None, **kwargs) -> Path:
    """Build the deck of ``user`` in ``run`` (its users read from ``data`` when given) and write it to ``out``."""
    return write_text(out, build_deck(Explorer(run, data=data), user, **kwargs))
