# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: jupyter,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · CPD: filling the digits, most confident first
#
# **Goal:** decode one user's next item step by step with Confidence-guided Parallel Denoising (CPD) and see
# which digit each beam fills when, and why (the model's confidence); compare confidence order with a fixed
# order, a random order and the autoregressive (AR) baseline; measure how diverse the Top-K is; and count the
# invalid SIDs that the catalogue constraint avoids.
#
# CPD starts from the fully masked SID. At every step each beam may fill *any* still-masked digit with any
# code; candidates are scored by the beam's log-probability plus the new digit's, and the best `beam`
# partial SIDs survive. After `n` steps the complete SIDs are the recommendations.

# %%
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.tutorial import setup

QUICK, RUNS = setup()  # DIFFGRM_QUICK=1 (the tests set it): small sizes, about two minutes; outputs in ../runs/notebooks


# %%
import torch

from diffgrm.demo import demo_folders, ensure_demo_run
from diffgrm.explorer import Explorer

# The runs that ship with diffgrm: a DiffGRM run and its AR companion, the same recipe on MovieLens-100K, with
# the catalogue they were trained on. Installed once into ../runs/notebooks/demo; nothing is trained here.
runs = demo_folders(ensure_demo_run(RUNS / "demo", progress=False))
explorer, explorer_ar = Explorer(runs["diffgrm"]), Explorer(runs["ar"])
prepared = explorer.prepared
cat = prepared.catalogue
N, K = cat.n_digits, cat.codebook_size
BEAM, TOPK = 32, 10
for kind, ex in (("DiffGRM", explorer), ("AR", explorer_ar)):
    m = ex.metrics()
    print(f"{kind}: test NDCG@10 {m['item']['ndcg@10']:.4f} ({m['item']['ndcg@10'] / m['popularity']['ndcg@10']:.1f}x "
          f"popularity), {m['users']} users, beam {m['beam']}")

# %% [markdown]
# ## 0. The search in equations
#
# A partial SID $b$ reached by filling digits $d_1, \dots, d_s$ with codes $k_1, \dots, k_s$ scores the chain rule
# along its own fill order, each fill given the state $b^{(j-1)}$ before it:
#
# $$S(b) = \sum_{j=1}^{s} \log p_\theta\big(x_{d_j} = k_j \mid b^{(j-1)}, h\big).$$
#
# At every step each beam may fill any masked digit with any code that still leads to a catalogue item, and
# the $B$ best partial SIDs survive:
#
# $$S(b \cup \{d = k\}) = S(b) + \log p_\theta(x_d = k \mid b, h),$$
#
# $$\mathcal{B}_{s+1} = \operatorname{top}_B \{\, b \cup \{d = k\} : b \in \mathcal{B}_s,\ d \text{ masked in } b \,\}.$$
#
# Nothing names the digit to fill: a sure digit has $\log p \approx 0$, so extensions that fill it first rank
# high, but the beam decides. With $S < n$ network passes, the last pass fills the remaining $m = n - S + 1$
# digits from one prediction, each scored given the state $b_0$ that pass started from:
#
# $$S(b_0 \cup \{d_1 = k_1, \dots, d_m = k_m\}) = S(b_0) + \sum_{j=1}^{m} \log p_\theta(x_{d_j} = k_j \mid b_0, h).$$
#
# After $n$ fills the $K$ best complete SIDs are the recommendations, each naming the one item that holds it:
#
# $$\text{Top-}K = \{\, i : x_i = b,\ b \in \operatorname{top}_K \mathcal{B}_n \,\}.$$
#
# The package's lines for how the fills are split over passes, and for following a final beam back
# through the steps:

# %%
from diffgrm.cpd_passes import pass_sizes
from diffgrm.trace import DenoisingTrace
from diffgrm.tutorial import source

print(source(pass_sizes))
print(source(DenoisingTrace.lineage))

# %% [markdown]
# ## 1. One user
#
# We pick, among the first 200 test users, the first one whose held-out movie the model puts in its Top-10
# (so the walk-through ends with a hit), or the first user if there is none.

# %%
test = prepared.splits["test"]
first = explorer.recommender.search(test.histories[:200], beam=BEAM, topk=TOPK)
hits = np.flatnonzero((first.items.numpy() == test.targets[:200, None]).any(1))
row = int(hits[0]) if len(hits) else 0
case = explorer.user(prepared.users[test.users[row]])
print(f"{len(hits)} of 200 users have their held-out movie in the Top-{TOPK}; we follow user {case.user}",
      "(a hit)" if len(hits) else "(no hit)")
print("held-out next movie:", explorer.titles[case.target])
explorer.history_table(case.history).head(6)

# %%
rec = explorer.recommend(case.history, beam=BEAM, k=TOPK, target=case.target)
trace = rec.trace
rec.table

# %% [markdown]
# ## 2. The beam, step by step
#
# The trace records, for every step and beam, which digit was filled with which code and probability.
# Step 1 starts from the fully masked SID, so its `BEAM` candidates are the most probable (digit, code) pairs
# overall: the best step-1 beam filled the single most probable code of any digit, among the codes that some
# movie has (checked below). The table shows step 1's first beams.

# %%
frame = trace.to_frame()
step0 = frame[frame.step == 0].head(8)[["beam", "digit", "code", "prob", "runner_up_codes", "runner_up_probs"]]
allowed = explorer.recommender.index.allowed(torch.full((N,), -1)).numpy()  # codes some item uses, per digit
best_allowed = np.where(allowed, trace.distributions[0, 0], 0).max()
assert abs(trace.prob[0, 0] - best_allowed) < 1e-5
step0

# %% [markdown]
# The best *final* beam need not descend from the best step-1 beam: beams are ranked by their summed
# log-probability over all four steps, and a less probable first digit can be followed by much surer ones.

# %%
root = trace.lineage(0)[0]
print(f"the best final beam descends from step-1 beam {root}, which filled digit {trace.digit[0, root]} "
      f"with code {trace.code[0, root]} (probability {trace.prob[0, root]:.3f}; the best step-1 candidate had "
      f"{trace.prob[0, 0]:.3f})")

# %% [markdown]
# Which digit do the beams fill at each step? Each bar counts the beams that filled that digit at that step.
# When one digit is much easier to predict than the rest, most beams commit it first.

# %%
import plotly.express as px

fills = frame.groupby(["step", "digit"]).size().rename("beams").reset_index()
fills["step"] += 1
fills["digit"] = "digit " + fills["digit"].astype(str)
px.bar(fills, x="step", y="beams", color="digit", title="Digits filled at each step, over all beams")

# %% [markdown]
# The confidence heatmap follows the best final beam: each row is a step, each column a digit, and the colour
# is the model's highest probability for that digit given what the beam had filled so far. The outlined cell
# is the digit filled at that step; grey cells were already committed. The digits are predicted jointly, so
# a committed digit can change how sure the model is of the others: compare a column from one row to the next.

# %%
from diffgrm.viz import alternatives_figure, compare_orders, confidence_heatmap, denoising_strip

confidence_heatmap(trace, beam=0)

# %% [markdown]
# What else could the best beam have written at its first step? For every open digit, the five most likely
# codes, with the chosen one highlighted.

# %%
alternatives_figure(trace, beam=0, step=0, top=5)

# %% [markdown]
# And the whole search as a strip (use the slider): one row per final beam, committed digits coloured by
# their probability.

# %%
denoising_strip(trace, beams=8, titles=explorer.titles)

# %%
for b in range(TOPK):
    order = [int(trace.digit[s, r]) for s, r in enumerate(trace.lineage(b))]
    assert sorted(order) == list(range(N))  # every digit filled exactly once
orders = pd.Series([tuple(int(trace.digit[s, r]) for s, r in enumerate(trace.lineage(b))) for b in range(TOPK)])
print("fill orders of the Top-10 (digit at step 1, 2, ...):")
orders.value_counts()

# %% [markdown]
# ## 3. Confidence order vs fixed order vs AR
#
# The same user decoded four ways: CPD in confidence order, CPD in the fixed order 0, 1, 2, 3, CPD in a
# random order, and the AR baseline (left to right over a prefix trie, trained on the same SIDs). The upper
# panel is the probability of the digit committed at each step along the best final beam; the lower panel is
# the running log-probability, whose last point is that beam's score.

# %%
traces = {order: explorer.recommend(case.history, beam=BEAM, k=TOPK, order=order).trace
          for order in ("confidence", "fixed", "random")}
traces["AR"] = explorer_ar.recommend(case.history, beam=BEAM, k=TOPK).trace
compare_orders(traces, beam=0)

# %%
first_prob = {name: float(t.prob[0, t.lineage(0)[0]]) for name, t in traces.items()}
best_score = {name: float(t.score[-1, 0]) for name, t in traces.items()}
print("best final beam, probability of its first committed digit:", {k: round(v, 3) for k, v in first_prob.items()})
print("best final beam, score:", {k: round(v, 3) for k, v in best_score.items()})
# the best step-1 candidate of the confidence order is the most probable (digit, code) of all,
# so it is at least as probable as the best code of digit 0, where the fixed order must start
assert traces["confidence"].prob[0, 0] >= traces["fixed"].prob[0, 0] - 1e-6

# %% [markdown]
# One user is an anecdote; here are the metrics over a sample of test users. Because the catalogue is
# one-to-one, item-level and SID-level metrics are identical (checked); `04_evaluate` shows when they are not.

# %%
from diffgrm.train import subsample

users = subsample(test, 150 if QUICK else 0, seed=0)
rows = {}
for order in ("confidence", "fixed", "random"):
    m = explorer.recommender.evaluate(users, beam=BEAM, order=order, progress=False)
    assert m["item"] == m["sid"]
    rows[f"CPD, {order}"] = {**m["item"], "seconds": m["seconds"]}
m = explorer_ar.recommender.evaluate(users, beam=BEAM, progress=False)
rows["AR"] = {**m["item"], "seconds": m["seconds"]}
print(f"{len(users)} test users, beam {BEAM} (the shipped runs; quick mode samples the users)")
pd.DataFrame(rows).T.round(4)

# %% [markdown]
# ### The evidence at full scale
#
# One user, and a small sample, are anecdotes. On Amazon Beauty's whole test split (`python -m bench quality`, the `cpu`
# preset, three seeds, `bench/results/quality.json`): CPD in confidence order, the same model decoded in a fixed
# digit order, and the AR decoder on the same SIDs (a random order was not measured there).

# %%
from diffgrm.tutorial import seeds_table

evidence = seeds_table(Path("..") / "bench" / "results" / "quality.json",
                       {"CPD, confidence order": "diffgrm", "CPD, fixed order": "fixed", "AR, same SIDs": "ar"})
conf, fixed, ar = evidence["ndcg@10"]
print(f"confidence order leads the fixed order by {conf - fixed:.4f} NDCG@10; AR leads confidence order by "
      f"{ar - conf:.4f} (seeds' spread up to {evidence['ndcg@10 std'].max():.4f})")
assert conf - fixed > evidence["ndcg@10 std"].max()  # the order matters, by more than the seeds' spread
assert ar >= conf  # and the left-to-right decoder is not behind
evidence.round(4)

# %% [markdown]
# ## 4. How diverse is the Top-K?
#
# For every user, count the distinct codes each digit takes among the Top-10 SIDs (1 = all ten share that
# digit's code, 10 = all differ), and average over users. One might expect a left-to-right beam to keep few
# distinct first digits, since every beam grows from a short list of prefixes, while CPD's beams may start
# from any digit; what this run shows is printed below the chart.

# %%
hist = users.histories
results = {f"CPD, {o}": explorer.recommender.search(hist, beam=BEAM, topk=TOPK, order=o)
           for o in ("confidence", "fixed")}
results["AR"] = explorer_ar.recommender.search(hist, beam=BEAM, topk=TOPK)
div = []
for name, res in results.items():
    sids = res.sids.numpy()  # [users, TOPK, N]
    for d in range(N):
        distinct = np.array([len(np.unique(s[:, d][s[:, d] >= 0])) for s in sids])
        assert ((distinct >= 1) & (distinct <= TOPK)).all()
        div.append({"decoder": name, "digit": f"digit {d}", "distinct codes in Top-10": distinct.mean()})
div = pd.DataFrame(div)
fig = px.bar(div, x="digit", y="distinct codes in Top-10", color="decoder", barmode="group",
             title="Distinct codes per digit among the Top-10 (mean over users)")
fig

# %%
table = div.pivot(index="decoder", columns="digit", values="distinct codes in Top-10")
for name, row in table.iterrows():
    print(f"{name:>16}: least diverse digit {row.idxmin()} ({row.min():.1f} codes), "
          f"most diverse {row.idxmax()} ({row.max():.1f}), mean {row.mean():.1f}")
table.round(2)

# %% [markdown]
# ## 5. Invalid SIDs avoided
#
# With `constrain=True` (the default) a beam may only fill a code that some catalogue item has, given the
# digits already filled, so every complete SID names an item. With `constrain=False` the search is free;
# SIDs that name no item are thrown away at the end, so beams are wasted and a user can get fewer than ten
# items. Same users, same model, beams of 10, 16 and 32:

# %%
index = explorer.recommender.index
codes = torch.from_numpy(cat.codes)
rows = []
for beam in (10, 16, 32):
    for constrain in (True, False):
        res = explorer.recommender.search(hist, beam=beam, topk=TOPK, constrain=constrain, trace=True)
        finals = torch.from_numpy(np.stack([t.tokens[-1] for t in res.traces]))  # [users, beam, N]
        alive = torch.from_numpy(np.stack([t.alive[-1] for t in res.traces]))
        returned = res.items >= 0
        # whatever comes back names a real item, and its SID is that item's SID
        assert (codes[res.items[returned]] == res.sids[returned]).all()
        rows.append({
            "beam": beam, "search": "constrained" if constrain else "unconstrained",
            "final beams naming no item": int(((index.item_of(finals) < 0) & alive).sum()),
            "share of final beams wasted": float(((index.item_of(finals) < 0) & alive).sum() / alive.sum()),
            "users with fewer than 10 items": int((~returned).any(1).sum()),
            "items returned (mean per user)": float(returned.sum(1).float().mean()),
        })
counts = pd.DataFrame(rows).set_index(["beam", "search"])
assert (counts.xs("constrained", level="search")["final beams naming no item"] == 0).all()
print(f"{len(hist)} users")
counts.round(3)

# %% [markdown]
# The constrained search never produced a SID outside the catalogue (checked above); the unconstrained rows
# show how much of the beam a free search spends on SIDs that name no movie.
#
# A constrained beam also returns the full ten movies, even a beam of exactly ten. That takes care: beams that
# filled the same digits in different orders merge into one partial SID (only the best-scoring copy is kept),
# and two *different* partial SIDs, say `{d0=a, d1=b}` and `{d2=c, d3=e}`, can both lead only to the same
# movie `a-b-c-e`, because after two or three digits most partial SIDs match a single movie. If both kept a
# beam, one beam would be wasted and the search would end with fewer than ten movies. So at every step a
# child that can only reach movies a better child already reaches gets a beam only when nothing else is
# left (checked below).

# %%
assert (counts.xs("constrained", level="search")["users with fewer than 10 items"] == 0).all()
for beam in (10, 16, 32):
    c, u = counts.loc[(beam, "constrained")], counts.loc[(beam, "unconstrained")]
    print(f"beam {beam:>2}: constrained {c['items returned (mean per user)']:.1f} items per user on average "
          f"({int(c['users with fewer than 10 items'])} users short of 10); unconstrained "
          f"{u['items returned (mean per user)']:.1f} ({u['share of final beams wasted']:.0%} of final beams "
          f"name no movie)")

# %% [markdown]
# ## 6. Several digits per pass
#
# The same user decoded with $S = n$, $n/2$ and $1$ network passes: which digits each pass fills for the best
# beam, and how much of the $S = n$ Top-10 stays.

# %%
by_passes = {}
for steps in sorted({N, max(1, N // 2), 1}, reverse=True):
    r = explorer.recommend(case.history, beam=BEAM, k=TOPK, target=case.target, passes=steps)
    path = r.trace.lineage(0)
    groups = {}
    for s_ in range(r.trace.n_steps):
        groups.setdefault(int(r.trace.step_passes[s_]) + 1, []).append(int(r.trace.digit[s_, path[s_]]))
    by_passes[steps] = r
    same = len(set(r.table["item"]) & set(by_passes[max(by_passes)].table["item"]))
    print(f"S = {steps}: digits filled per pass {groups}; {same} of the {TOPK} items of S = {max(by_passes)} kept")
    assert r.trace.n_passes == steps and sorted(sum(groups.values(), [])) == list(range(N))

# %% [markdown]
# On Amazon Beauty's validation users (`bench/results/passes.json`, beam 32), the quality kept at each number of
# passes, against $S = n$:

# %%
import json

passes = json.loads((Path("..") / "bench" / "results" / "passes.json").read_text())["rows"]
kept = {r["passes"]: r["ndcg10_vs_n_passes"] for r in passes if r["decoder"] == "DiffGRM (CPD)" and r["beam"] == 32}
for s_, share in sorted(kept.items(), reverse=True):
    print(f"S = {s_}: {share:.0%} of the {max(kept)}-pass NDCG@10")
assert kept[max(kept)] == 1.0 and all(kept[a] <= kept[max(kept)] for a in kept)  # fewer passes never gained here

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# With `order="fixed"`, in which order does the best beam fill the digits?

# %% jupyter={"source_hidden": true}
fixed = explorer.recommend(case.history, beam=BEAM, k=TOPK, order="fixed")
path = fixed.trace.lineage(0)
filled = [int(fixed.trace.digit[s, path[s]]) for s in range(fixed.trace.n_steps)]
print("fixed order fills", filled)
assert filled == list(range(N))

# %% [markdown]
# ### Exercise 2
#
# Can two of the Top-10 be the same item, reached through two fill orders?

# %% jupyter={"source_hidden": true}
print("distinct items in the Top-10:", rec.table["item"].nunique())
assert rec.table["item"].is_unique  # the search keeps one copy of each partial SID

# %% [markdown]
# ### Exercise 3
#
# A beam of 10 for a Top-10: predict whether the list is still full and whether it matches the beam-32 list.

# %% jupyter={"source_hidden": true}
narrow = explorer.recommend(case.history, beam=TOPK, k=TOPK)
overlap = len(set(narrow.table["item"]) & set(rec.table["item"]))
print(f"beam {TOPK}: {len(narrow.table)} items, {overlap} of them in the beam-{BEAM} Top-{TOPK}")
assert len(narrow.table) == TOPK and narrow.table["item"].is_unique

# %% [markdown]
# ## What to try next
#
# - Raise `BEAM` to 64 or 128: does confidence order gain more from a wider beam than the fixed order?
# - Decode with several random orders (`explorer.recommend(..., order="random", seed=s)` for a few `s`) and
#   compare their best scores with the confidence order's.
# - Decode an edited history (drop the held-out movie's neighbours from `case.history`) and watch the
#   confidence heatmap change.
# - Run in full mode: the models train for a few minutes and the order comparison is computed on all test users.
