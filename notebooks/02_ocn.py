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
# # 02 · OCN: which digits the decoder learns to fill
#
# **Goal:** see what On-policy Coherent Noising (OCN) feeds the denoising decoder during training: what its
# masking "views" look like next to random masking, how often each digit is supervised, how per-digit
# accuracy and confidence evolve as training goes on, and what a short OCN run and a random-masking run look
# like side by side.
#
# A masked-diffusion decoder learns from partially masked SIDs. OCN asks the model which digits it is least
# sure of (one no-grad pass with every digit masked), and builds `n` nested views: view 1 masks the least
# confident digit, view 2 the two least confident, ..., view `n` masks everything. Read backwards they are one
# trajectory that unmasks the surest digit first. CPD, at inference, follows a trajectory of its own: it asks the
# network again after every fill and lets the beam score choose, so the two orders agree often, not always;
# section 5 measures how often, on the shipped demo run.

# %%
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.tutorial import prepared_movielens, setup

QUICK, RUNS = setup()  # DIFFGRM_QUICK=1 (the tests set it): small sizes, about two minutes; outputs in ../runs/notebooks

# %%
from diffgrm.config import tokenizer_preset

# %%
import torch

prepared = prepared_movielens(RUNS / "movielens-100k", tokenizer_preset("small"))
cat = prepared.catalogue
N, K = cat.n_digits, cat.codebook_size
print(f"{prepared.n_items} items, SIDs of {N} digits x {K} codes")

# %% [markdown]
# ## 0. The diffusion being trained
#
# A masked diffusion model corrupts a SID by masking digits: at noise level $t \in [0, 1]$ each digit is masked
# independently with probability $t$,
#
# $$q_t(\tilde{x}_d \mid x_d) = (1 - t)\, \mathbb{1}[\tilde{x}_d = x_d] + t\, \mathbb{1}[\tilde{x}_d = \texttt{[M]}] ,$$
#
# and learns to undo it: the masked digits from the visible ones and the history $h$. For this absorbing process
# the negative log-likelihood is bounded by a cross-entropy on the masked digits, weighted by $1/t$ (the idea of
# MDLM and LLaDA; `noising="random_t"` trains on exactly this):
#
# $$-\log p_\theta(x \mid h) \le \mathbb{E}_{t \sim U(0,1)}\, \mathbb{E}_{\tilde{x} \sim q_t} \Big[ \frac{1}{t} \sum_{d:\, \tilde{x}_d = \texttt{[M]}} -\log p_\theta(x_d \mid \tilde{x}, h) \Big] .$$
#
# With $n = 4$ digits there are only 15 non-empty masks. OCN picks $n$ of them, the ones its decoder will meet.
# One pass with every digit masked gives each digit's confidence,
#
# $$\kappa_d = \max_k p_\theta(x_d = k \mid \texttt{[M]}^n, h), \qquad \pi = \operatorname{argsort}(\kappa) \text{ (least confident first)},$$
#
# and view $t$ ($t = 1, \dots, n$) masks the $t$ least confident digits and shows the true codes of the rest:
#
# $$M_t = \{\pi_1, \dots, \pi_t\}, \qquad \tilde{x}^{(t)}_d = \texttt{[M]} \text{ if } d \in M_t \text{, else } x_d .$$
#
# The loss averages the cross-entropy $\ell$ over every masked position of every view, with weight 1 (`make_views`
# returns the weights: all ones for OCN), so
#
# $$\mathcal{L}_{\text{OCN}} = \frac{1}{\sum_{t=1}^n t} \sum_{t=1}^{n} \sum_{d \in M_t} \ell_d = \frac{2}{n(n+1)} \sum_{j=1}^{n} (n - j + 1)\, \ell_{\pi_j} :$$
#
# the least confident digit counts $n$ times, the surest once. These are the package's lines for $\kappa$, for the
# nested views and for the loss:

# %%
from diffgrm.ocn import digit_confidence, masked_loss, nested_views
from diffgrm.tutorial import source

for fn in (digit_confidence, nested_views, masked_loss):
    print(source(fn))

# %% [markdown]
# ## 1. Views, by hand
#
# Four target SIDs and a made-up confidence for each digit. `make_views` returns the views' tokens
# (`-1` = masked), a mask of the masked positions and a weight per view (all 1 for OCN: the weighting comes from
# how many views mask a digit, not from the weights); all shaped `[batch, views, digits]`.

# %%
from diffgrm.ocn import STRATEGIES, make_views

targets = torch.from_numpy(cat.codes[prepared.splits["valid"].targets[:4]])
confidence = torch.tensor([[0.9, 0.2, 0.6, 0.4],
                           [0.1, 0.8, 0.3, 0.7],
                           [0.5, 0.6, 0.9, 0.2],
                           [0.3, 0.4, 0.2, 0.95]])
tokens, masked, weights = make_views("ocn", targets, confidence)
print("target SID:", targets[0].tolist(), "| confidence:", confidence[0].tolist())
print("OCN views of the first target (one row per view):")
print(tokens[0])

# %%
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def views_grid(tokens, masked, title, samples=3):
    """One panel per sample: rows are views, columns digits; masked cells grey, known cells show the code."""
    fig = make_subplots(rows=1, cols=samples, subplot_titles=[f"sample {i}" for i in range(samples)],
                        horizontal_spacing=0.03, shared_yaxes=True)
    for i in range(samples):
        m = masked[i].numpy()
        fig.add_trace(go.Heatmap(z=m.astype(float), text=np.where(m, "?", tokens[i].numpy().astype(str)),
                                 texttemplate="%{text}", colorscale=[[0, "#56B4E9"], [1, "#c8c8c8"]],
                                 zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                                 x=[f"d{d}" for d in range(m.shape[1])],
                                 y=[f"view {v + 1}" for v in range(m.shape[0])]), row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    fig.update_layout(title=title, height=300)
    return fig


views_grid(tokens, masked, "OCN: nested views, least-confident digit masked first (grey = masked)")

# %% [markdown]
# Each OCN panel is a staircase: view `t` masks the `t` least-confident digits, each view's masked set
# contains the previous one's, and the least-confident digit is masked in every view. Random masking
# (below, one draw) has no such structure: views are independent, and which digit is masked does not
# depend on the model.

# %%
n_masked = masked.sum(-1)
assert tokens.shape == masked.shape == (4, N, N) and weights.shape == (4, N)
assert (n_masked == torch.arange(1, N + 1)).all()  # view t masks t digits
assert (masked[:, 1:] >= masked[:, :-1]).all()  # nested
least = confidence.argmin(1)
assert masked[torch.arange(4), :, least].all()  # the least-confident digit is masked in every view

gen = torch.Generator().manual_seed(0)
r_tokens, r_masked, r_weights = make_views("random", targets, generator=gen)
assert (r_masked.sum(-1) >= 1).all()  # every random view masks at least one digit
views_grid(r_tokens, r_masked, "Random masking: independent views")

# %% [markdown]
# ## 2. How often is each digit supervised?
#
# The loss is averaged over the masked positions of all views, so a digit masked in more views gets more
# training signal. Below, 4,096 targets with random confidences; each strategy's count is the number of
# views (out of `n`) in which a digit is masked, grouped by the digit's confidence rank (rank 1 = least
# confident).

# %%
B = 4096
gen = torch.Generator().manual_seed(1)
big_targets = torch.from_numpy(cat.codes[np.random.default_rng(0).integers(0, prepared.n_items, B)])
conf = torch.rand(B, N, generator=gen)
rank_of_digit = conf.argsort(1).argsort(1)  # 0 = least confident
counts = []
for strategy in STRATEGIES:
    _, m, _ = make_views(strategy, big_targets, conf, generator=gen)
    per_digit = m.sum(1).float()  # [B, digits]: views in which the digit is masked
    for r in range(N):
        counts.append({"strategy": strategy, "confidence rank": r + 1,
                       "times supervised": float(per_digit[rank_of_digit == r].mean())})
counts = pd.DataFrame(counts)
px_counts = counts.pivot(index="strategy", columns="confidence rank", values="times supervised")
px_counts.round(2)

# %%
import plotly.express as px

px.bar(counts, x="confidence rank", y="times supervised", color="strategy", barmode="group",
       title="Views (out of n) in which a digit is masked, by its confidence rank (1 = least confident)")

# %% [markdown]
# OCN supervises the least-confident digit in all `n` views and the most confident in one (1+2+3+4 = 10
# masked positions per target); `most` is the mirror image; `sequential` and the random strategies spread
# supervision evenly over the ranks.

# %%
assert px_counts.loc["ocn"].tolist() == list(range(N, 0, -1))
assert px_counts.loc["most"].tolist() == list(range(1, N + 1))
for s in ("sequential", "random", "random_t"):
    row = px_counts.loc[s]
    assert row.max() - row.min() < 0.2, (s, row.tolist())

# %% [markdown]
# ## 3. Watching the digits learn
#
# `train(..., on_epoch=...)` calls us back after every epoch with the model in eval mode. We measure, on a
# fixed batch of validation users, each digit's accuracy and mean confidence *from the all-masked state*
# (`ocn.digit_report`): how often the model's best guess for that digit, with nothing filled in, is right.
# Epoch 0 is the untrained model. In quick mode an "epoch" is only a few optimiser steps.

# %%
from diffgrm.config import preset
from diffgrm.decode import pad_histories
from diffgrm.model import build_model
from diffgrm.ocn import digit_report
from diffgrm.train import train

model_cfg, base_cfg = preset("tiny", n_digits=N, codebook_size=K)
if QUICK:
    base_cfg = replace(base_cfg, epochs=6, max_steps=25, warmup_steps=20, eval_start=6, eval_users=300,
                       patience=10, max_minutes=0)  # budgets in epochs, never minutes: a busy machine trains the same
else:
    base_cfg = replace(base_cfg, epochs=4, max_steps=0, eval_start=4, patience=10, max_minutes=0)

valid = prepared.splits["valid"]
watch_hist = pad_histories(valid.histories, model_cfg.max_history)  # every user's validation history
watch_tgt = torch.from_numpy(cat.codes[valid.targets])

# a reference: always guess each digit's most frequent code among the training targets
train_codes = cat.codes[prepared.splits["train"].targets]
popular_code = [np.bincount(train_codes[:, d], minlength=K).argmax() for d in range(N)]
popular_acc = {f"digit {d}": float((watch_tgt[:, d] == popular_code[d]).float().mean()) for d in range(N)}
print("accuracy of always guessing the most frequent code:", {k: round(v, 3) for k, v in popular_acc.items()})


def watcher(log, strategy):
    def on_epoch(epoch, model, row):
        rep = digit_report(model, watch_hist.to(model.device), watch_tgt.to(model.device))
        for d in range(N):
            log.append({"strategy": strategy, "epoch": epoch, "digit": f"digit {d}", "loss": row["loss"],
                        "accuracy": float(rep["accuracy"][d]), "confidence": float(rep["confidence"][d])})
    return on_epoch


def run(strategy, log):
    torch.manual_seed(base_cfg.seed)
    watcher(log, strategy)(0, build_model(model_cfg, torch.from_numpy(cat.codes)).eval(), {"loss": float("nan")})
    cfg = replace(base_cfg, noising=strategy)
    t0 = time.perf_counter()
    res = train(prepared, model_cfg, cfg, progress=False, on_epoch=watcher(log, strategy))
    print(f"{strategy}: {len(res.history)} epochs in {time.perf_counter() - t0:.0f} s, "
          f"loss {res.history[0]['loss']:.3f} -> {res.history[-1]['loss']:.3f}")
    return res


log = []
ocn_run = run("ocn", log)
log_df = pd.DataFrame(log)
rep = digit_report(ocn_run.model, watch_hist.to(ocn_run.model.device), watch_tgt.to(ocn_run.model.device))
assert rep["accuracy"].shape == rep["confidence"].shape == (N,)
assert ((0 <= log_df[["accuracy", "confidence"]]) & (log_df[["accuracy", "confidence"]] <= 1)).all().all()
assert ocn_run.history[-1]["loss"] < ocn_run.history[0]["loss"], "the OCN loss did not fall"

# %% [markdown]
# One line per digit: accuracy (left) and mean confidence (right) from the all-masked state, per epoch. The
# loss fell over training (checked above). A model that ignores the history can at best learn each digit's
# most frequent code (the accuracy printed above); accuracy beyond that comes from reading the history.

# %%
long = log_df[log_df.strategy == "ocn"].melt(id_vars=["epoch", "digit"], value_vars=["accuracy", "confidence"])
fig = px.line(long, x="epoch", y="value", color="digit", facet_col="variable", markers=True,
              title="OCN training: per-digit accuracy and confidence with every digit masked")
fig.update_yaxes(matches=None, showticklabels=True, rangemode="tozero")
fig

# %% [markdown]
# With the trained model's own confidence, OCN decides which *digits* (not ranks) get the most supervision
# on the watched batch. Each target still contributes exactly 10 masked positions; how they spread over the
# digits is the model's current view of which digits are hard:

# %%
from diffgrm.ocn import digit_confidence

model = ocn_run.model
with torch.no_grad():
    memory, keep = model.encode(watch_hist.to(model.device))
    conf_model = digit_confidence(model, model.cross_kv(memory), keep)
_, m, _ = make_views("ocn", watch_tgt.to(model.device), conf_model)
assert (m.sum((1, 2)) == N * (N + 1) // 2).all()
per_digit = m.sum(1).float().mean(0).cpu().numpy()
px.bar(x=[f"digit {d}" for d in range(N)], y=per_digit, labels={"x": "", "y": "views masked (mean)"},
       title="Trained model: how often OCN masks each digit on the watched batch")

# %% [markdown]
# ## 4. OCN vs random masking, side by side
#
# The same model, data, seed and number of steps, trained once with OCN and once with random masking. The
# losses are not comparable with each other (the two strategies average over different masked positions);
# per-digit accuracy from the all-masked state and validation NDCG are.

# %%
random_run = run("random", log)
log_df = pd.DataFrame(log)
assert random_run.history[-1]["loss"] < random_run.history[0]["loss"], "the random-masking loss did not fall"
fig = px.line(log_df, x="epoch", y="accuracy", color="digit", line_dash="strategy", markers=True,
              title="Per-digit accuracy (all digits masked): OCN (solid) vs random masking (dashed)")
fig

# %%
last = log_df.sort_values("epoch").groupby(["digit", "strategy"])["accuracy"].last().unstack()  # each run's last epoch
last["most frequent code"] = pd.Series(popular_acc)
summary = pd.DataFrame({
    "mean all-masked accuracy": last.mean(),
    "valid NDCG@10": {"ocn": ocn_run.best_valid["ndcg@10"], "random": random_run.best_valid["ndcg@10"]},
    "valid Recall@10": {"ocn": ocn_run.best_valid["recall@10"], "random": random_run.best_valid["recall@10"]},
}).drop(index="most frequent code")
better = "OCN" if summary.loc["ocn", "valid NDCG@10"] > summary.loc["random", "valid NDCG@10"] else "random masking"
print(f"In this run ({'quick' if QUICK else 'full'} mode, {base_cfg.epochs} epochs) {better} has the higher "
      f"validation NDCG@10 ({summary.loc['ocn', 'valid NDCG@10']:.4f} OCN vs "
      f"{summary.loc['random', 'valid NDCG@10']:.4f} random) on {base_cfg.eval_users or len(valid)} users.")
if QUICK:
    print("Quick-mode runs are 150 optimiser steps, validated on 300 users: small differences are noise.")
for strategy in ("ocn", "random"):
    above = [d for d in last.index if last.loc[d, strategy] > popular_acc[d]]
    print(f"{strategy}: beats the most-frequent-code guess on {len(above)} of {N} digits {above}")
pd.concat([last, summary.T], axis=0).round(4)

# %% [markdown]
# ### The evidence at full scale
#
# The runs above are short. On Amazon Beauty's whole test split (`python -m bench quality`, the `cpu` preset, three seeds,
# `bench/results/quality.json`), the same model trained with OCN and with random masking:

# %%
from diffgrm.tutorial import seeds_table

evidence = seeds_table(Path("..") / "bench" / "results" / "quality.json",
                       {"OCN (nested views, least confident masked first)": "diffgrm",
                        "random masking": "random"})
gap = evidence["ndcg@10"].iloc[0] - evidence["ndcg@10"].iloc[1]
spread = evidence["ndcg@10 std"].max()
print(f"OCN leads random masking by {gap:.4f} NDCG@10, {gap / spread:.1f}x the larger seeds' spread")
assert gap > spread  # more than the seeds' spread: OCN's views help at this budget
evidence.round(4)

# %% [markdown]
# ## 5. Does CPD follow OCN's order?
#
# OCN trains on the states of one trajectory, the one its first confidence pass assumes. Take a test user of the
# shipped MovieLens-100K demo run: left, OCN's views of the held-out SID (each row knows one more digit); right, the
# digits CPD's best beam filled, step by step. A green row is a state both know: OCN trained on exactly the partial
# SID that CPD passed through.

# %%
import json
import tempfile

from diffgrm import viz
from diffgrm.decode import Recommender
from diffgrm.demo import ensure_demo_run
from diffgrm.onpolicy import cpd_order, ocn_order
from diffgrm.train import load_run as load_demo

demo_dir = Path(tempfile.mkdtemp()) / "ml-tiny"
demo_model, demo_data, _ = load_demo(ensure_demo_run(demo_dir, progress=False), device="cpu")
demo_rec = Recommender(demo_model)
demo_test = demo_data.splits["test"]
user_row = 0
demo_hist, demo_target = demo_test.histories[user_row], int(demo_test.targets[user_row])
their_ocn = ocn_order(demo_rec, [demo_hist])[0]
found = demo_rec.search([demo_hist], beam=32, topk=10, trace=True, exclude_seen=True)
their_cpd = cpd_order(found.traces[0])
best = found.traces[0].lineage(0)
best_codes = found.traces[0].tokens[-1, best[-1]]
print("OCN unmasks the digits in the order", their_ocn.tolist(), "; CPD filled them in the order", their_cpd.tolist())
viz.views_beside_fills(their_ocn, their_cpd, demo_data.catalogue.codes[demo_target], cpd_codes=best_codes)

# %% [markdown]
# Over all 943 test users (`python -m bench on-policy`, results in `bench/results/on-policy.md`): at each CPD step, which
# of OCN's ranks the filled digit had. The first fill usually agrees; later fills, after the network has been
# asked again, much less often.

# %%
on_policy = json.loads((Path("..") / "bench" / "results" / "on-policy.json").read_text())["agreement"]
print(f"same first digit: {on_policy['first']:.0%} of users (chance {on_policy['first_chance']:.0%}); "
      f"same whole order: {on_policy['exact']:.0%} (chance {on_policy['exact_chance']:.0%})")
assert on_policy["first"] > 2 * on_policy["first_chance"] and on_policy["exact"] < 0.5  # often at first, rarely all the way
viz.order_agreement_figure(on_policy)

# %% [markdown]
# ## Exercises
#
# Predict the answer first, then open the hidden cell below each exercise and run it: it computes
# the answer and checks it with an `assert`.

# %% [markdown]
# ### Exercise 1
#
# In OCN's views of the first target, how many of the `N` views mask its least confident digit? And its
# most confident one?

# %% jupyter={"source_hidden": true}
least, most = int(confidence[0].argmin()), int(confidence[0].argmax())
times = masked[0].sum(0)  # per digit, in how many views it is masked
print(f"least confident digit {least}: masked in {int(times[least])} views; most confident {most}: {int(times[most])}")
assert int(times[least]) == N and int(times[most]) == 1

# %% [markdown]
# ### Exercise 2
#
# `random_t` weights each view by 1/t, `random` by 1. Predict what the two strategies' weights look like.

# %% jupyter={"source_hidden": true}
g = torch.Generator().manual_seed(0)
_, _, w_random = make_views("random", targets, generator=g)
_, _, w_t = make_views("random_t", targets, generator=g)
print("random:", w_random[0].tolist(), "| random_t:", [round(v, 2) for v in w_t[0].tolist()])
assert (w_random == 1).all() and (w_t >= 1).all()  # t <= 1, so 1/t >= 1

# %% [markdown]
# ### Exercise 3
#
# If every digit is exactly as confident as the others, which digit does OCN's first view mask?

# %% jupyter={"source_hidden": true}
flat = torch.full((1, N), 0.5)
tok, msk, _ = make_views("ocn", targets[:1], flat)
print("first view masks digits", msk[0, 0].nonzero().flatten().tolist())
assert msk[0, 0].tolist() == [True] + [False] * (N - 1)  # a stable sort: ties keep the digits' order

# %% [markdown]
# ## What to try next
#
# - Run in full mode: four epochs over the whole training split per strategy (up to 8 minutes each) give
#   differences that mean more than the quick run's.
# - Try the other strategies in `STRATEGIES` (`most`, `sequential`, `random_t`) in `run(...)`.
# - Replace `digit_report`'s all-masked accuracy by accuracy after filling the most confident digit: does OCN
#   help the later denoising steps more than the first?
# - Train on Amazon Beauty with `diffgrm train runs/beauty --noising random` vs `--noising ocn` for the real
#   comparison (`python -m bench quality` runs both, with AR and SASRec beside them).
