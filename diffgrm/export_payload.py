"""What ``diffgrm export`` writes for each user: the explorer's views of one decoding as plain data.

Every figure is built by :mod:`diffgrm.viz`, the same functions the app draws, and stored as
compact plotly JSON: floats rounded to :data:`DIGITS` significant digits, NaN as ``null``, and the
layout's template left out (it is the same for every figure, so the page ships it once). The page
(``diffgrm/export_assets/app.js``) only swaps these into its plots. Nothing here writes files or
knows about the page; :mod:`diffgrm.export` does.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffgrm import viz
from diffgrm.code_words import code_label
from diffgrm.explorer import Explorer, Recommendation, UserCase
from diffgrm.sid_index import sid_text

DIGITS = 4
"""Significant digits kept of every float (probabilities, scores, coordinates): enough for a picture
and a hover, and about half the bytes of full precision."""
ORDERS = ("confidence", "fixed", "random")
STRIP_BEAMS = 8
"""Final beams the denoising strip follows (as the app)."""


@dataclass(frozen=True)
class ExportSetting:
    """One set of decoding settings the export precomputed (the page can switch between several)."""

    beam: int
    k: int
    exclude_seen: bool
    passes: int | None  # None: one digit per network pass

    def describe(self, n_digits: int) -> dict:
        passes = self.passes or n_digits
        seen = "history kept out" if self.exclude_seen else "history allowed"
        return {"beam": self.beam, "k": self.k, "exclude_seen": self.exclude_seen, "passes": passes,
                "label": f"beam {self.beam} · Top-{self.k} · {seen} · {passes} network pass{'es' if passes > 1 else ''}"}


# --------------------------------------------------------------------------- JSON


def compact(value: Any, digits: int = DIGITS) -> Any:
    """``value`` as JSON-ready Python: numpy arrays and scalars as lists and numbers, floats rounded
    to ``digits`` significant digits (a whole number as an int), NaN and infinities as None."""
    if isinstance(value, dict):
        if set(value) in ({"dtype", "bdata"}, {"dtype", "bdata", "shape"}):  # plotly's base64 typed array
            return compact(typed_array(value), digits)
        return {str(k): compact(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [compact(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        return compact(value.tolist(), digits)
    if isinstance(value, np.generic):
        return compact(value.item(), digits)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        rounded = float(f"{value:.{digits}g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded
    return value


SHARE_MIN = 200
"""A trace's value (its hover data, say) at least this long in JSON that an earlier trace of the same
figure holds already is written once: ``{"$same": i}`` names the earlier trace, and the page copies it."""


def share_values(data: list[dict]) -> list[dict]:
    """``data`` with each long value that an earlier trace holds under the same key replaced by
    ``{"$same": index of that trace}`` (the denoising strip's two heatmaps share their hover data)."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for i, trace in enumerate(data):
        new = {}
        for key, value in trace.items():
            if isinstance(value, (list, dict)):
                text = json.dumps(value, separators=(",", ":"))
                if len(text) >= SHARE_MIN:
                    if (key, text) in seen:
                        value = {"$same": seen[key, text]}
                    else:
                        seen[key, text] = i
            new[key] = value
        out.append(new)
    return out


def typed_array(spec: dict) -> np.ndarray:
    """The array of a plotly typed-array spec (``{"dtype": "f8", "bdata": base64, "shape": "2, 3"}``),
    which plotly writes for numpy data: decoded, so that its floats can be rounded like the others."""
    array = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype("<" + spec["dtype"]))
    shape = spec.get("shape")
    if shape:
        array = array.reshape([int(n) for n in str(shape).split(",") if n.strip()])
    return array


def figure_json(fig) -> dict:
    """A plotly figure as compact JSON data, without its layout's template (the page adds it)."""
    raw = fig.to_plotly_json()
    layout = dict(raw.get("layout") or {})
    layout.pop("template", None)
    return {"data": share_values(compact(raw.get("data") or [])), "layout": compact(layout)}


def frames_json(figures: list) -> dict:
    """Several figures drawn in one plot in turn (the steps of a decoding): the first one's layout
    once, and for each figure its traces and the top-level layout keys that differ from it (a key
    the first has and this one lacks is ``null``: the page removes it)."""
    parts = [figure_json(f) for f in figures]
    base = parts[0]["layout"] if parts else {}
    frames = []
    for part in parts:
        layout = part["layout"]
        diff = {k: v for k, v in layout.items() if base.get(k) != v}
        diff.update({k: None for k in base if k not in layout})
        frames.append({"data": part["data"], "layout": diff})
    return {"layout": base, "frames": frames}


def table(frame, columns: list[str]) -> dict:
    """A data frame's ``columns`` as ``{"columns": [...], "rows": [[...], ...]}`` (compact)."""
    return {"columns": columns, "rows": compact(frame[columns].to_numpy().tolist())}


# --------------------------------------------------------------------------- one user


class PayloadBuilder:
    """The per-user payloads of one run (and its AR companion): figures of each decoding, the tables,
    and the user's marks on the codebook map (whose item cloud :meth:`codebook_base` builds once)."""

    def __init__(self, ex: Explorer, ar: Explorer | None = None) -> None:
        self.ex, self.ar = ex, ar
        self.words = ex.code_words()
        self.coords = None  # the codebook map's layout, read (or projected) on first use

    def _coords(self) -> dict:
        if self.coords is None:
            import os

            self.coords = self.ex.codebook_coords(os.environ.get("DIFFGRM_PROJECTION", "umap"))
        return self.coords

    # ----------------------------------------------------------------- shared by all users
    def codebook_base(self) -> list[dict]:
        """Per digit, the map every user shares: the item cloud and the labelled centroids, with the
        layout (SVG markers, not WebGL: drawn the same on any machine, GPU or not)."""
        ex, out = self.ex, []
        for digit, coords in sorted(self._coords().items()):
            fig = viz.codebook_figure(coords, digit=digit, titles=ex.titles, sids=ex.codes, code_words=self.words)
            part = figure_json(fig)
            part["data"] = part["data"][:2]  # the items and the centroids: the rest are each user's marks
            for trace in part["data"]:
                if trace.get("type") == "scattergl":
                    trace["type"] = "scatter"
            out.append(part)
        return out

    # ----------------------------------------------------------------- per user
    def decode(self, case: UserCase, setting: ExportSetting, order: str = "confidence",
               ar: bool = False) -> Recommendation:
        ex = self.ar if ar else self.ex
        passes = setting.passes if order == "confidence" and not ar else None
        return ex.recommend(case.history, beam=setting.beam, k=setting.k, order=order if ex.denoises else "confidence",
                            target=case.target, passes=passes, exclude_seen=setting.exclude_seen)

    def user(self, user: str, setting: ExportSetting) -> dict:
        """Everything the page shows for ``user`` under ``setting``."""
        ex = self.ex
        case = ex.user(user)
        rec = self.decode(case, setting, "confidence")
        top = rec.table
        hits = top.loc[top["hit"], "rank"].tolist()
        history = ex.history_table(case.history)
        return {
            "user": case.user,
            "setting": setting.describe(ex.n_digits),
            "history": table(history, ["position", "item", "title", "sid"]),
            "heldout": {"item": case.target, "title": ex.titles[case.target], "sid": sid_text(ex.codes[case.target]),
                        "rank": int(hits[0]) if hits else None,
                        "in_history": bool(case.target in set(case.history.tolist()))},
            "topk": table(top, ["rank", "item", "title", "sid", "probability", "hit", "in_history"]),
            "denoising": self.denoising(rec),
            "why": self.why(case, rec, setting),
            "orders": self.orders(case, setting),
            "codebook": self.codebook(case, rec),
        }

    def denoising(self, rec: Recommendation) -> dict:
        """One strip per step from step 0 (every digit masked, :data:`viz.START`) to the last, the
        sentence the app prints for each, the alternatives of each step and the confidence heatmap."""
        ex, trace = self.ex, rec.trace
        n = trace.n_steps
        beams = max(1, min(STRIP_BEAMS, len(rec.table)))
        states = [viz.START, *range(n)]
        strips = [viz.denoising_strip(trace, beams=beams, titles=ex.titles, initial_step=s, player=False,
                                      code_words=self.words) for s in states]
        lineage = trace.lineage(0)
        texts = [f"Step 0 of {n}: every digit is masked; the decoder has read the history and is about to fill "
                 "its first digit."]
        for s in range(n):
            r = lineage[s]
            d, c, p = int(trace.digit[s, r]), int(trace.code[s, r]), float(trace.prob[s, r])
            in_pass = (f" from network pass {int(trace.step_passes[s]) + 1} of {trace.n_passes}"
                       if trace.n_passes < n else "")
            named = code_label(self.words, d, c)
            texts.append(f"Step {s + 1} of {n}: the best beam fills digit {d} with code {c}"
                         f"{' (' + named + ')' if named else ''}, probability {p:.3f}{in_pass}; "
                         f"{n - s - 1} digit(s) still masked.")
        return {
            "steps": n,
            "text": texts,
            "strip": frames_json(strips),
            "alternatives": frames_json([viz.alternatives_figure(trace, beam=0, step=s) for s in range(n)]),
            "confidence": figure_json(viz.confidence_heatmap(trace, beam=0)),
        }

    def why(self, case: UserCase, rec: Recommendation, setting: ExportSetting) -> dict:
        """Why the held-out item was (not) recommended: the sentence and the figure of ``diffgrm.why``."""
        ex, item = self.ex, case.target
        head = f"{ex.titles[item]} (SID {sid_text(ex.codes[item])})"
        if setting.exclude_seen and item in set(case.history.tolist()):
            return {"message": f"{head} is in this user's history, and the history is kept out of the "
                               "recommendations: the search skipped it on purpose.", "figure": None}
        why = ex.why_not(case.history, rec, item)
        return {"message": f"{head}: {why.message}.", "verdict": why.verdict,
                "figure": figure_json(viz.why_not_figure(why, item_title=ex.titles[item], message=False))}

    def orders(self, case: UserCase, setting: ExportSetting) -> dict:
        """The fill orders compared on this user (and the AR companion's decoding, when there is one)."""
        ex = self.ex
        if not ex.denoises:
            return {"note": "This run is autoregressive: it has one, left-to-right, order.", "figure": None}
        recs = {f"{name} order": self.decode(case, setting, name) for name in ORDERS}
        if self.ar is not None:
            recs["AR (left to right)"] = self.decode(case, setting, ar=True)
        found = {name: int(r.table.loc[r.table["hit"], "rank"].iloc[0]) for name, r in recs.items()
                 if r.table["hit"].any()}
        held = ex.titles[case.target]
        if found:
            missed = [n for n in recs if n not in found]
            line = (f"Held-out item ({held}) found by: " + ", ".join(f"{n} (rank {r})" for n, r in found.items())
                    + (f"; not by: {', '.join(missed)}." if missed else "."))
        else:
            line = f"Held-out item ({held}): no order put it in its Top-{setting.k}."
        tables = ex.orders_table({name: r.table for name, r in recs.items()})
        return {"figure": figure_json(viz.compare_orders({name: r.trace for name, r in recs.items()})),
                "found": line, "table": table(tables, list(tables.columns))}

    def codebook(self, case: UserCase, rec: Recommendation) -> list[list[dict]]:
        """Per digit, the traces this user adds to the shared map: the final beams' codes, the history,
        the recommendations, the held-out item's code (its items and centroid) and the held-out item."""
        ex = self.ex
        history = [int(i) for i in case.history]
        recommended = [int(i) for i in rec.table["item"]]
        out = []
        for digit, coords in sorted(self._coords().items()):
            code = int(ex.codes[case.target, digit])
            wanted = {*history, *recommended, case.target, *ex.code_items(digit, code).tolist()}
            # the map's own items and centroids are drawn once for all users: build only the marks
            sub = coords[(coords["kind"] == "centroid") | coords["item"].isin(wanted)]
            sub.attrs = dict(coords.attrs)
            fig = viz.codebook_figure(sub, digit=digit, titles=ex.titles, sids=ex.codes, history=history,
                                      recommended=recommended, target=case.target, highlight=code,
                                      beam_codes=ex.codes[recommended, digit].tolist() if recommended else [],
                                      code_words=self.words)
            out.append(figure_json(fig)["data"][2:])
        return out
