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
# # 01 · PSE: how items get their semantic IDs
#
# **Goal:** follow one path, item text -> sentence embedding -> whitened PCA -> OPQ rotation -> product
# quantization, to a 4-digit semantic ID; then check what the digits carry (information per digit for OPQ,
# plain PQ, residual quantization and random codes), how SID collisions are repaired, how many bits about
# the item the digits hold together, and what the codebooks look like.
#
# Parallel Semantic Encoding (PSE) gives every item `n` digits that are *symmetric*: each digit quantizes its
# own slice of the (rotated) embedding, so no digit is "the coarse one". That is what lets the decoder fill
# the digits in any order. Quick mode uses MovieLens-100K (K = 64 codes per digit); full mode uses the shared
# Amazon Beauty data (K = 256) when it is there.

# %%
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.tutorial import setup

QUICK, RUNS = setup()  # DIFFGRM_QUICK=1 (the tests set it): small sizes, about two minutes; outputs in ../runs/notebooks

# %%
from diffgrm.data import load_dataset, train_items

BEAUTY = Path(os.environ.get("DIFFGRM_SHARED", "../../shared")) / "data" / "amazon-beauty"
if not QUICK and BEAUTY.is_dir():
    dataset, K = load_dataset(BEAUTY), 256
else:
    dataset, K = load_dataset("movielens-100k"), 64
N_DIGITS = 4
titles = dataset.items["title"].tolist()
train_idx = train_items(dataset.sequences)  # the tokenizer is fit on training items only
print(dataset.summary(), f"| K = {K}, {len(train_idx)} training items")

# %% [markdown]
# ## 1. Item text
#
# Each item becomes one string built from labelled fields in a fixed order, empty fields skipped. Two items
# differ in their text exactly where their metadata differ.

# %%
from diffgrm.text import item_text

example = item_text({"title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"],
                     "price": ""})
print(example)
assert example == "Title: Toy Story. Year: 1995. Genres: Animation, Children's, Comedy."
for t in dataset.items["text"].head(3):
    print("-", t[:160])

# %% [markdown]
# ## 2. Sentence embeddings
#
# A small sentence encoder (all-MiniLM-L6-v2, shipped offline) turns each text into a unit-length vector.
# Embeddings are cached on disk by encoder and text, so this is slow only the first time. Nearby vectors
# mean similar texts: here are the nearest neighbours of the first item by cosine similarity.

# %%
from diffgrm.text import embed_texts

emb = embed_texts(dataset.items["text"].tolist(), progress=False)
norms = np.linalg.norm(emb, axis=1)
assert np.allclose(norms, 1.0, atol=1e-4)  # L2-normalised
print("embeddings:", emb.shape)
sims = emb @ emb[0]
pd.DataFrame({"title": [titles[i] for i in np.argsort(-sims)[:6]], "cosine": np.sort(sims)[::-1][:6]})

# %% [markdown]
# ## 3. Whitened PCA, then an OPQ rotation
#
# `PSETokenizer.fit` learns three things from the training items: a whitened PCA (every kept direction gets
# unit variance, then vectors are normalised again), an orthogonal rotation (OPQ) chosen so that splitting
# the rotated vector into `n` equal slices loses as little as possible, and K centroids per slice. The
# rotation is a true rotation: `R Rᵀ = I`.
#
# With the training items' mean $\mu$ and the top $m$ eigenpairs $(\lambda_j, u_j)$ of their covariance, the
# whitened, normalised vector is
#
# $$z_i = \frac{W (e_i - \mu)}{\lVert W (e_i - \mu) \rVert}, \qquad W = \operatorname{diag}(\lambda_1^{-1/2}, \dots, \lambda_m^{-1/2})\,[u_1, \dots, u_m]^\top ,$$
#
# and OPQ learns the rotation $R$ and the codebooks $C^{(d)}$ together, to keep the quantisation error small:
#
# $$\min_{R^\top R = I,\; C} \sum_i \sum_{d=1}^{n} \min_k \big\lVert (R z_i)^{(d)} - c^{(d)}_k \big\rVert^2 .$$
#
# The package's lines for the first equation (`W` is stored as `pca_components`, the division by the norm is `_l2n`):

# %%
from diffgrm.pse import PSETokenizer
from diffgrm.tutorial import source

print(source(PSETokenizer._fit_whitened_pca))
print(source(PSETokenizer._project))

# %%
from diffgrm.config import TokenizerConfig

t0 = time.perf_counter()
opq = PSETokenizer(TokenizerConfig(method="opq", n_digits=N_DIGITS, codebook_size=K, seed=0)).fit(emb, train_idx)
print(f"fit in {time.perf_counter() - t0:.1f} s")
for name, value in opq.state.items():
    print(f"{name:>15}: {tuple(value.shape)}")
R = opq.state["rotation"]
assert np.allclose(R @ R.T, np.eye(len(R)), atol=1e-3)

# %% [markdown]
# Digit `d` quantizes slice `d` of the rotated vector (`subvectors` returns the slices). How much of each
# item's vector falls into each slice? The bar chart shows the share of the squared length per slice,
# averaged over items, with the OPQ rotation and without it (plain PQ on the same whitened PCA).

# %%
import plotly.express as px

pq = PSETokenizer(TokenizerConfig(method="pq", n_digits=N_DIGITS, codebook_size=K, seed=0)).fit(emb, train_idx)
energy = []
for name, tok in (("opq", opq), ("pq", pq)):
    sub = tok.subvectors(emb)  # [items, digits, width]
    share = (sub**2).sum(-1).mean(0) / (sub**2).sum((1, 2)).mean()
    energy += [{"tokenizer": name, "digit": d, "share": float(s)} for d, s in enumerate(share)]
energy = pd.DataFrame(energy)
assert np.allclose(energy.groupby("tokenizer")["share"].sum(), 1.0, atol=1e-4)
print(energy.pivot(index="tokenizer", columns="digit", values="share").round(3))
px.bar(energy, x="digit", y="share", color="tokenizer", barmode="group",
       title="Share of each item's squared length in each digit's slice")

# %% [markdown]
# Both are close to 1/n: whitening gives every PCA direction the same variance, so equal-width slices carry
# equal length, rotated or not (checked below). Length is not information, though: section 5 asks how much of
# each slice its code actually explains.

# %%
assert (abs(energy["share"] - 1 / N_DIGITS) < 0.02).all(), energy

# %% [markdown]
# ## 4. From slices to digits
#
# Digit `d` is the index of the nearest of the K centroids of slice `d`,
#
# $$x_{i,d} = \arg\min_k \big\lVert (R z_i)^{(d)} - c^{(d)}_k \big\rVert^2 .$$
#
# `transform` does that for every item (before any collision repair); `distances` gives the squared distance to
# every centroid, which is also what collision repair uses to find an item's next-best SID:

# %%
print(source(PSETokenizer.distances))

# %%
raw = opq.transform(emb)
dist = opq.distances(emb)  # [items, digits, K]
assert raw.shape == (len(emb), N_DIGITS) and raw.min() >= 0 and raw.max() < K
assert (raw == dist.argmin(axis=2)).all()
pd.DataFrame({"title": titles[:6], "SID (before repair)": ["-".join(map(str, c)) for c in raw[:6]]})

# %% [markdown]
# ### Why each digit's k-means has its own seed
#
# A code number means nothing across digits: code 29 of digit 0 and code 29 of digit 2 are two unrelated
# centroids in two unrelated slices. Yet with faiss' product quantizer, which the reference uses, SIDs such as
# 29-29-29-29 are common: every slice's k-means starts from the same seed, so it draws its first centroids from
# the *same rows*, and a group of items that is tight in every slice ends up with the same number everywhere.
# On Beauty (4 x 256, MiniLM) 451 of 12,101 items got four equal digits that way, and any two digits agreed
# for 9-14% of items where chance is 1/256 (0.3-0.7% with a seed per digit). It is mostly a labelling artefact:
# the information per SID and the share of colliding items barely move between the two (the cell below measures the
# digits' agreement on this catalogue), but a student reading 29-29-29-29 sees structure that is not there. So diffgrm gives each digit's k-means its
# own seed (`TokenizerConfig.kmeans_seeds = "distinct"`, the default); `"shared"` keeps the reference's
# behaviour for parity (`diffgrm prepare --kmeans-seeds shared`). The cell fits both on the same rotation.

# %%
agreement = []
for seeds in ("shared", "distinct"):
    tok = PSETokenizer(TokenizerConfig(method="opq", n_digits=N_DIGITS, codebook_size=K, seed=0,
                                       kmeans_seeds=seeds)).fit(emb, train_idx)
    c = tok.transform(emb)
    pairs = [(c[:, a] == c[:, b]).mean() for a in range(N_DIGITS) for b in range(a + 1, N_DIGITS)]
    agreement.append({"k-means seeds": seeds, "items with all digits equal": int((c == c[:, :1]).all(1).sum()),
                      "two digits agree (mean over pairs)": round(float(np.mean(pairs)), 4),
                      "chance": round(1 / K, 4)})
agreement = pd.DataFrame(agreement).set_index("k-means seeds")
agreement

# %% [markdown]
# ## 5. What does each digit carry? OPQ vs PQ vs RQ vs random
#
# We fit the three ablation tokenizers on the same embeddings. **RQ** (residual k-means on the raw embedding)
# quantizes the whole vector at level 0, then what is left over at level 1, and so on; **random** assigns
# codes at random. Two views of each digit:
#
# - *explained share*: the part of the item's squared length that the digit's code accounts for (OPQ/PQ:
#   the slice's length minus its quantization error; RQ: how much the residual shrinks at that level);
# - *entropy* of the code distribution (in bits, at most log2 K) and how many codes are used.

# %%
tokenizers = {"opq": opq, "pq": pq}
for method in ("rq", "random"):
    tokenizers[method] = PSETokenizer(
        TokenizerConfig(method=method, n_digits=N_DIGITS, codebook_size=K, seed=0)).fit(emb, train_idx)

from diffgrm.pse import collision_rate, digit_stats

rows = []
for name, tok in tokenizers.items():
    d2 = tok.distances(emb)
    err = d2.min(axis=2).mean(0)  # mean quantization error per digit
    if name == "rq":  # residual energy before level d: 1 (unit vectors), then the error left by each level
        before = np.concatenate([[float((emb**2).sum(1).mean())], err[:-1]])
        explained = (before - err) / before[0]
    elif name in ("opq", "pq"):
        sub = tok.subvectors(emb)
        explained = ((sub**2).sum(-1).mean(0) - err) / (sub**2).sum((1, 2)).mean()
    else:
        explained = np.full(N_DIGITS, np.nan)  # random codes quantize nothing
    codes_m = d2.argmin(axis=2)
    for st, ex in zip(digit_stats(codes_m, K), explained):
        rows.append({"tokenizer": name, **st, "explained_share": float(ex),
                     "collision_rate": collision_rate(codes_m)})
info = pd.DataFrame(rows)
info.pivot(index="tokenizer", columns="digit", values=["explained_share", "entropy_bits", "usage"]).round(3)

# %%
fig = px.bar(info.dropna(subset=["explained_share"]), x="digit", y="explained_share", color="tokenizer",
             barmode="group", title="Share of the item vector explained by each digit")
fig

# %% [markdown]
# RQ's level 0 explains far more than any later level: the first digit is coarse and the later ones refine
# small residuals. OPQ spreads the explained share evenly over its digits. Plain PQ, without the rotation,
# gives more to digit 0, whose slice holds the leading PCA directions, where most of the cluster structure
# lives; removing that imbalance is what the OPQ rotation is for. (The totals are not comparable: RQ quantizes
# the raw embedding, OPQ and PQ the whitened one, in which every direction counts the same.) The cell below
# checks these statements on the numbers.

# %%
share = info.pivot(index="tokenizer", columns="digit", values="explained_share")
rq_share, opq_share, pq_share = (share.loc[m].to_numpy() for m in ("rq", "opq", "pq"))
spread = lambda x: x.max() / x.min()
assert rq_share[0] > 2 * rq_share[1:].max(), rq_share
assert spread(opq_share) < 1.2 and spread(opq_share) < spread(pq_share), (opq_share, pq_share)
assert pq_share[0] == pq_share.max()
print(f"RQ: level 0 explains {rq_share[0]:.1%} of the vector, levels 1-{N_DIGITS - 1} "
      f"{', '.join(f'{s:.1%}' for s in rq_share[1:])}")
print(f"OPQ digits: {', '.join(f'{s:.1%}' for s in opq_share)} (max/min {spread(opq_share):.2f}); "
      f"PQ digits: {', '.join(f'{s:.1%}' for s in pq_share)} (max/min {spread(pq_share):.2f})")

# %% [markdown]
# Entropy tells the other half of the story: how evenly the items spread over a digit's K codes (the dotted
# line, log2 K, is the maximum: every code equally busy). RQ's later levels use their codes less evenly than
# its first level: items crowd into fewer codes even though every code is used by someone, so those digits
# carry fewer bits (steeply on MovieLens, more mildly on Beauty). That narrowing after a wide first level is
# the bottleneck known as the "semantic hourglass". OPQ's digits all stay close to the maximum, above every
# later RQ level, and random codes sit at the maximum (checked below the chart).

# %%
fig = px.bar(info, x="digit", y="entropy_bits", color="tokenizer", barmode="group",
             title=f"Entropy of each digit's codes (max log2 K = {np.log2(K):.0f} bits)")
fig.add_hline(y=np.log2(K), line_dash="dot")
fig

# %%
ent = info.pivot(index="tokenizer", columns="digit", values="entropy_bits")
for name, row in ent.iterrows():
    print(f"{name:>6}: entropy {', '.join(f'{v:.2f}' for v in row)} bits; "
          f"lowest at digit {int(row.idxmin())}, spread {row.max() - row.min():.2f} bits")
assert (ent.to_numpy() <= np.log2(K) + 1e-9).all()
rq_ent, opq_ent = ent.loc["rq"].to_numpy(), ent.loc["opq"].to_numpy()
assert (rq_ent[1:] < rq_ent[0]).all(), rq_ent  # later RQ levels carry fewer bits than the first
assert opq_ent.min() > rq_ent[1:].max() + 0.5 and opq_ent.max() - opq_ent.min() < 0.5, (opq_ent, rq_ent)
assert (ent.loc["random"] > np.log2(K) - 0.1).all()
coll = info.groupby("tokenizer")["collision_rate"].first()
print("collision rate before repair:", coll.round(3).to_dict())

# %% [markdown]
# ## 6. Collisions and their repair
#
# With a few thousand items and `K^4` possible SIDs, some items still land on the same SID (two movies with
# near-identical text, say). The catalogue must be one-to-one, or a generated SID cannot name an item. In each
# group of colliding items, the item closest to the SID keeps it and every other item moves to its cheapest
# free SID (least extra quantization error),
#
# $$x_i \leftarrow \arg\min_{s \text{ free}} \sum_{d=1}^{n} \big\lVert (R z_i)^{(d)} - c^{(d)}_{s_d} \big\rVert^2 .$$
#
# Here are the six largest groups (up to five titles each), with the titles that collided and where they went:

# %%
from diffgrm.pse import build_catalogue, collision_groups

catalogue = build_catalogue(opq, emb, train_idx)  # the tokenizer is already fitted: it only assigns + repairs
report = catalogue.report()
groups = collision_groups(catalogue.codes_raw)
shown = []
for g in groups[:6]:
    for i in g[:5]:  # at most five titles per group
        shown.append({"group SID": "-".join(map(str, catalogue.codes_raw[i])), "group size": len(g),
                      "title": titles[i],
                      "kept its SID": bool((catalogue.codes[i] == catalogue.codes_raw[i]).all()),
                      "SID after repair": "-".join(map(str, catalogue.codes[i]))})
print(f"{report['collision_rate_before']:.1%} of items collided ({len(groups)} groups, largest "
      f"{report['largest_collision_group']}); {report['collision_rate_after']:.1%} after repair")
pd.DataFrame(shown)

# %% [markdown]
# The repaired catalogue has no collisions; in every group exactly one item kept its SID; and the number of
# moved items is the number of colliding items minus one per group.

# %% [markdown]
# Look at the group SIDs above: do some of them repeat one code in every digit? Codes of different digits
# come from different codebooks, so by chance an item's four digits would all be equal with probability
# 1/K^3. The cell counts how often it happens in the raw (unrepaired) SIDs, and how many of the colliding
# items sit on such SIDs.

# %%
same = (catalogue.codes_raw == catalogue.codes_raw[:, :1]).all(axis=1)
in_groups = np.concatenate(groups) if groups else np.zeros(0, dtype=int)
print(f"items whose {N_DIGITS} digits are all equal: {same.mean():.2%} (chance {K ** -(N_DIGITS - 1):.6%}); "
      f"among colliding items: {same[in_groups].mean():.0%}")

# %%
assert report["collision_rate_after"] == 0.0
assert len(np.unique(catalogue.codes, axis=0)) == len(emb)
for g in groups:
    kept = (catalogue.codes[g] == catalogue.codes_raw[g]).all(axis=1)
    assert kept.sum() == 1, g
assert report["moved_items"] == sum(len(g) - 1 for g in groups)

# %% [markdown]
# ## 7. How much do the digits tell about the item?
#
# A SID is a name, and naming one of N items takes log2 N bits (10.7 for MovieLens-100K's 1,682 movies,
# 13.6 for Beauty's 12,101 items), while n digits of K codes could hold n log2 K bits (24 with K = 64, 32
# with K = 256). Whatever the digits hold beyond log2 N is *redundancy*: digits repeating what other
# digits already say. `diffgrm.sid_info` measures it on the catalogue, each item counted once:
#
# - **H(first k digits)** for k = 1..n: how much the first k digits tell together. It can only grow with
#   k and can never pass log2 N; it reaches log2 N exactly when no two items share a SID.
# - **H(digit | others)** = H(all digits) - H(all digits but this one): the bits only this digit holds.
#
# With $p(s)$ the share of items whose first $k$ digits are $s$ (each item counted once),
#
# $$I_k = H(x_{1..k}) = -\sum_{s} p(s) \log_2 p(s) \le \log_2 N, \qquad H(x_d \mid x_{-d}) = H(x_{1..n}) - H(x_{-d}) .$$
#   Near 0 means the other digits already determine it, a *redundant* digit for telling items apart.
#   Together these bits never exceed H(all digits); the rest is shared between digits.
# - **collisions, counted two ways**: the share of items whose SID another item holds too
#   (`collision_rate_before` in the report) and the share of items beyond the first in their SID,
#   (items - distinct SIDs) / items, the number the reference code and most papers print. The second is
#   between half the first and the first.
#
# The tokenizer report carries all of it as `information`, before and after repair.

# %%
from diffgrm.viz import sid_information_figure

info = report["information"]  # the same as catalogue.information()
before, after = info["before"], info["after"]
print(f"ceiling log2 {before['n_items']:,} items = {before['max_bits']:.2f} bits; "
      f"{N_DIGITS} digits of {K} codes could hold {N_DIGITS * np.log2(K):.0f}")
print(pd.DataFrame({"H(digits 0..d)": before["prefix_bits"], "H(d)": before["digit_bits"],
                    "H(d | others)": before["conditional_bits"],
                    "H(digits 0..d) after repair": after["prefix_bits"]},
                   index=pd.RangeIndex(N_DIGITS, name="digit d")).round(2))
print(f"before repair, {before['collision_rate_sharing']:.1%} of items share their SID with another item; "
      f"{before['collision_rate_beyond_first']:.1%} are beyond the first item of their SID")
sid_information_figure(before, label="before repair")

# %%
for side in (before, after):
    bits = np.array(side["prefix_bits"])
    assert (np.diff(bits) >= -1e-9).all() and bits[-1] <= side["max_bits"] + 1e-9  # grows, under the ceiling
    own, total = np.array(side["conditional_bits"]), np.array(side["digit_bits"])
    assert (own >= 0).all() and (own <= total + 1e-9).all() and own.sum() <= bits[-1] + 1e-9
    sharing, beyond_first = side["collision_rate_sharing"], side["collision_rate_beyond_first"]
    assert sharing / 2 <= beyond_first <= sharing
assert np.isclose(after["prefix_bits"][-1], after["max_bits"])  # one-to-one: every item its own name
assert (before["prefix_bits"][-1] < before["max_bits"] - 1e-9) == (before["collision_rate_sharing"] > 0)
assert before["collision_rate_sharing"] == report["collision_rate_before"]
assert np.isclose(before["prefix_bits"][0], report["per_digit_before"][0]["entropy_bits"])

# %% [markdown]
# Is a small H(digit | others) a flaw? Not by itself. With N items far fewer than K^(n-1), any n - 1 digits
# can already name almost every item, so *no* digit needs to hold bits of its own. Random codes show it: they
# carry no meaning at all, yet each of their digits holds almost no bits the others lack (checked below).
# What the numbers do flag is a digit that adds little *when read in order*: a step of H(first k digits)
# much smaller than the digit's own entropy means it mostly restates the earlier digits. Here are the four
# tokenizers of section 5 side by side (raw codes, before repair):

# %%
from diffgrm.sid_info import sid_information

compared = {name: sid_information(tok.transform(emb)) for name, tok in tokenizers.items()}
rows = {(name, what): c[key] for name, c in compared.items()
        for what, key in (("H(digits 0..d)", "prefix_bits"), ("H(d | others)", "conditional_bits"))}
print(pd.DataFrame(rows, index=pd.RangeIndex(N_DIGITS, name="digit d")).T.round(2))
assert (np.array(compared["random"]["conditional_bits"]) < 0.1).all()
assert all(c["prefix_bits"][-1] <= c["max_bits"] + 1e-9 for c in compared.values())

# %% [markdown]
# ## 8. Codebook pictures
#
# Each digit has its own codebook: K centroids in its slice of the rotated space. `project_codebook` draws the
# centroids and the items' slices in 2-D (PCA in quick mode, UMAP in full mode); `codebook_figure` shows one
# digit, with one user's recent items highlighted (hover a point for its title, SID and code). PCA is a linear
# shadow of a 64-dimensional slice, so codes that look close in 2-D need not be.

# %%
from diffgrm.viz import codebook_figure, codebook_health, project_codebook

method = "pca" if QUICK else "umap"
coords = project_codebook(opq.subvectors(emb), opq.state["centroids"], codes=catalogue.codes, method=method,
                          max_items=2000 if QUICK else 5000)
user_items = dataset.sequences[0][-10:]
codebook_figure(coords[0], digit=0, titles=titles, sids=catalogue.codes, history=user_items)

# %% [markdown]
# `codebook_health` draws the tokenizer report: on the left, items per code sorted from the busiest code down
# (a flat line at N/K would be perfectly even use, a tail at zero would be dead codes); on the right, the
# share of items whose SID collides, before and after repair.

# %%
codebook_health(report, catalogue.codes, K)

# %%
dead = [row["dead_codes"] for row in report["per_digit"]]
print("dead codes per digit after repair:", dead)
assert all(0 <= d < K for d in dead)

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# The OPQ rotation `R` is learned. Predict: is it still a rotation, i.e. is `R Rᵀ` the identity?

# %% jupyter={"source_hidden": true}
R = opq.state["rotation"]
print("largest |R Rᵀ - I|:", float(np.abs(R @ R.T - np.eye(len(R))).max()))
assert np.allclose(R @ R.T, np.eye(len(R)), atol=1e-4)

# %% [markdown]
# ### Exercise 2
#
# Predict: with 8 codes per digit instead of `K`, will more or fewer items share a SID before repair?

# %% jupyter={"source_hidden": true}
small = PSETokenizer(TokenizerConfig(method="opq", n_digits=N_DIGITS, codebook_size=8, seed=0)).fit(emb, train_idx)
rate_small, rate_k = collision_rate(small.transform(emb)), collision_rate(raw)
print(f"items sharing a SID: {rate_small:.1%} with 8 codes, {rate_k:.1%} with {K}")
assert rate_small > rate_k  # 8^4 = 4,096 possible SIDs for the same items

# %% [markdown]
# ### Exercise 3
#
# After `build_catalogue` repairs the collisions, how many items share a SID? And did any item keep a SID
# that another item had before?

# %% jupyter={"source_hidden": true}
after = collision_rate(catalogue.codes)
moved = int((catalogue.codes != catalogue.codes_raw).any(axis=1).sum())
print(f"after repair: {after:.1%} share a SID; {moved} items moved")
assert after == 0 and len({tuple(c) for c in catalogue.codes.tolist()}) == len(catalogue.codes)

# %% [markdown]
# ## What to try next
#
# - Change `N_DIGITS` to 3 or 5, or `K` to 32 or 128, and watch the collision rate and the per-digit
#   explained share move.
# - With `N_DIGITS = 3` the digits have less room to repeat one another: does H(digit | others) grow, and
#   how far below log2 N do the raw codes stay?
# - Turn whitening off (`TokenizerConfig(whiten=False)`) and compare the slice shares with and without OPQ.
# - Run in full mode to see the same analysis on Amazon Beauty with K = 256 and UMAP projections.
# - Prepare a dataset with another tokenizer (`diffgrm prepare --tokenizer rq ...`) and train on it: does
#   the decoder care which digits are coarse?
