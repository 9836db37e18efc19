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
# # 04 · Evaluation: what Recall and NDCG measure, and at which level
#
# **Goal:** compute Recall@K and NDCG@K by hand on tiny examples, see why metrics computed on SIDs (as the
# reference code does) differ from metrics computed on items once SIDs collide, measure that on MovieLens
# with an unrepaired catalogue, and read the Beauty benchmark table with the level of each number in mind.
#
# Each user has one held-out next item. The model ranks the catalogue; with the target at 1-based rank `r`,
# Recall@K = 1 if `r <= K` (else 0) and NDCG@K = 1 / log2(r + 1) if `r <= K` (else 0), averaged over all
# users. A user whose list misses the target counts as 0.

# %%
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.tutorial import prepared_movielens, setup

QUICK, RUNS = setup()  # DIFFGRM_QUICK=1 (the tests set it): small sizes, about two minutes; outputs in ../runs/notebooks

# %% [markdown]
# ## 1. By hand
#
# Four users, lists of three items (`-1` pads a short list), one target each. The targets sit at ranks 2, 1,
# not found and 1.

# %%
from diffgrm.metrics import popularity_ranking, ranking_metrics, sid_ranking_metrics, target_ranks

ranked = np.array([[4, 7, 1],
                   [2, 9, 5],
                   [3, 8, 6],
                   [0, -1, -1]])
targets = np.array([7, 2, 0, 0])
ranks = target_ranks(ranked, targets)
m = ranking_metrics(ranked, targets, ks=(1, 3))
print("ranks:", ranks.tolist(), "| metrics:", {k: round(v, 4) for k, v in m.items()})
assert ranks.tolist() == [2, 1, 0, 1]
assert m["recall@1"] == 2 / 4 and m["recall@3"] == 3 / 4
assert np.isclose(m["ndcg@3"], (1 / np.log2(3) + 1 + 0 + 1) / 4)
assert np.isclose(m["ndcg@1"], 2 / 4)

# %% [markdown]
# ## 2. Item level vs SID level, by hand
#
# A generative recommender outputs SIDs. If two items share a SID, the SID cannot say which of them it means:
# the reverse lookup picks one (the lowest index, as the reference code does) and the other can never be
# recommended. Scoring on SIDs ("is the generated SID the target's SID?") then counts a hit for *every* item
# in the group. Below, items 1 and 2 share the SID (0, 1); the model's best SID is (0, 1); the target is item 2.

# %%
import torch

from diffgrm.sid_index import SIDIndex

toy_codes = np.array([[0, 0], [0, 1], [0, 1], [1, 1]])  # items 1 and 2 collide
generated = torch.tensor([[[0, 1], [1, 1], [0, 0]]])  # one user, Top-3 SIDs
items = SIDIndex(toy_codes, 2).item_of(generated).numpy()
target = np.array([2])
item_level = ranking_metrics(items, target, ks=(1, 3))
sid_level = sid_ranking_metrics(generated.numpy(), toy_codes[target], ks=(1, 3))
print("generated SIDs name items", items.tolist())
print("item level:", item_level)
print("SID level: ", sid_level)
assert items.tolist() == [[1, 3, 0]]  # the shared SID names item 1, never item 2
assert item_level["recall@3"] == 0.0 and sid_level["recall@1"] == 1.0

# %% [markdown]
# A SID-level hit is implied by an item-level hit at the same or a better rank (the hit item's SID is the
# target's SID), so SID-level numbers are never below item-level ones; they are equal when the catalogue is
# one-to-one and inflated when it is not.
#
# ## 3. On real data: an unrepaired catalogue
#
# We prepare MovieLens-100K with a deliberately small codebook (K = 8, so 8^4 = 4,096 SIDs for 1,682 movies)
# and `repair=False`, train the `tiny` model briefly, and evaluate on test users at both levels. For contrast,
# the same codebook size with repair.

# %%
from diffgrm.config import TokenizerConfig, preset
from diffgrm.decode import Recommender
from diffgrm.train import train

K_SMALL = 8



variants = {
    "no repair": prepared_movielens(RUNS / f"movielens-k{K_SMALL}-norepair",
                                    TokenizerConfig(codebook_size=K_SMALL, repair=False)),
    "repaired": prepared_movielens(RUNS / f"movielens-k{K_SMALL}", TokenizerConfig(codebook_size=K_SMALL)),
}
for name, p in variants.items():
    r = p.report
    print(f"{name:>9}: {r['collision_rate_before']:.1%} of movies share a SID before repair, "
          f"{r['collision_rate_after']:.1%} in the catalogue used")

# %%
metrics = {}
for name, p in variants.items():
    cat = p.catalogue
    model_cfg, cfg = preset("tiny", n_digits=cat.n_digits, codebook_size=cat.codebook_size)
    if QUICK:
        cfg = replace(cfg, epochs=1, max_steps=60, eval_users=100)
    t0 = time.perf_counter()
    res = train(p, model_cfg, cfg, progress=False)
    m = Recommender(res.model).evaluate(p.splits["test"], beam=32, progress=False)
    metrics[name] = m
    print(f"{name}: trained in {time.perf_counter() - t0:.0f} s, evaluated {m['users']} test users")
table = pd.DataFrame({(name, level): m[level] for name, m in metrics.items() for level in ("item", "sid")}).T
table.round(4)

# %% [markdown]
# On the unrepaired catalogue every SID-level number is at least the item-level one; on the repaired catalogue
# the two levels are identical. Part of the gap is structural: a test target that is not the lowest-indexed
# item of its collision group can never be recommended, so item-level Recall cannot exceed the share of
# reachable targets (all checked below).

# %%
for key in metrics["no repair"]["item"]:
    assert metrics["no repair"]["sid"][key] >= metrics["no repair"]["item"][key], key
assert metrics["repaired"]["sid"] == metrics["repaired"]["item"]

p = variants["no repair"]
users = p.splits["test"]
named = SIDIndex(p.catalogue.codes, K_SMALL).item_of(torch.from_numpy(p.catalogue.codes[users.targets])).numpy()
reachable = float((named == users.targets).mean())
assert metrics["no repair"]["item"]["recall@10"] <= reachable
gap = metrics["no repair"]["sid"]["ndcg@10"] - metrics["no repair"]["item"]["ndcg@10"]
print(f"{1 - reachable:.0%} of the test targets share a SID with a lower-indexed movie and can never be "
      f"recommended; in this run SID-level NDCG@10 exceeds item-level by {gap:.4f}")
if QUICK:
    print("(a quick-mode model finds few targets at all, so the gap between the levels is small and noisy)")

# %% [markdown]
# The effect needs no model at all. Take the ten most popular training targets, write down their SIDs, and
# "generate" those ten SIDs for every user, as a generative recommender that has learnt popularity would. At
# item level a SID counts as the item it names; at SID level it counts for every movie that shares it.

# %%
p = variants["no repair"]
users = p.splits["test"]
pop_sids = p.catalogue.codes[popularity_ranking(p.splits["train"].targets, p.n_items, 10)]
pop_named = SIDIndex(p.catalogue.codes, K_SMALL).item_of(torch.from_numpy(pop_sids)).numpy()
as_items = ranking_metrics(np.broadcast_to(pop_named, (len(users), 10)), users.targets)
as_sids = sid_ranking_metrics(np.broadcast_to(pop_sids, (len(users), 10, pop_sids.shape[1])),
                              p.catalogue.codes[users.targets])
assert all(as_sids[k] >= as_items[k] for k in as_items)
print(f"popular SIDs, Recall@10: item level {as_items['recall@10']:.4f}, SID level {as_sids['recall@10']:.4f}")
pd.DataFrame({"item level": as_items, "SID level": as_sids}).T.round(4)

# %% [markdown]
# For scale, the most-popular baseline (the ten most frequent training targets, recommended to everyone),
# scored at item level on the same test users, next to the model trained on the repaired catalogue:

# %%
p = variants["repaired"]
users = p.splits["test"]
pop = popularity_ranking(p.splits["train"].targets, p.n_items, 10)
pop_metrics = ranking_metrics(np.broadcast_to(pop, (len(users), 10)), users.targets)
pd.DataFrame({"popularity": pop_metrics, "DiffGRM tiny (repaired)": metrics["repaired"]["item"]}).T.round(4)


# %% [markdown]
# ## 4. Reading the benchmark table
#
# The measured rows come from `bench/results/quality.json`, written by `python -m bench quality` (the README's
# quality table): Amazon Beauty, all test users, beam 32, the `cpu` preset (d 128, under 30 minutes of
# training on 2 CPU cores), on a repaired (one-to-one) catalogue, so item level = SID level. The row
# that names all-mpnet-base-v2 is the README's larger-encoder run (`bench/results/quality-mpnet.json`).
# The other rows are the published numbers of method.md section 6. Only numbers at the same level
# compare: a SID-level number on a catalogue with collisions is inflated.

# %%
def measured_rows(quality, encoder_in_label=False):  # one row per variant: the mean over its seeds
    rows = []
    for variant, runs in quality["results"].items():
        for r in runs:
            assert r["item"] == r["sid"], "a repaired catalogue gives identical item and SID levels"
        mean = {m: float(np.mean([r["item"][m] for r in runs])) for m in ("recall@5", "recall@10", "ndcg@5", "ndcg@10")}
        name = f"{variant}, {quality['encoder']}" if encoder_in_label else variant
        rows.append((f"{name} (measured here, {len(runs)} seed(s))", "item (= SID, repaired)",
                     mean["recall@5"], mean["recall@10"], mean["ndcg@5"], mean["ndcg@10"]))
    return rows


quality = json.loads(Path("../bench/results/quality.json").read_text())
measured = measured_rows(quality)
larger = Path("../bench/results/quality-mpnet.json")  # the README's larger-encoder row, if it was made
if larger.is_file():
    measured += measured_rows(json.loads(larger.read_text()), encoder_in_label=True)
published = [
    ("TIGER (paper)", "item", .0454, .0648, .0321, .0384),
    ("SASRec (in TIGER's table)", "item", .0387, .0605, .0249, .0318),
    ("RPG (paper)", "item", .0550, .0809, .0381, .0464),
    ("DiffGRM authors' dev runs (low end)", "SID", .056, .080, .038, .045),
    ("DiffGRM authors' dev runs (high end)", "SID", .073, .102, .051, .061),
    ("DiffGRM, independent audit", "SID", np.nan, np.nan, np.nan, .050),
    ("DiffGRM, independent audit", "item", np.nan, np.nan, np.nan, .026),
]
bench = pd.DataFrame(measured + published, columns=["model", "level", "R@5", "R@10", "N@5", "N@10"])
print(f"{quality['dataset']}, {quality['split']} split, {quality['users']:,} users, beam {quality['beam']}, "
      f"encoder {quality['encoder']} unless the row names another")
bench

# %%
import plotly.express as px

px.bar(bench.assign(label=bench.model + " [" + bench.level + "]"), x="N@10", y="label", color="level",
       orientation="h", title="Amazon Beauty, NDCG@10 on the test split, by level")

# %% [markdown]
# How to read it:
#
# - The audit measured the same DiffGRM at both levels: item-level NDCG@10 is about half the SID-level one
#   (0.026 vs 0.050). The authors' dev runs are SID level, so they belong with the audit's 0.050, not with
#   TIGER's or RPG's item-level numbers (checked below).
# - The measured rows are item level. Compare them with each other (same split, same SIDs, same budget) and
#   with the item-level published rows; the cell below prints where they stand.

# %%
n10 = bench.set_index(["model", "level"])["N@10"]
audit_item, audit_sid = n10[("DiffGRM, independent audit", "item")], n10[("DiffGRM, independent audit", "SID")]
assert 0.4 < audit_item / audit_sid < 0.6
best_published = max(n10[(m, "item")] for m in ("TIGER (paper)", "SASRec (in TIGER's table)", "RPG (paper)"))
for row in measured:
    print(f"{row[0]:<45} NDCG@10 {row[5]:.4f}: {row[5] / audit_item:.2f}x the audit's item-level DiffGRM, "
          f"{row[5] / best_published:.2f}x the best published item-level number")

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# A user's target is at rank 1 for one model and rank 3 for another. Predict each NDCG@10.

# %% jupyter={"source_hidden": true}
first = ranking_metrics(np.array([[5, 1, 2]]), np.array([5]), ks=(10,))["ndcg@10"]
third = ranking_metrics(np.array([[1, 2, 5]]), np.array([5]), ks=(10,))["ndcg@10"]
print(f"rank 1: {first:.3f}, rank 3: {third:.3f} (1 / log2(4))")
assert first == 1.0 and abs(third - 0.5) < 1e-9

# %% [markdown]
# ### Exercise 2
#
# For any list, predict which is larger: Recall@10 or NDCG@10?

# %% jupyter={"source_hidden": true}
check = ranking_metrics(ranked, targets, ks=(1, 3))
print({k: round(v, 3) for k, v in check.items()})
assert all(check[f"recall@{k}"] >= check[f"ndcg@{k}"] for k in (1, 3))  # a hit counts 1 in recall, 1/log2(r+1) <= 1 in NDCG

# %% [markdown]
# ### Exercise 3
#
# On the toy catalogue where items 1 and 2 share a SID, predict whether the SID level can be below the item level.

# %% jupyter={"source_hidden": true}
print("item level", {k: round(v, 3) for k, v in item_level.items()}, "| SID level", {k: round(v, 3) for k, v in sid_level.items()})
assert all(sid_level[k] >= item_level[k] for k in item_level)  # a shared SID counts for every item it names

# %% [markdown]
# ## What to try next
#
# - Change `K_SMALL` to 16 or 64: the collision rate falls and the SID/item gap closes.
# - Evaluate with a larger beam (`evaluate(..., beam=64)`) and watch Recall@10 move.
# - Re-run `python -m bench quality evaluate --seeds 0 1 2 --beam 64` (it reuses the trained runs; training them from
#   nothing takes hours on 2 cores) and compare its `bench/results/quality.json` with the table.
# - Prepare Beauty with `--no-repair` and evaluate the same model design: how large is the gap there?
