"""The long-SIDs table and its figure, from ``bench/results/long-sids.json`` alone (no run folder)."""

from __future__ import annotations

import json


def screen_passes(n: int) -> list[int]:
    """The pass counts the screen scores and times a DiffGRM row at: S = n, n/2 and n/4."""
    return [n, max(1, n // 2), max(1, n // 4)]


def _f(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}".lstrip("0") if x < 1 else f"{x:.{digits}f}"


def render(payload: dict) -> str:
    """The long-SIDs table from its results (``long-sids.json``)."""
    records, beam, epochs = payload["rows"], payload["beam"], payload["epochs"]
    users = f"{payload['users']:,} users"
    lines = [
        f"amazon-beauty, validation split ({users}), item level, beam {beam}, Top-10; `cpu-long` preset, "
        f"{epochs} epochs for every row (cosine schedule over them), seed 0; OPQ n x 256 SIDs (rows named c16: 16 codes per digit), collisions repaired",
        "",
        "| row | n | model | OCN views | N@10 | R@10 | N@10, history excluded | R@10, history excluded | "
        "N@10 at S = n/2 / n/4 | N@10 at S = n/2 / n/4, history excluded | train min/epoch | users/s b32 (S = n, n/2, n/4) | users/s b256 (S = n, n/2, n/4) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    timed_like = {}  # OCN views change training only: a DiffGRM row decodes as fast as the timed one of its n
    for r in records:
        if r["model"] == "diffgrm" and r.get("speed"):
            timed_like.setdefault((r["n"], r.get("codebook", 256)), r["row"])
    for r in records:
        if r["row"] == "d4-paper":
            continue
        v, n = r["valid"], r["n"]
        full, unseen = v.get(f"s{n}", {}), v.get(f"s{n}-unseen", {})
        fewer = screen_passes(n)[1:]  # S = n/2 and n/4: CPD with fewer passes than digits
        ts = r.get("train_speed")
        mins = f"{ts['minutes_per_epoch']:.1f}" if ts else f"({r['wall_minutes_per_epoch']:.1f} wall)"
        speeds = {}
        for beam in (32, 256):
            keys = screen_passes(n) if r["model"] == "diffgrm" else [n]
            vals = [r.get("speed", {}).get(f"b{beam}-s{s}", {}).get("users_per_second") for s in keys]
            speeds[beam] = " / ".join("" if x is None else f"{x:.0f}" for x in vals)
            if all(x is None for x in vals):
                like = timed_like.get((n, r.get("codebook", 256)))
                speeds[beam] = f"as {like}" if r["model"] == "diffgrm" and like else ""
        it = lambda m, k: _f((m.get("item") or {}).get(k))  # noqa: E731
        few = {tag: " / ".join(it(v.get(f"s{s}{tag}", {}), "ndcg@10") for s in fewer) if r["model"] == "diffgrm" else ""
               for tag in ("", "-unseen")}
        lines.append(
            f"| {r['row']}{'' if r['finished'] else ' (training)'} | {n} | {'DiffGRM' if r['model'] == 'diffgrm' else 'AR (cached)'} "
            f"| {r['views']} | {it(full, 'ndcg@10')} | {it(full, 'recall@10')} | {it(unseen, 'ndcg@10')} | "
            f"{it(unseen, 'recall@10')} | {few['']} | {few['-unseen']} | {mins} | {speeds[32]} | {speeds[256]} |")
    timed = sorted({(r["n"], v.get("users"), v.get("threads")) for r in records for v in (r.get("speed") or {}).values()})
    lines += ["", "`d4-paper` (collisions kept, chosen at SID level) is not a row here: it is read on the test split "
              "under both protocols in `paper-protocol.md`."] if any(r["row"] == "d4-paper" for r in records) else []
    if timed:
        lines += ["", "Decode users/s: `python -m bench decode-speed` (the decoders of one n taking turns on the same seeded "
                  "validation users, best of repeats): " + "; ".join(f"n = {n}: {u:,} users, {t} thread" for n, u, t in timed)
                  + ". Training minutes per epoch: `train-speed` (one row at a time, 1 thread, 40 steps; the machine was "
                  "not idle) where given, else the run's wall time (in parentheses; runs shared the two cores)."]
    return "\n".join(lines)


def figures(payload: dict) -> dict[str, str]:
    """``ocn-cost.json``: validation NDCG@10 (the 2,000 users training monitors) against training minutes, per row."""
    return {"ocn-cost.json": json.dumps(ocn_cost_figure(payload["rows"]), sort_keys=True)}  # see on_policy.figures


def ocn_cost_figure(records: list[dict]) -> dict:
    """Validation NDCG@10 (the 2,000 users training monitors) against training minutes, per row."""
    import plotly.graph_objects as go

    fig = go.Figure(layout={"template": "plotly"})  # not the process's default: importing streamlit changes it
    for r in records:
        if r["row"] == "d4-paper":  # another catalogue and another protocol: not on this axis
            continue
        ts = r.get("train_speed")
        per_epoch = ts["minutes_per_epoch"] if ts else r["wall_minutes_per_epoch"]
        pts = [(c["epoch"] * per_epoch, c["valid"]["ndcg@10"]) for c in r["curve"] if c.get("valid")]
        if not pts:
            continue
        dash = "solid" if r["model"] == "ar" else "dot" if r["views"].startswith("1 ") else "dash" if r["views"] != f"{r['n']} of {r['n']}" else "solid"
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=r["row"],
                                 line={"dash": dash}, hovertemplate=f"{r['label']}<br>%{{x:.0f}} min: NDCG@10 %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title="What each decoder costs: validation NDCG@10 against training minutes",
                      xaxis_title="training minutes (1 thread, per-epoch rate measured alone)",
                      yaxis_title="validation NDCG@10 (2,000 users)", height=480, template="plotly_white",
                      margin={"t": 60, "l": 60, "r": 20, "b": 50})
    return json.loads(fig.to_json())


