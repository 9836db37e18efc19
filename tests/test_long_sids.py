"""Issue 21's options: fewer OCN views per step, distinct k-means seeds per digit, the paper's protocol."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffgrm.config import ModelConfig, TokenizerConfig, TrainConfig
from diffgrm.errors import DiffGRMError
from diffgrm.model import MASK, build_model
from diffgrm.ocn import make_views, ocn_loss, pick_views
from diffgrm.pse import PSETokenizer

CFG = dict(n_digits=8, codebook_size=16, d_model=32, n_heads=4, d_ff=64, enc_layers=1, dec_layers=2)


def _views(b: int = 64, n: int = 8):
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 16, (b, n), generator=g)
    conf = torch.rand(b, n, generator=g)
    tokens, masked, _ = make_views("ocn", targets, conf)
    return targets, tokens, masked


def test_random_pick_keeps_k_distinct_depths_of_the_same_trajectory():
    targets, tokens, masked = _views()
    t, m = pick_views(tokens, masked, 3, "random", torch.Generator().manual_seed(1))
    assert t.shape == m.shape == (64, 3, 8)
    depths = m.sum(-1)  # a view's depth is how many digits it masks
    assert (depths[:, 1:] > depths[:, :-1]).all()  # distinct, in depth order
    for i in range(64):  # every kept view is one of the sample's nested views, unchanged
        for v in range(3):
            j = int(depths[i, v]) - 1
            assert torch.equal(t[i, v], tokens[i, j]) and torch.equal(m[i, v], masked[i, j])
    assert (t[m] == MASK).all() and torch.equal(t[~m], targets[:, None, :].expand(64, 3, 8)[~m])
    # over many samples every depth, the all-masked state included, is drawn
    assert set(depths.flatten().tolist()) == set(range(1, 9))


def test_shallowest_pick_is_the_references_first_views_and_never_the_all_masked_state():
    _, tokens, masked = _views()
    t, m = pick_views(tokens, masked, 4, "shallowest")
    assert torch.equal(m.sum(-1), torch.arange(1, 5).expand(64, 4))
    assert torch.equal(t, tokens[:, :4])
    same_t, same_m = pick_views(tokens, masked, 0, "random")  # 0 (or >= n): all views
    assert same_t is tokens and same_m is masked
    with pytest.raises(DiffGRMError, match="view pick"):
        pick_views(tokens, masked, 2, "deepest")


def test_fewer_views_make_a_cheaper_loss_that_still_trains_every_digit():
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (40, 8))
    model = build_model(ModelConfig(**CFG), codes).train()
    hist = torch.randint(0, 40, (16, 5))
    targets = codes[torch.randint(0, 40, (16,))]
    full = ocn_loss(model, hist, targets, generator=torch.Generator().manual_seed(0))
    one = ocn_loss(model, hist, targets, generator=torch.Generator().manual_seed(0), views=1)
    two = ocn_loss(model, hist, targets, generator=torch.Generator().manual_seed(0), views=2, pick="shallowest")
    assert torch.isfinite(full) and torch.isfinite(one) and torch.isfinite(two)
    assert not torch.allclose(full, one)
    grads = torch.autograd.grad(one, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_config_checks_the_new_options():
    with pytest.raises(DiffGRMError, match="ocn_views"):
        TrainConfig(ocn_views=-1)
    with pytest.raises(DiffGRMError, match="ocn_pick"):
        TrainConfig(ocn_pick="deep")
    with pytest.raises(DiffGRMError, match="select"):
        TrainConfig(select="user")
    with pytest.raises(DiffGRMError, match="kmeans_seeds"):
        TokenizerConfig(kmeans_seeds="same")
    # folders prepared before the option existed were fit with one shared seed
    assert TokenizerConfig.from_dict({"n_digits": 4}).kmeans_seeds == "shared"
    assert TokenizerConfig().kmeans_seeds == "distinct"


def test_distinct_seeds_stop_codes_lining_up_across_digits():
    """One seed for every sub-quantizer gives tight clusters the same code number in every digit."""
    rng = np.random.default_rng(0)
    # 60 tight clusters in 32 dimensions: each cluster is tight in every 8-d subspace
    centres = rng.normal(size=(60, 32))
    x = (centres[rng.integers(0, 60, 3000)] + 0.05 * rng.normal(size=(3000, 32))).astype(np.float32)
    same = {}
    for seeds in ("shared", "distinct"):
        cfg = TokenizerConfig(method="pq", n_digits=4, codebook_size=64, pca_dim=32, kmeans_iters=10, kmeans_seeds=seeds)
        codes = PSETokenizer(cfg).fit(x).transform(x)
        same[seeds] = float(np.mean([(codes[:, a] == codes[:, b]).mean() for a in range(4) for b in range(a + 1, 4)]))
    assert same["shared"] > 0.2  # the labels line up although nothing ties digit a's code c to digit b's
    assert same["distinct"] < 0.05  # chance is 1/64


def test_paper_protocol_needs_collisions_and_leads_with_the_sid_level(chain_run, chain_prepared, tmp_path, capsys):
    from diffgrm.cli import main
    from diffgrm.config import preset
    from diffgrm.prepare import load_prepared
    from diffgrm.train import train

    assert main(["evaluate", str(chain_run), "--protocol", "paper", "--quiet"]) == 2
    assert "--no-repair" in capsys.readouterr().err
    raw = tmp_path / "prepared-raw"
    data = chain_prepared.parent / "raw"
    assert main(["prepare", "--dataset", str(data), "--out", str(raw), "--codebook", "2", "--no-repair", "--quiet"]) == 0
    prepared = load_prepared(raw)
    assert len(np.unique(prepared.catalogue.codes, axis=0)) < prepared.n_items  # collisions kept
    model_cfg, cfg = preset("tiny", n_digits=4, codebook_size=2)
    run = tmp_path / "run"
    train(prepared, model_cfg, replace(cfg, epochs=2, max_steps=5, eval_users=0, select="sid"), run, device="cpu",
          progress=False)
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    best = max(rows, key=lambda r: r.get("valid_score", -1))
    assert best["valid_score"] == pytest.approx(0.8 * best["valid_sid"]["ndcg@10"] + 0.2 * best["valid_sid"]["recall@10"])
    capsys.readouterr()
    assert main(["evaluate", str(run), "--protocol", "paper", "--beam", "16", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "the paper's protocol" in out[0]
    assert out[2].startswith("sid") and out[3].startswith("item")
    assert "share a SID" in out[4]
    m = json.loads((run / "metrics.json").read_text())
    assert m["protocol"] == "paper" and m["select"] == "sid" and m["collision_rate"] > 0
    # a shared SID counts for every item in it, so the SID level can only be higher
    assert m["sid"]["ndcg@10"] >= m["item"]["ndcg@10"] and m["sid"]["recall@10"] >= m["item"]["recall@10"]


def test_popularity_without_seen_items_skips_each_users_history():
    from diffgrm.metrics import popularity_metrics

    train = np.array([0, 0, 0, 1, 1, 2])  # popularity order 0, 1, 2, then 3.. by index
    targets = np.array([1, 1])
    plain = popularity_metrics(train, targets, 6, ks=(1,))
    assert plain["recall@1"] == 0.0  # item 0 fills the only slot for both users
    seen = popularity_metrics(train, targets, 6, ks=(1,), histories=[np.array([0]), np.array([3])])
    assert seen["recall@1"] == 0.5  # user 0 has item 0: item 1 moves up; user 1 still gets item 0
    with pytest.raises(DiffGRMError, match="histories"):
        popularity_metrics(train, targets, 6, histories=[np.array([0])])


def test_evaluate_can_keep_history_items_out_of_the_top_k(chain_run, capsys):
    from diffgrm.cli import main
    from diffgrm.decode import Recommender
    from diffgrm.train import load_run

    assert main(["evaluate", str(chain_run), "--split", "valid", "--beam", "16", "--exclude-seen", "--quiet"]) == 0
    assert "history items excluded" in capsys.readouterr().out
    m = json.loads((chain_run / "metrics.json").read_text())
    assert m["exclude_seen"] is True and m["popularity"]["recall@10"] >= 0
    model, prepared, _ = load_run(chain_run)
    valid = prepared.splits["valid"]
    res = Recommender(model).search(valid.histories[:20], beam=16, exclude_seen=True)
    for items, hist in zip(res.items.numpy(), valid.histories[:20]):
        assert not set(items[items >= 0].tolist()) & set(hist.tolist())
