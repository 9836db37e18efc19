"""The fills a step weighed, as the search records them in its trace (``DenoisingTrace.fills_table``),
against a slow reconstruction after the fact: the network asked again for every parent's
prediction and every (parent, digit, code) child re-scored and classified with numpy. On the
shipped demo runs (DiffGRM and AR), for several users, every step, with and without the history
kept out, both tell the same story about every fill the trace lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffgrm import demo
from diffgrm.explorer import Explorer
from diffgrm.sid_index import sid_text


def reconstructed_fills(ex: Explorer, history: np.ndarray, rec, step: int, *, exclude_seen: bool = False,
                        limit: int | None = 200) -> pd.DataFrame:
    """Every fill the search could have weighed at ``step``, rebuilt from the network's predictions:
    the reference the recorded table is checked against."""
    trace = rec.trace
    n, k = ex.n_digits, ex.prepared.catalogue.codebook_size
    if not 0 <= step < trace.n_steps:
        raise ValueError(step)
    if step == 0:
        parents, tokens = np.zeros(1, dtype=np.int64), np.full((1, n), -1, dtype=np.int64)
        base, parent_rank = np.zeros(1), np.zeros(1, dtype=np.int64)
    else:
        alive = np.flatnonzero(trace.alive[step - 1])
        parents = alive[np.argsort(-trace.score[step - 1, alive], kind="stable")]
        tokens, base = trace.tokens[step - 1, parents].astype(np.int64), trace.score[step - 1, parents]
        parent_rank = np.arange(1, len(parents) + 1)
    # the prediction each parent's fills read: the one of its pass's first state
    passes = trace.step_passes
    start = int(np.flatnonzero(passes == passes[step])[0])
    anc = parents.copy()
    for u in range(step - 1, start - 1, -1):
        anc = trace.parent[u, anc] if u > 0 else np.zeros_like(anc)
    pass_tokens = tokens if start == step else (
        np.full((len(parents), n), -1, dtype=np.int64) if start == 0 else trace.tokens[start - 1, anc])
    logp = np.asarray(ex.recommender.digit_logprobs(np.asarray(history, dtype=np.int64), pass_tokens),
                      dtype=np.float64)  # [P, n, K]
    if trace.order == "confidence" and trace.decoder != "ar":
        open_digit = tokens < 0  # [P, n]
    else:  # a scheduled order (or AR): every beam fills the same digit at this step
        open_digit = np.zeros_like(tokens, dtype=bool)
        open_digit[:, int(trace.digit[step, np.flatnonzero(trace.alive[step])[0]])] = True
    # how many catalogue items (and unseen items) each child still matches, by counting codes
    seen = np.zeros(len(ex.codes), dtype=bool)
    if exclude_seen:
        seen[np.asarray(history, dtype=np.int64)] = True
    parts = []
    for j in range(len(parents)):
        filled = tokens[j] >= 0
        match = (ex.codes[:, filled] == tokens[j][filled]).all(axis=1)
        for d in np.flatnonzero(open_digit[j]):
            ok = np.flatnonzero(np.isfinite(logp[j, d]))
            parts.append(np.stack([np.full(len(ok), j), np.full(len(ok), d), ok,
                                   np.bincount(ex.codes[match, d], minlength=k)[ok],
                                   np.bincount(ex.codes[match & ~seen, d], minlength=k)[ok]], axis=1))
    cand = np.concatenate(parts) if parts else np.zeros((0, 5), dtype=np.int64)
    j, d, c = cand[:, 0], cand[:, 1], cand[:, 2]
    lp = logp[j, d, c]
    order = np.argsort(-(base[j] + lp), kind="stable")
    cand, lp = cand[order], lp[order]
    # what the step kept: (parent, digit, code) of every kept beam, and the kept partial SIDs
    alive = np.flatnonzero(trace.alive[step])
    kept_fill = {(int(trace.parent[step, r]) if step else 0, int(trace.digit[step, r]), int(trace.code[step, r]))
                 for r in alive}
    kept_sid = {tuple(int(x) for x in trace.tokens[step, r]) for r in alive}
    lowest = float(trace.score[step, alive].min()) if len(alive) else np.inf
    path = trace.lineage(0)[step]
    on_path = (int(trace.parent[step, path]) if step else 0, int(trace.digit[step, path]),
               int(trace.code[step, path]))
    shown = np.arange(len(cand) if limit is None else min(limit, len(cand)))
    ours = np.flatnonzero((parents[cand[:, 0]] == on_path[0]) & (cand[:, 1] == on_path[1])
                          & (cand[:, 2] == on_path[2]))
    if len(ours) and ours[0] >= len(shown):  # the path's fill is always listed
        shown = np.append(shown, ours[0])
    rows = []
    for rank in shown.tolist():
        (jj, dd, cc, items, unseen), sc = cand[rank].tolist(), float(base[cand[rank, 0]] + lp[rank])
        q = int(parents[jj])
        sid = tokens[jj].copy()
        sid[dd] = cc
        if (q, dd, cc) in kept_fill:
            status = "kept"
        elif tuple(int(x) for x in sid) in kept_sid:
            status = "duplicate"
        elif items == 0:
            status = "not in the catalogue"
        elif unseen == 0:
            status = "only history items"
        else:
            status = "below the beam" if sc < lowest else "redundant"
        rows.append({"rank": rank + 1, "parent": int(parent_rank[jj]), "parent_sid": sid_text(tokens[jj]),
                     "digit": dd, "code": cc, "prob": float(np.exp(lp[rank])), "beam_score": sc,
                     "sid": sid_text(sid), "items": items, "status": status,
                     "on_path": (q, dd, cc) == on_path})
    return pd.DataFrame(rows, columns=["rank", "parent", "parent_sid", "digit", "code", "prob", "beam_score",
                                       "sid", "items", "status", "on_path"])


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    run = tmp_path_factory.mktemp("fills") / "runs" / "ml"
    demo.ensure_demo_run(run, progress=False)
    return {"diffgrm": Explorer(run), "ar": Explorer(run.with_name(run.name + "-ar"))}


def agree(recorded: pd.DataFrame, rebuilt: pd.DataFrame) -> None:
    """Every recorded fill is a rebuilt one with the same parent, probability, beam score, matching
    items and status. One refinement: the search calls a fill a "duplicate" when a better fill
    reached the same partial SID, kept or not; the reconstruction only when the better one was kept."""
    key = ["parent", "digit", "code"]
    both = recorded.merge(rebuilt, on=key, how="left", suffixes=("", "_rebuilt"), validate="one_to_one")
    assert both["status_rebuilt"].notna().all(), "a recorded fill the reconstruction does not have"
    np.testing.assert_allclose(both["prob"], both["prob_rebuilt"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(both["beam_score"], both["beam_score_rebuilt"], rtol=1e-4, atol=1e-4)
    assert (both["items"] == both["items_rebuilt"]).all()
    assert (both["sid"] == both["sid_rebuilt"]).all() and (both["on_path"] == both["on_path_rebuilt"]).all()
    differ = both[both["status"] != both["status_rebuilt"]]
    assert (differ["status"] == "duplicate").all(), differ[["sid", "beam_score", "status", "status_rebuilt"]]
    better = rebuilt.groupby("sid")["beam_score"].max()
    assert (differ["beam_score"].to_numpy() < better[differ["sid"]].to_numpy()).all()


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_the_recorded_fills_tell_what_the_reconstruction_told(demo_runs, kind):
    ex = demo_runs[kind]
    for user in ex.users()["user"].tolist()[:3]:
        case = ex.user(user)
        for seen in (False, True):
            rec = ex.recommend(case.history, beam=16, k=10, target=case.target, exclude_seen=seen)
            for step in range(rec.trace.n_steps):
                recorded = rec.trace.fills_table(step, limit=None)
                rebuilt = reconstructed_fills(ex, case.history, rec, step, exclude_seen=seen, limit=None)
                assert len(recorded) >= min(200, len(rebuilt))  # the best 200 and every kept one
                assert recorded["beam_score"].is_monotonic_decreasing
                agree(recorded, rebuilt)
                # the app's table: the same best 15 fills as the reconstruction's, up to ties in score
                np.testing.assert_allclose(recorded.head(15)["beam_score"], rebuilt.head(15)["beam_score"],
                                           rtol=1e-4, atol=1e-4)
