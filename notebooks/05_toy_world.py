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
# # 05 · A toy world: the whole search on one screen
#
# **Goal:** watch OCN and CPD where nothing is hidden: SIDs of 2 digits x 8 codes, so all 64 SIDs fit on one
# 8 x 8 lattice; train a small DiffGRM in seconds, see which cells OCN supervised, and follow CPD's beams across
# the lattice, step by step.
#
# Each item is one cell: digit 0 is its *genre* (8 of them), digit 1 its *level* (1 to 8). Every user has a
# favourite genre and a favourite level: their items keep the genre (now and then they stray) and land on the
# level or one either side of it. So the next item's genre is easy (one answer) and its level harder (three
# about equally likely). The SIDs here are the lattice itself, written down rather than made by PSE: this
# notebook is about OCN and CPD (`diffgrm/toy.py`).

# %%
import numpy as np

from diffgrm import viz
from diffgrm.explorer import Explorer
from diffgrm.toy import CODES, GENRES, make_toy_world, supervision
from diffgrm.tutorial import setup

QUICK, RUNS = setup()  # outputs in ../runs/notebooks (the toy world is as small in both modes)
run = make_toy_world(RUNS / "toy-world")  # writes the data and trains for about fifteen seconds (once)
ex = Explorer(run)
LEVELS = [f"level {i + 1}" for i in range(CODES)]
print(f"{ex.prepared.n_items} items, {len(ex.prepared.users)} users; SIDs of {ex.n_digits} digits x {CODES} codes")
assert ex.prepared.n_items == CODES**2 and ex.n_digits == 2

# %% [markdown]
# ## 1. What OCN supervised
#
# For every training target OCN builds $n$ nested views and supervises every masked position: $1 + 2 = 3$ per
# target with $n = 2$. The shading counts them per cell. Each user visits a band of one row (their genre, a few
# adjacent levels), so the counts follow the users' tastes.

# %%
sup = supervision(ex.prepared)
assert int(sup.to_numpy().sum()) == 3 * len(ex.prepared.splits["train"])
sup

# %% [markdown]
# ## 2. One user, the whole search
#
# The model's confidence in each digit, with both masked, decides where CPD starts:
#
# $$\kappa_d = \max_k p_\theta(x_d = k \mid \texttt{[M]}\,\texttt{[M]}, h).$$
#
# The genre (digit 0) should be the sure one. Then the lattice after 1 and 2 fills: blue squares are the cells
# a kept beam can still reach (a whole row when only the genre is filled, a column when only the level is), and
# the stars are the final Top-5.

# %%
case = ex.user(ex.users()["user"].iloc[1])
rec = ex.recommend(case.history, beam=8, k=5, target=case.target)
conf = np.exp(ex.recommender.digit_logprobs(case.history, np.array([[-1, -1]]))[0]).max(axis=1)
print("history (newest last):", [ex.titles[i] for i in case.history[-4:]])
print(f"held out: {ex.titles[case.target]}; confidence per digit: genre {conf[0]:.2f}, level {conf[1]:.2f}")
path = rec.trace.lineage(0)
print("the best beam filled digit", [int(rec.trace.digit[s, path[s]]) for s in range(2)], "in that order")

# %%
def lattice(step):
    return viz.lattice_figure(rec.trace, step, codebook_size=CODES, supervised=sup.to_numpy(), titles=ex.titles,
                              row_names=list(GENRES), col_names=LEVELS)


lattice(1)

# %%
lattice(2)

# %% [markdown]
# ## 3. Over many users: the surer digit, and the order the winner took
#
# OCN's order starts with the digit the model is surer of with both masked; CPD's best final beam reports the
# order in which *it* was filled. Both orders reach the same complete SID, and the search keeps the best-scoring
# copy, so what decides is which chain scores higher:
#
# $$\log p(g) + \log p(\ell \mid g) \quad\text{against}\quad \log p(\ell) + \log p(g \mid \ell).$$
#
# Once the level is known the genre is nearly certain, so the level-first chain often wins.

# %%
from diffgrm.onpolicy import measure

result, ocn, cpd = measure(ex.recommender, ex.prepared.splits["test"].histories[:300], beam=8)
ocn_genre, cpd_genre = float((ocn[:, 0] == 0).mean()), float((cpd[:, 0] == 0).mean())
print(f"the model is surer of the genre for {ocn_genre:.0%} of 300 users (OCN would unmask it first); "
      f"CPD's winning beam filled the genre first for {cpd_genre:.0%}")
assert ocn_genre > 0.7 and cpd_genre < ocn_genre  # sure first, but the beam, not the rule, picks the winner

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# After one fill, can a kept beam still reach every cell of the lattice?

# %% jupyter={"source_hidden": true}
after_one = rec.trace.tokens[0][rec.trace.alive[0]]
print("partial SIDs after step 1:", after_one.tolist())
assert ((after_one >= 0).sum(axis=1) == 1).all()  # exactly one digit known: a row or a column, never all 64

# %% [markdown]
# ### Exercise 2
#
# With a beam of 8 and 64 SIDs, how many different cells can the final Top-5 hold, and can two stars share a cell?

# %% jupyter={"source_hidden": true}
cells = [tuple(ex.codes[i]) for i in rec.table["item"]]
print("final cells:", cells)
assert len(set(cells)) == len(cells) == 5  # one item per SID, no duplicates

# %% [markdown]
# ### Exercise 3
#
# How many masked positions did OCN supervise for all training targets together?

# %% jupyter={"source_hidden": true}
n_train = len(ex.prepared.splits["train"])
print(f"{n_train} training targets x (1 + 2) views' masked digits = {3 * n_train}")
assert int(sup.to_numpy().sum()) == 3 * n_train

# %% [markdown]
# ## What to try next
#
# - Raise `STRAY` in `diffgrm/toy.py` (users leave their genre more often): does the genre stay the surer digit?
# - Decode with `order="fixed"` (level never first) and compare the Top-5.
# - Open the same world in the explorer: `diffgrm app`, then "Toy world" in the sidebar.
