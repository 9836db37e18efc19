"""Training, checkpoints, and the train / evaluate / recommend commands on a synthetic dataset."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffgrm.cli import main
from diffgrm.config import preset
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.metrics import popularity_ranking, ranking_metrics
from diffgrm.prepare import load_prepared
from diffgrm.train import load_run, lr_lambda, train
from tests.conftest import FAST_TRAIN, train_interrupted

FAST = FAST_TRAIN


def configs(kind, prepared, **over):
    model_cfg, cfg = preset("tiny", kind=kind, n_digits=4, codebook_size=8)
    return model_cfg, replace(cfg, **{**FAST, **over})


@pytest.mark.parametrize("kind", ["diffgrm", "ar"])
def test_loss_falls_and_recall_beats_popularity(kind, chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs(kind, prepared)
    result = train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.7 * losses[0]
    test = prepared.splits["test"]
    model_metrics = Recommender(result.model).evaluate(test, beam=16, progress=False)["item"]
    pop = popularity_ranking(prepared.splits["train"].targets, prepared.n_items, 10)
    pop_metrics = ranking_metrics(np.tile(pop, (len(test), 1)), test.targets)
    assert model_metrics["recall@10"] > pop_metrics["recall@10"] + 0.2
    assert model_metrics["ndcg@10"] > pop_metrics["ndcg@10"]


def test_checkpoint_round_trip_and_refusals(chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=1, eval_start=1)
    result = train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False)
    model, again, meta = load_run(tmp_path / "run", device="cpu")
    assert meta["fingerprint"] == prepared.catalogue.fingerprint and meta["model"]["kind"] == "diffgrm"
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 1
    for a, b in zip(result.model.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    hist = [prepared.splits["test"].histories[0]]
    np.testing.assert_array_equal(Recommender(result.model).search(hist).items, Recommender(model).search(hist).items)
    # another catalogue: same items, codes changed
    import shutil

    from safetensors.numpy import load_file

    from tests.conftest import save_catalogue

    other = tmp_path / "other"
    shutil.copytree(chain_prepared, other)
    arrays = load_file(str(other / "catalogue.safetensors"))
    arrays["codes"] = arrays["codes"][::-1].copy()
    save_catalogue(other, arrays)
    # the run carries its own catalogue: data with other SIDs gives it only its users, by item id
    moved, again_other, _ = load_run(tmp_path / "run", data=other)
    assert again_other.catalogue.fingerprint == meta["fingerprint"] != load_prepared(other).catalogue.fingerprint
    np.testing.assert_array_equal(Recommender(moved).search(hist).items, Recommender(model).search(hist).items)
    # a run written before runs carried their catalogue decodes only with its own SIDs
    shutil.rmtree(tmp_path / "run" / "catalogue")
    with pytest.raises(DiffGRMError, match="trained on another catalogue .* carries no catalogue of its own"):
        load_run(tmp_path / "run", data=other)
    with pytest.raises(DiffGRMError, match="holds no checkpoint"):
        load_run(tmp_path)


def test_learning_rate_schedule():
    f = lr_lambda(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0, abs=1e-9)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_evaluate_recommend(chain_prepared, tmp_path, capsys):
    runp = tmp_path / "run"
    code, out, _ = run(capsys, "train", chain_prepared, "--preset", "tiny", "--out", runp, "--epochs", "2", "--quiet", "--device", "cpu")
    assert code == 0 and "best epoch" in out
    code, out, _ = run(capsys, "evaluate", runp, "--beam", "16", "--quiet")
    assert code == 0
    metrics = json.loads((runp / "metrics.json").read_text())
    assert set(metrics["item"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"} and set(metrics["sid"]) == set(metrics["item"])
    assert metrics["beam"] == 16 and metrics["users"] == 150 and metrics["model"] == "diffgrm" and metrics["seconds"] >= 0
    assert "item" in out and "sid" in out and "ndcg@10" in out
    trace = tmp_path / "trace.csv"
    code, out, _ = run(capsys, "recommend", runp, "--user", "U3", "--k", "5", "--trace", trace)
    assert code == 0 and "Top-5" in out and "Chain item" in out and "held-out next item" in out
    import pandas as pd

    frame = pd.read_csv(trace)
    assert {"step", "beam", "digit", "code", "prob", "score"} <= set(frame.columns) and frame["step"].max() == 3


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["recommend", "{run}", "--user", "nobody"], "user 'nobody' is not in"),
        (["recommend", "{run}", "--user", "U1", "--beam", "4", "--k", "10"], "the beam (4) must be at least K (10)"),
        (["evaluate", "{tmp}"], "holds no checkpoint"),
        (["evaluate", "{run}", "--beam", "5"], "the beam (5) must be at least K (10)"),
    ],
)
def test_cli_errors(chain_prepared, tmp_path, capsys, argv, expect):
    runp = tmp_path / "run"
    assert run(capsys, "train", chain_prepared, "--preset", "tiny", "--out", runp, "--epochs", "1", "--quiet")[0] == 0
    code, _, err = run(capsys, *[a.format(run=runp, tmp=tmp_path) for a in argv])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and expect in lines[0], err


def test_empty_history_and_unknown_device(chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=1, eval_start=1)
    model = train(prepared, model_cfg, cfg, None, device="cpu", progress=False).model
    with pytest.raises(DiffGRMError, match="history is empty"):
        Recommender(model).search([np.array([1, 2]), np.array([], dtype=np.int64)])
    with pytest.raises(DiffGRMError, match="outside 0..59"):
        Recommender(model).search([np.array([1, 600])])
    from diffgrm.model import default_device

    with pytest.raises(DiffGRMError, match="unknown device"):
        default_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DiffGRMError, match="no CUDA GPU"):
            default_device("cuda")


def test_max_steps_limits_an_epoch(chain_prepared):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=1, eval_start=1, max_steps=3, batch_size=8)
    result = train(prepared, model_cfg, cfg, None, device="cpu", progress=False)
    assert result.history[0]["samples"] == 3 * 8 and result.history[0]["samples_per_second"] > 0


def test_on_epoch_callback_and_digit_report(chain_prepared):
    from diffgrm.decode import pad_histories
    from diffgrm.model import build_model
    from diffgrm.ocn import digit_report

    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=15, eval_start=15)
    test = prepared.splits["test"]
    hist = pad_histories(test.histories, 20)
    targets = torch.from_numpy(prepared.catalogue.codes[test.targets])
    torch.manual_seed(cfg.seed)
    untrained = digit_report(build_model(model_cfg, torch.from_numpy(prepared.catalogue.codes)).eval(), hist, targets)
    seen = []

    def watch(epoch, model, row):
        assert not model.training and row["epoch"] == epoch
        seen.append(digit_report(model, hist, targets))

    train(prepared, model_cfg, cfg, None, device="cpu", progress=False, on_epoch=watch)
    assert len(seen) == 15
    for rep in seen:
        assert rep["accuracy"].shape == (4,) and ((rep["confidence"] > 0) & (rep["confidence"] <= 1)).all()
    # against the untrained model, not epoch 1: the chain catalogue can be learned within one epoch
    assert seen[-1]["accuracy"].mean() > untrained["accuracy"].mean() + 0.1


def test_min_history_picks_the_training_samples(chain_prepared, tmp_path):
    from diffgrm.train import training_samples

    prepared = load_prepared(chain_prepared)
    lengths = np.array([len(h) for h in prepared.splits["train"].histories])
    assert lengths.min() == 1  # prepare writes every prefix; training chooses its minimum
    one, two = training_samples(prepared, 1), training_samples(prepared, 2)
    assert len(one) == len(lengths) and len(two) == int((lengths >= 2).sum()) < len(one)
    assert all(len(h) >= 2 for h in two.histories)
    # a folder prepared before min_history existed starts at 2: asking it for 1 is refused, not ignored
    assert prepared.train_min_history == 1
    old = replace(prepared, splits={**prepared.splits, "train": two}, train_min_history=2)
    with pytest.raises(DiffGRMError, match="starts at 2 history items"):
        training_samples(old, 1)
    assert len(training_samples(old, 2)) == len(two)
    # a folder written before the option existed has no train_min_history in dataset.json: 2
    summary = json.loads((chain_prepared / "dataset.json").read_text())
    assert summary["train_min_history"] == 1
    import shutil

    legacy = shutil.copytree(chain_prepared, tmp_path / "legacy")
    (legacy / "dataset.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "train_min_history"}))
    assert load_prepared(legacy).train_min_history == 2
    model_cfg, cfg = configs("diffgrm", prepared, epochs=1, eval_start=1, min_history=1)
    rows = train(prepared, model_cfg, cfg, None, device="cpu", progress=False).history
    assert rows[0]["samples"] == len(one)


@pytest.mark.parametrize("bad", [{"min_history": 0}, {"precision": "fp8"}, {"label_smoothing": 1.0}])
def test_train_config_refuses_bad_values(bad):
    from diffgrm.config import TrainConfig

    with pytest.raises(DiffGRMError):
        TrainConfig(**bad)


def test_bf16_autocast_trains_and_fp16_needs_cuda(chain_prepared):
    from diffgrm.model import build_model
    from diffgrm.train import make_step

    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared)
    model = build_model(model_cfg, torch.from_numpy(prepared.catalogue.codes))
    with pytest.raises(DiffGRMError, match="fp16 needs a CUDA GPU"):
        make_step(model, replace(cfg, precision="fp16"), torch.optim.AdamW(model.parameters()))
    runs = {}
    for precision in ("fp32", "bf16"):
        model_cfg, cfg = configs("diffgrm", prepared, precision=precision, epochs=6, eval_start=6)
        runs[precision] = train(prepared, model_cfg, cfg, None, device="cpu", progress=False)
    fp32, bf16 = ([r["loss"] for r in runs[p].history] for p in ("fp32", "bf16"))
    assert bf16[-1] < bf16[0] - 0.05  # it learns ...
    assert abs(bf16[-1] - fp32[-1]) < 0.05 * fp32[-1]  # ... about as fp32 does
    assert bf16 != fp32  # and bf16 really ran
    assert all(p.dtype == torch.float32 for p in runs["bf16"].model.parameters())  # autocast, not a bf16 model


def test_cli_train_lever_options(chain_prepared, tmp_path, capsys):
    runp = tmp_path / "run"
    code, _, err = run(capsys, "train", chain_prepared, "--preset", "tiny", "--out", runp, "--epochs", "1", "--device", "cpu",
                       "--max-steps", "2", "--min-history", "1", "--label-smoothing", "0.0", "--input-dropout", "0.1",
                       "--item-id-emb")
    assert code == 0, err
    meta = json.loads((runp / "config.json").read_text())
    assert meta["train"]["min_history"] == 1 and meta["train"]["label_smoothing"] == 0.0
    assert meta["model"]["input_dropout"] == 0.1 and meta["model"]["item_id_emb"] is True
    n_all = len(load_prepared(chain_prepared).splits["train"])
    assert f"{n_all:,} samples" in err
    model, _, _ = load_run(runp)  # the extra embedding round-trips through safetensors
    assert model.item_emb is not None
    code, _, err = run(capsys, "train", chain_prepared, "--preset", "tiny", "--out", tmp_path / "bad", "--precision", "fp16",
                       "--device", "cpu", "--quiet")
    assert code == 2 and "fp16 needs a CUDA GPU" in err


def test_an_interrupted_run_resumes_to_the_same_weights(chain_prepared, tmp_path):
    from safetensors.torch import load_file

    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=4, eval_start=2, max_steps=4, batch_size=16)
    train(prepared, model_cfg, cfg, tmp_path / "straight", device="cpu", progress=False)
    train_interrupted(prepared, model_cfg, cfg, tmp_path / "cut")
    assert (tmp_path / "cut" / "resume.json").is_file() and not (tmp_path / "cut" / "model.safetensors").exists()
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 2  # epochs 1-2 kept
    # other settings into the same folder are refused, not mixed in
    with pytest.raises(DiffGRMError, match="unfinished run with other settings"):
        train(prepared, model_cfg, replace(cfg, lr=1e-2), tmp_path / "cut", device="cpu", progress=False)
    result = train(prepared, model_cfg, cfg, tmp_path / "cut", device="cpu", progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert not (tmp_path / "cut" / "resume.json").exists() and not (tmp_path / "cut" / "resume.safetensors").exists()
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads(line) for line in (tmp_path / "cut" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]


def test_a_damaged_resume_state_is_a_clear_error(chain_prepared, tmp_path):
    prepared = load_prepared(chain_prepared)
    model_cfg, cfg = configs("diffgrm", prepared, epochs=2, eval_start=2, max_steps=2, batch_size=16)

    def interrupt(epoch, model, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False, on_epoch=interrupt)
    state = tmp_path / "run" / "resume.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(DiffGRMError, match="resume state of .* is damaged"):
        train(prepared, model_cfg, cfg, tmp_path / "run", device="cpu", progress=False)


def test_the_cpu_long_preset_is_the_cpu_preset_plus_the_screened_levers():
    from dataclasses import asdict

    from diffgrm.config import preset

    cpu_model, cpu_train = preset("cpu")
    model, cfg = preset("cpu-long", kind="ar")
    changed_model = {k for k, v in asdict(model).items() if asdict(cpu_model)[k] != v}
    changed_train = {k for k, v in asdict(cfg).items() if asdict(cpu_train)[k] != v}
    assert changed_model == {"kind", "input_dropout", "item_id_emb"} and model.item_id_emb and model.input_dropout == 0.1
    assert changed_train == {"epochs", "label_smoothing", "max_minutes"} and cfg.max_minutes == 0 and cfg.epochs == 18
