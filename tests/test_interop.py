"""diffgrm.interop: a Cornac DiffGRM trained here in seconds, exported, imported, and compared
number for number with Cornac's own network and scoring; bad imports; reference checkpoints
(synthetic state dicts in the reference's layout, never its artefacts).

Cornac is a test dependency (the ``cornac`` extra): without it this module fails at import, it
never skips.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import cornac  # the cornac extra; missing, this module fails loudly
import numpy as np
import pytest
import torch
from cornac.data import SequentialDataset
from cornac.models.diffgrm import DiffGRM as CornacDiffGRM
from safetensors.torch import load_file, save_file

from diffgrm.config import TrainConfig
from diffgrm.data import load_dataset
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.explorer import Explorer
from diffgrm.interop import KIND, ReleasedDiffGRM, export_cornac, import_cornac, import_reference
from diffgrm.interop.reference import check_torch
from diffgrm.model import MASK
from diffgrm.portable import load_data, verify_run
from diffgrm.report import build_report
from diffgrm.safeio import file_checksums
from diffgrm.slides import build_deck
from diffgrm.train import evaluate_split, load_run, train
from tests.conftest import write_chain_dataset

N, K, MAX_LEN = 3, 8, 6
"""3 digits x 8 codes: a beam of 4096 keeps every candidate of every step (at most 3,072), in both searches.
Histories are 4 to 7 items long, so a window of 6 both pads and truncates."""
BEAM = 4096


def cornac_train_set(dataset, item_ids: list[str]) -> SequentialDataset:
    """Cornac's training data: each user's sequence without its last two items (diffgrm's
    leave-one-out training part), item indices in diffgrm's order."""
    rows = [(str(u), str(u), item_ids[i], t) for u, seq in zip(dataset.users, dataset.sequences)
            for t, i in enumerate(seq[:-2])]
    order = OrderedDict((iid, k) for k, iid in enumerate(item_ids))
    return SequentialDataset.build(rows, fmt="USIT", global_iid_map=order, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """A Cornac DiffGRM on the chain dataset with synthetic one-to-one SIDs (about 3 s), exported and imported."""
    root = tmp_path_factory.mktemp("interop")
    data = write_chain_dataset(root / "chain")
    ds = load_dataset(data, download=False)
    ids = ds.items["item_id"].tolist()
    combos = np.random.default_rng(0).choice(K**N, size=len(ids), replace=False)
    sids = np.stack([(combos // K**d) % K for d in range(N)], 1).astype(np.int64)
    model = CornacDiffGRM(n_digit=N, codebook_size=K, item_sids=sids, d_model=32, n_head=4, encoder_n_layer=1,
                          decoder_n_layer=2, n_inner=64, dropout=0.1, max_len=MAX_LEN, min_history=1, n_epochs=4,
                          batch_size=32, learning_rate=3e-3, lr_schedule="constant", warmup_steps=0, scoring="paper",
                          beam_size=BEAM, model_selection="last", seed=0)
    torch.manual_seed(0)
    model.fit(cornac_train_set(ds, ids))
    export = export_cornac(model, root / "export")
    run = import_cornac(export, data, root / "run")
    return SimpleNamespace(root=root, data=data, ids=ids, sids=sids, cornac=model, export=export, run=run)


def cornac_logprobs(model, history: list[int], tokens: np.ndarray) -> np.ndarray:
    """Cornac's own network on one history (right-padded to max_len, as its score() does)."""
    h = history[-model.max_len:]
    inputs = torch.full((1, model.max_len), model.total_items, dtype=torch.long)
    inputs[0, : len(h)] = torch.tensor(h)
    mask = torch.zeros(1, model.max_len)
    mask[0, : len(h)] = 1
    with torch.no_grad():
        memory, padding = model.model.encode_history(inputs, mask)
        logits = model.model.decode_logits(memory.expand(len(tokens), -1, -1), padding.expand(len(tokens), -1),
                                           torch.as_tensor(tokens))
    return logits.log_softmax(-1).numpy()


def partial_sids(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random partial SIDs: every number of known digits, 0 to n."""
    tokens = rng.integers(0, K, size=(count, N))
    known = rng.integers(0, N + 1, size=count)
    for row, k in enumerate(known):
        tokens[row, rng.permutation(N)[k:]] = MASK
    return tokens


def test_cornac_is_the_pinned_release():
    assert cornac.__version__ == "3.0.1"


def test_imported_network_gives_cornacs_digit_logprobs(trained):
    model, prepared, meta = load_run(trained.run, device="cpu")
    assert isinstance(model, ReleasedDiffGRM) and model.config.kind == KIND
    assert (meta["source"], meta["label"]) == ("cornac", "diffgrm's CPD on a Cornac network")
    rec, rng = Recommender(model), np.random.default_rng(1)
    test = prepared.splits["test"]
    lengths = {len(h) for h in test.histories}
    assert min(lengths) < MAX_LEN < max(lengths)  # padded windows and truncated ones are both checked
    worst = 0.0
    for history in test.histories[:40]:
        tokens = partial_sids(rng, 12)
        ours = rec.digit_logprobs(history, tokens)
        theirs = cornac_logprobs(trained.cornac, [int(i) for i in history], tokens)
        worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst < 1e-5, worst


def test_wide_beam_topk_is_cornacs_catalogue_scoring(trained):
    """Cornac scores an item by the best path score of its SID over the fill orders its beam kept
    (every order, at this beam); diffgrm's CPD, wide enough to keep every candidate, ranks the
    whole catalogue by the same numbers."""
    model, prepared, _ = load_run(trained.run, device="cpu")
    test = prepared.splits["test"]
    histories = test.histories[:12]
    result = Recommender(model).search(histories, beam=BEAM, topk=len(trained.ids))
    worst, agreed = 0.0, 0
    for row, history in enumerate(histories):
        theirs = trained.cornac.score(int(test.users[row]), [int(i) for i in history])
        items, scores = result.items[row].numpy(), result.scores[row].numpy()
        assert sorted(items.tolist()) == list(range(len(trained.ids)))  # every item, once
        worst = max(worst, float(np.abs(theirs[items] - scores).max()))
        ranking = np.argsort(-theirs, kind="stable")
        gaps = np.diff(np.sort(theirs)[::-1][:11])
        if np.all(np.abs(gaps) > 1e-4):  # no near-ties in Cornac's top 10: the lists must agree exactly
            assert items[:10].tolist() == ranking[:10].tolist()
            agreed += 1
    assert worst < 1e-5, worst
    assert agreed >= 6


def test_imported_run_evaluates_and_explains(trained):
    assert verify_run(trained.run)["source"] == "cornac"
    model, prepared, _ = load_run(trained.run, device="cpu")
    metrics = evaluate_split(model, prepared, "test", beam=16, progress=False)
    assert metrics["model"] == KIND and metrics["order"] == "confidence" and 0 <= metrics["item"]["ndcg@10"] <= 1
    ex = Explorer(trained.run)
    assert (ex.source, ex.label, ex.denoises) == ("cornac", "diffgrm's CPD on a Cornac network", True)
    case = ex.user(ex.users()["user"].iloc[0])
    rec = ex.recommend(case.history, beam=16, k=5)
    assert len(rec.table) == 5 and rec.trace is not None
    with pytest.raises(DiffGRMError, match="^this run was imported from Cornac, which does not keep its OPQ codebooks"):
        ex.codebook_coords("pca")
    details = json.loads((trained.run / "config.json").read_text())["imported"]
    assert details["settings"]["n_head"] == 4 and details["sids_match_data"] is None
    user = str(case.user)
    assert "confidence order" in build_report(ex, user, beam=16, k=5)
    assert "diffgrm&#x27;s CPD on a Cornac network, surest digits first" in build_deck(ex, user, beam=16, k=5)


def test_diffgrm_trains_the_released_network(trained, tmp_path):
    """The kind is a whole network: diffgrm's own loop (OCN, validation, resume state, checkpoint)
    trains it on the imported run's catalogue and users, and the run loads back."""
    model_cfg = load_run(trained.run, device="cpu")[0].config
    cfg = TrainConfig(epochs=1, batch_size=64, max_steps=3, warmup_steps=0, eval_users=20, eval_beam=16)
    train(load_data(trained.run), model_cfg, cfg, tmp_path / "retrained", device="cpu", progress=False)
    model, _, meta = load_run(tmp_path / "retrained", device="cpu")
    assert isinstance(model, ReleasedDiffGRM) and "source" not in meta
    assert not any(name.startswith("enc_ln") for name in model.state_dict())  # one final norm, saved once


def test_export_needs_no_cornac_import():
    code = "import sys, diffgrm.interop; assert 'cornac' not in sys.modules, sorted(m for m in sys.modules if 'cornac' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- bad imports


def copy_export(trained, tmp_path: Path, edit_meta=None, edit_weights=None) -> Path:
    """A copy of the export with its JSON and/or weights changed (the recorded sha256 kept consistent)."""
    folder = tmp_path / "export"
    folder.mkdir()
    meta = json.loads((trained.export / "export.json").read_text())
    state = load_file(str(trained.export / "weights.safetensors"))
    if edit_weights:
        edit_weights(state)
    save_file(state, str(folder / "weights.safetensors"))
    meta["sha256"] = file_checksums(folder, ("weights.safetensors",))
    if edit_meta:
        edit_meta(meta)
    (folder / "export.json").write_text(json.dumps(meta))
    return folder


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("edit_weights, edit_meta, message", [
    (lambda s: s.update({"mask_embeddings": torch.zeros(N, 16)}), None,
     r"tensor 'mask_embeddings' has shape \[3, 16\], expected \[3, 32\]"),
    (lambda s: s.pop("decoder_blocks.1.cross_attention.qkv.weight"), None,
     r"missing tensor 'decoder_blocks.1.cross_attention.qkv.weight'"),
    (lambda s: s.update({"extra_head.weight": torch.zeros(2, 2)}), None, r"unexpected tensor 'extra_head.weight'"),
    (lambda s: s.update({"item_codes": torch.zeros(61, N, dtype=torch.long)}), None, r"item_codes .* differ"),
    (None, lambda m: m.update(version=2), r"export version 2; this diffgrm reads version 1"),
    (None, lambda m: m.update(format="something-else"), r"not a diffgrm export of a Cornac model"),
    (None, lambda m: m["settings"].update(activation="relu"), r"activation='relu'"),
    (None, lambda m: m["settings"].pop("n_head"), r"the setting 'n_head' is missing"),
    (None, lambda m: m.update(sid_table=[row[:2] for row in m["sid_table"]]), r"'sid_table' has shape \[60, 2\]"),
    (None, lambda m: m.update(item_ids=[f"X{i}" for i in range(60)]), r"60 of the 60 items of .* have no SID"),
])
def test_bad_cornac_exports_are_one_clear_error(trained, tmp_path, edit_weights, edit_meta, message):
    folder = copy_export(trained, tmp_path, edit_meta, edit_weights)
    with pytest.raises(DiffGRMError, match=message) as exc:
        import_cornac(folder, trained.data, tmp_path / "run")
    one_line(exc)
    assert not (tmp_path / "run").exists()


def test_a_pickle_where_safetensors_belong_is_refused(trained, tmp_path):
    folder = copy_export(trained, tmp_path)
    state = {k: v.clone() for k, v in load_file(str(folder / "weights.safetensors")).items()}  # not the mapped file
    torch.save(state, folder / "weights.safetensors")
    with pytest.raises(DiffGRMError, match="is a pickle .*never unpickles") as exc:
        import_cornac(folder, trained.data, tmp_path / "run")
    one_line(exc)


def test_a_damaged_weights_file_is_refused(trained, tmp_path):
    folder = copy_export(trained, tmp_path)
    raw = bytearray((folder / "weights.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DiffGRMError, match="sha256 differs"):
        import_cornac(folder, trained.data, tmp_path / "run")


def test_data_with_other_items_is_refused(trained, tmp_path):
    other = write_chain_dataset(tmp_path / "bigger", n_items=61)
    with pytest.raises(DiffGRMError, match=r"1 of the 61 items of .* have no SID in .*export.json \(e.g. 'I60'\)"):
        import_cornac(trained.export, other, tmp_path / "run")
    fewer = write_chain_dataset(tmp_path / "smaller", n_items=59)
    with pytest.raises(DiffGRMError, match=r"1 of the 60 items in .* are not in .*smaller \(e.g. 'I59'\)"):
        import_cornac(trained.export, fewer, tmp_path / "run")


def test_export_of_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(DiffGRMError, match="fit the Cornac DiffGRM first"):
        export_cornac(CornacDiffGRM(), tmp_path / "x")


def test_out_holding_other_things_is_refused(trained, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DiffGRMError, match="is not empty"):
        import_cornac(trained.export, trained.data, tmp_path / "busy")
    with pytest.raises(DiffGRMError, match="already holds a trained run; pass --force"):
        import_cornac(trained.export, trained.data, trained.run)


# --------------------------------------------------------------------------- reference checkpoints


def reference_state(cornac_state: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """The Cornac network's tensors under the reference code's names and layout (one vocabulary
    table with PAD, BOS and EOS rows first; DataParallel's ``module.`` prefix): a synthetic
    checkpoint that must decode exactly as the Cornac run."""
    out = {"embedding.weight": torch.cat([torch.as_tensor(rng.normal(size=(3, 32)), dtype=torch.float32),
                                          cornac_state["code_embeddings"].reshape(N * K, 32)]),
           "mask_emb_table.weight": cornac_state["mask_embeddings"],
           "pos_emb_enc.weight": cornac_state["history_positions.weight"]}
    renames = [("item_projection", "item_mlp"), ("final_norm", "ln_f"), ("self_attention_norm", "ln_1"),
               ("cross_attention_norm", "ln_2"), ("attention_norm", "ln_1"), ("feed_forward_norm", "ln_2"),
               (".attention.", ".attn."), ("self_attention", "self_attn"), ("cross_attention", "cross_attn"),
               ("projection", "proj"), ("feed_forward.input", "mlp.c_fc"), ("feed_forward.output", "mlp.c_proj")]
    for key, value in cornac_state.items():
        if key in ("code_embeddings", "mask_embeddings", "history_positions.weight", "item_codes"):
            continue
        new = key
        if key.startswith("decoder_blocks") and "feed_forward_norm" in key:
            new = new.replace("feed_forward_norm", "ln_3")
        for old, repl in renames:
            new = new.replace(old, repl)
        out[new] = value
    return {f"module.{k}": v.clone() for k, v in out.items()}


@pytest.fixture
def reference_files(trained, tmp_path) -> SimpleNamespace:
    rng = np.random.default_rng(2)
    state = reference_state(load_file(str(trained.export / "weights.safetensors")), rng)
    torch.save(state, tmp_path / "pytorch_model.bin")
    order = rng.permutation(len(trained.ids))  # the reference numbers items its own way
    tokens = np.zeros((len(order) + 1, N), dtype=np.int64)
    tokens[1:] = 3 + np.arange(N) * K + trained.sids[order]
    np.save(tmp_path / "item_id2tokens.npy", tokens)
    (tmp_path / "ids.txt").write_text("\n".join(trained.ids[i] for i in order) + "\n")
    return SimpleNamespace(bin=tmp_path / "pytorch_model.bin", tokens=tmp_path / "item_id2tokens.npy",
                           ids=tmp_path / "ids.txt", state=state, tmp=tmp_path)


def test_reference_checkpoint_round_trip(trained, reference_files):
    f = reference_files
    run = import_reference(f.bin, f.tokens, trained.data, f.tmp / "run", n_heads=4, item_ids=f.ids)
    ref, prepared, meta = load_run(run, device="cpu")
    cor, _, _ = load_run(trained.run, device="cpu")
    assert (meta["source"], meta["label"]) == ("reference", "diffgrm's CPD on the reference code's network")
    assert ref.config == cor.config.__class__(**{**cor.config.to_dict(), "dropout": 0.1, "input_dropout": 0.1})
    assert torch.equal(ref.item_codes, cor.item_codes)  # rows matched back to the data's items by id
    tokens = partial_sids(np.random.default_rng(3), 16)
    for history in prepared.splits["test"].histories[:10]:
        a, b = Recommender(ref).digit_logprobs(history, tokens), Recommender(cor).digit_logprobs(history, tokens)
        assert np.abs(a - b).max() < 1e-6


def test_bad_reference_inputs_are_one_clear_error(trained, reference_files):
    f, data = reference_files, trained.data

    def refused(message, *args, **kwargs):
        kwargs = {"n_heads": 4, "item_ids": f.ids, **kwargs}
        with pytest.raises(DiffGRMError, match=message) as exc:
            import_reference(*args, data, f.tmp / "run", **kwargs)
        one_line(exc)

    pkl = f.tmp / "tokens2item.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    refused("never reads .pkl files", f.bin, pkl)
    (f.tmp / "junk.bin").write_bytes(b"not a checkpoint at all")
    refused(r"not a state dict that torch.load\(weights_only=True\) reads", f.tmp / "junk.bin", f.tokens)
    torch.save({**f.state, "module.output_adapter.weight": torch.zeros(32, 32)}, f.tmp / "untied.bin")
    refused("untied output head", f.tmp / "untied.bin", f.tokens)
    torch.save({k: v for k, v in f.state.items() if "ln_f" not in k}, f.tmp / "cut.bin")
    refused("missing tensor 'ln_f.weight'", f.tmp / "cut.bin", f.tokens)
    tokens = np.load(f.tokens)
    tokens[5, 1] = 3  # digit 0's first token where digit 1's belong
    np.save(f.tmp / "bad_tokens.npy", tokens)
    refused(r"row 5 digit 1 holds token 3, not one of digit 1's tokens \(11..18\)", f.bin, f.tmp / "bad_tokens.npy")
    np.save(f.tmp / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused("numpy reads without pickles", f.bin, f.tmp / "objects.npy")
    np.save(f.tmp / "wide.npy", np.zeros((61, 5), dtype=np.int64))
    refused(r"embedding.weight has 27 rows, which is not 3 \+ 5 digits x K codes", f.bin, f.tmp / "wide.npy")
    (f.tmp / "short_ids.txt").write_text("I0\nI1\n")
    refused("lists 2 item ids but the item_id2tokens array has 60 items", f.bin, f.tokens, item_ids=f.tmp / "short_ids.txt")
    refused("d_model .* must be divisible by n_heads", f.bin, f.tokens, n_heads=5)


def test_reference_path_needs_a_recent_torch():
    check_torch("2.10.0")
    with pytest.raises(DiffGRMError, match=r"needs torch >= 2.10 .*this is torch 2.9.1"):
        check_torch("2.9.1+cpu")


def test_the_import_commands_make_runs_that_evaluate_diagnose_and_open(trained, reference_files, tmp_path, capsys):
    from diffgrm.cli import main
    from diffgrm.diagnose import read_diagnostics

    run = tmp_path / "from-cornac"
    assert main(["import", "cornac", str(trained.export), "--data", str(trained.data), "--out", str(run)]) == 0
    assert f"diffgrm app {run}" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--users", "40", "--beam", "16", "--passes", "2", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == KIND and metrics["passes"] == 2 and metrics["order"] == "confidence"
    assert main(["diagnose", str(run), "--split", "test", "--users", "30", "--beam", "16", "--beams", "16",
                 "--curve-users", "10", "--quiet"]) == 0
    diag = read_diagnostics(run)
    assert diag["kind"] == KIND and diag["order"]["orders"] == ["confidence", "fixed"]
    assert "diffgrm's CPD on a Cornac network" in Explorer(run).label
    f = reference_files
    ref = tmp_path / "from-reference"
    assert main(["import", "reference", str(f.bin), "--tokens", str(f.tokens), "--heads", "4", "--item-ids", str(f.ids),
                 "--data", str(trained.data), "--out", str(ref)]) == 0
    assert json.loads((ref / "config.json").read_text())["source"] == "reference"
    capsys.readouterr()
    assert main(["import", "cornac", str(trained.export), "--data", str(trained.data), "--out", str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # a run already there: one line
    assert main(["import", "reference", str(f.bin), "--tokens", str(f.tokens), "--data", str(trained.data),
                 "--out", str(tmp_path / "r2")]) == 2  # --heads is required
