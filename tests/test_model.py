"""The network and OCN's views on hand-made cases."""

import pytest
import torch

from diffgrm.config import ModelConfig
from diffgrm.errors import DiffGRMError
from diffgrm.model import MASK, build_model
from diffgrm.ocn import make_views, masked_loss, nested_views

CFG = dict(n_digits=4, codebook_size=16, d_model=32, n_heads=4, d_ff=64, enc_layers=1, dec_layers=2)


@pytest.fixture
def codes():
    return torch.randint(0, 16, (50, 4), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_shapes_and_padding_invariance(kind, codes):
    model = build_model(ModelConfig(kind=kind, **CFG), codes).eval()
    hist = torch.tensor([[3, 4, 5, MASK, MASK], [7, 8, 9, 10, 11]])
    memory, keep = model.encode(hist)
    kv = model.cross_kv(memory)
    if kind == "diffgrm":
        tokens = torch.full((2, 3, 4), MASK)
        tokens[:, 1, 2] = 5
        logits = model.denoise(tokens, kv, keep)
        assert logits.shape == (2, 3, 4, 16)
        short_mem, short_keep = model.encode(hist[:1, :3])
        alone = model.denoise(tokens[:1], model.cross_kv(short_mem), short_keep)
    else:
        logits = model.next_logits(torch.zeros(2, 3, 2, dtype=torch.long), kv, keep)
        assert logits.shape == (2, 3, 16)
        assert model.teacher_logits(codes[:2, None], kv, keep).shape == (2, 1, 4, 16)
        short_mem, short_keep = model.encode(hist[:1, :3])
        alone = model.next_logits(torch.zeros(1, 3, 2, dtype=torch.long), model.cross_kv(short_mem), short_keep)
    # padding the history changes nothing
    torch.testing.assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)


def test_rows_of_a_user_are_independent(codes):
    """Beams/views share the history but not each other: row 0's output ignores row 1's tokens."""
    model = build_model(ModelConfig(**CFG), codes).eval()
    memory, keep = model.encode(torch.tensor([[1, 2, 3]]))
    kv = model.cross_kv(memory)
    a = torch.full((1, 2, 4), MASK)
    b = a.clone()
    b[0, 1] = torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(model.denoise(a, kv, keep)[:, 0], model.denoise(b, kv, keep)[:, 0])


def test_ar_is_causal(codes):
    model = build_model(ModelConfig(kind="ar", **CFG), codes).eval()
    memory, keep = model.encode(torch.tensor([[1, 2, 3]]))
    kv = model.cross_kv(memory)
    x = model.teacher_logits(torch.tensor([[[1, 2, 3, 4]]]), kv, keep)
    y = model.teacher_logits(torch.tensor([[[1, 2, 9, 9]]]), kv, keep)
    torch.testing.assert_close(x[..., :3, :], y[..., :3, :])  # digit t sees only digits < t
    assert not torch.allclose(x[..., 3, :], y[..., 3, :])


def test_heads_are_tied_to_the_code_embeddings(codes):
    """Digit d's logits are scores against digit d's rows of the input table: no separate head."""
    model = build_model(ModelConfig(**CFG), codes).eval()
    assert not any("head" in name for name, _ in model.named_parameters())
    hist = torch.tensor([[i for i in range(50) if codes[i, 2] != 5][:3]])  # no input uses (digit 2, code 5)
    tokens = torch.full((1, 1, 4), MASK)

    def logits():
        memory, keep = model.encode(hist)
        return model.denoise(tokens, model.cross_kv(memory), keep)[0, 0]

    before = logits()
    with torch.no_grad():
        model.code_emb.weight[2 * 16 + 5] *= -3.0  # digit 2, code 5
    after = logits()
    changed = (after - before).abs() > 1e-6
    assert changed[2, 5] and changed.sum() == 1


def test_empty_history_and_bad_codes_are_clear(codes):
    model = build_model(ModelConfig(**CFG), codes)
    with pytest.raises(DiffGRMError, match="history is empty"):
        model.encode(torch.tensor([[MASK, MASK]]))
    with pytest.raises(DiffGRMError, match="item codes must be"):
        build_model(ModelConfig(**CFG), torch.full((5, 4), 16))
    with pytest.raises(DiffGRMError, match="unknown model kind"):
        ModelConfig(kind="gpt")


def test_ocn_views_follow_the_confidence_order():
    targets = torch.tensor([[10, 11, 12, 13]])
    conf = torch.tensor([[0.9, 0.1, 0.5, 0.3]])  # least confident first: 1, 3, 2, 0
    tokens, masked, weights = make_views("ocn", targets, conf)
    assert masked[0].int().tolist() == [[0, 1, 0, 0], [0, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    assert tokens[0, 1].tolist() == [10, MASK, 12, MASK]
    assert masked[0].sum(0).tolist() == [1, 4, 2, 3]  # the hardest digit is supervised n times
    assert weights.tolist() == [[1.0] * 4]
    _, most, _ = make_views("most", targets, conf)
    assert most[0, 0].int().tolist() == [1, 0, 0, 0]


def test_nested_views_for_any_n():
    targets = torch.arange(6)[None]
    order = torch.tensor([[5, 0, 4, 1, 3, 2]])
    tokens, masked = nested_views(targets, order)
    assert masked.shape == (1, 6, 6) and masked[0].sum(1).tolist() == [1, 2, 3, 4, 5, 6]
    assert masked[0, -1].all()  # the all-masked state is trained (the reference misses it for n > 4)
    assert masked[0, 2].nonzero().flatten().tolist() == [0, 4, 5]
    assert (tokens[~masked.expand_as(tokens)] == targets.expand(6, 6)[~masked[0]]).all()


@pytest.mark.parametrize("strategy", ["random", "random_t", "sequential"])
def test_other_strategies_mask_at_least_one_digit(strategy):
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 16, (64, 4), generator=g)
    tokens, masked, weights = make_views(strategy, targets, generator=g)
    assert tokens.shape == (64, 4, 4) and masked.any(-1).all()
    assert ((tokens == MASK) == masked).all()
    if strategy == "random_t":
        assert (weights >= 1).all() and (weights > 1).any()
    if strategy == "sequential":
        assert (masked.sum(-1) == torch.arange(1, 5)).all()
    with pytest.raises(DiffGRMError, match="needs the model's confidence"):
        make_views("ocn", targets)


def test_loss_counts_only_masked_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 8, generator=g)
    targets = torch.randint(0, 8, (2, 4), generator=g)
    masked = torch.zeros(2, 3, 4, dtype=torch.bool)
    masked[:, :, 1] = True
    w = torch.ones(2, 3)
    base = masked_loss(logits, targets, masked, w, 0.1)
    changed = logits.clone()
    changed[:, :, 0] += 5.0  # an unmasked digit
    assert masked_loss(changed, targets, masked, w, 0.1) == base
    changed[:, :, 1] += torch.randn(8, generator=g)
    assert masked_loss(changed, targets, masked, w, 0.1) != base


@pytest.mark.parametrize("filled", [0, 1, 2, 3])
def test_masked_only_decoding_matches_the_full_pass_on_masked_digits(codes, filled):
    model = build_model(ModelConfig(kind="diffgrm", **CFG), codes).eval()
    memory, keep = model.encode(torch.tensor([[3, 4, 5, MASK], [7, 8, 9, 10]]))
    kv = model.cross_kv(memory)
    gen = torch.Generator().manual_seed(filled)
    tokens = torch.full((2, 5, 4), MASK)
    for b in range(2):  # every row has `filled` digits filled, at different positions
        for r in range(5):
            where = torch.randperm(4, generator=gen)[:filled]
            tokens[b, r, where] = torch.randint(0, 16, (filled,), generator=gen)
    full = model.denoise(tokens, kv, keep)
    fast = model.denoise_masked(tokens, kv, keep)
    masked = tokens == MASK
    assert fast.shape == (2, 5, 4 - filled, 16)  # the masked digits only, in ascending order
    torch.testing.assert_close(fast.reshape(-1, 16), full[masked], atol=1e-5, rtol=1e-4)
    tokens[0, 0, :] = MASK  # rows with different numbers of masked digits
    if filled:
        with pytest.raises(DiffGRMError, match="same number of masked digits"):
            model.denoise_masked(tokens, kv, keep)


def test_the_three_entry_points_compute_the_same_slots(codes):
    """denoise (every slot), denoise_masked (the masked ones) and denoise_selected (any chosen
    ones, Q per user) are one network: the slots they share get the same logits."""
    model = build_model(ModelConfig(kind="diffgrm", **CFG), codes).eval()
    memory, keep = model.encode(torch.tensor([[3, 4, 5, MASK], [7, 8, 9, 10]]))
    kv = model.cross_kv(memory)
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 16, (2, 3, 4), generator=gen)
    tokens[torch.rand(2, 3, 4, generator=gen) < 0.5] = MASK
    full = model.denoise(tokens, kv, keep)
    assert full.shape == (2, 3, 4, 16)
    select = torch.zeros(2, 3, 4, dtype=torch.bool)
    for b in range(2):  # 5 selected slots per user, at different places
        select[b].view(-1)[torch.randperm(12, generator=gen)[:5]] = True
    some = model.denoise_selected(tokens, kv, keep, select)
    assert some.shape == (2, 5, 16)
    torch.testing.assert_close(some.reshape(-1, 16), full[select], atol=1e-5, rtol=1e-4)
    open_one = tokens.clone()
    open_one[..., 2] = MASK
    open_one[..., [0, 1, 3]] = open_one[..., [0, 1, 3]].clamp(min=0)  # exactly digit 2 masked in every row
    torch.testing.assert_close(model.denoise_masked(open_one, kv, keep)[..., 0, :],
                               model.denoise(open_one, kv, keep)[..., 2, :], atol=1e-5, rtol=1e-4)


def test_search_is_the_same_with_and_without_the_masked_only_pass(codes):
    import numpy as np

    from diffgrm.decode import Recommender

    model = build_model(ModelConfig(kind="diffgrm", **CFG), codes).eval()
    rec = Recommender(model)
    hist = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9])]
    for order, steps in [("confidence", None), ("fixed", None), ("random", None), ("confidence", 2), ("fixed", 1)]:
        fast = rec.search(hist, beam=12, topk=10, order=order, passes=steps)  # no trace: masked-only pass
        full = rec.search(hist, beam=12, topk=10, order=order, passes=steps, trace=True)  # trace: full pass
        assert (fast.items == full.items).all(), (order, steps)
        torch.testing.assert_close(fast.scores, full.scores, atol=1e-4, rtol=1e-4)


def test_item_id_embedding_separates_items_that_share_a_sid():
    """The extension: with ``item_id_emb`` two items with the same SID encode differently."""
    codes = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 0], [0, 1, 2, 3]])
    for switch in (False, True):
        torch.manual_seed(0)
        model = build_model(ModelConfig(codebook_size=4, d_model=16, n_heads=2, d_ff=32, item_id_emb=switch), codes).eval()
        mem, _ = model.encode(torch.tensor([[0], [1]]))
        assert torch.allclose(mem[0], mem[1]) != switch
        assert (model.item_emb is not None) == switch
        if switch:
            assert model.item_emb.weight.shape == (3, 16)


def test_input_dropout_acts_in_training_only():
    codes = torch.tensor([[1, 2, 3, 0], [0, 1, 2, 3]])
    torch.manual_seed(0)
    model = build_model(ModelConfig(codebook_size=4, d_model=16, n_heads=2, d_ff=32, dropout=0.0, input_dropout=0.5), codes)
    mem, keep = model.encode(torch.tensor([[0, 1]]))
    kv = model.cross_kv(mem)
    tokens = torch.tensor([[[1, MASK, 3, MASK]]])
    model.eval()
    a, b = model.denoise(tokens, kv, keep), model.denoise(tokens, kv, keep)
    assert torch.equal(a, b)
    model.train()
    assert not torch.allclose(model.denoise(tokens, kv, keep), a)
    with pytest.raises(DiffGRMError, match="dropout"):
        ModelConfig(input_dropout=1.0)


@pytest.mark.parametrize("strategy", ["ocn", "most", "sequential"])
def test_training_on_the_masked_slots_only_gives_the_full_loss_and_gradients(codes, strategy):
    """OCN's loss computes the last layer on the masked slots only (``select``): same loss, same grads."""
    from diffgrm import ocn

    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**CFG, "dropout": 0.0}), codes).train()
    hist = torch.randint(0, 50, (8, 6), generator=torch.Generator().manual_seed(1))
    hist[0, 3:] = MASK
    targets = codes[torch.randint(0, 50, (8,), generator=torch.Generator().manual_seed(2))]
    results = []
    for nested in (ocn.NESTED, ()):
        old, ocn.NESTED = ocn.NESTED, nested
        try:
            loss = ocn.ocn_loss(model, hist, targets, strategy=strategy, label_smoothing=0.1,
                                generator=torch.Generator().manual_seed(3))
        finally:
            ocn.NESTED = old
        results.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
    (l1, g1), (l2, g2) = results
    assert torch.allclose(l1, l2, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2))
    mem, keep = model.encode(hist)
    ragged = torch.zeros(8, 4, 4, dtype=torch.bool)
    ragged[0, 0, 0] = True
    with pytest.raises(DiffGRMError, match="same number of selected slots"):
        model.denoise_selected(torch.full((8, 4, 4), MASK), model.cross_kv(mem), keep, ragged)
