"""``diffgrm prepare`` end to end on small folders, and its error contract."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffgrm.cli import main
from diffgrm.prepare import load_prepared
from tests.conftest import write_folder_dataset


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_writes_the_folder_and_report(folder_dataset, tmp_path, capsys):
    out = tmp_path / "prepared"
    code, stdout, _ = run(capsys, "prepare", "--dataset", str(folder_dataset), "--out", str(out),
                          "--codebook", "16", "--quiet", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert (report["n_items"], report["n_users"], report["n_digits"], report["codebook_size"]) == (120, 60, 4, 16)
    assert report["collision_rate_after"] == 0.0
    assert len(report["per_digit"]) == 4
    for f in ["dataset.json", "items.jsonl", "sids.tsv", "collisions.json", "tokenizer.json",
              "tokenizer.safetensors", "catalogue.safetensors", "splits/train.tsv"]:
        assert (out / f).is_file(), f
    assert json.loads((out / "tokenizer_report.json").read_text()) == report
    prepared = load_prepared(out)
    assert prepared.n_items == 120 and len(prepared.users) == 60
    assert len(prepared.splits["test"]) == 60 and len(prepared.splits["valid"]) == 60
    assert prepared.catalogue.codes.shape == (120, 4)
    assert prepared.catalogue.fingerprint == report["fingerprint"]
    # the stored tokenizer reproduces the raw codes from the stored embeddings
    np.testing.assert_array_equal(prepared.tokenizer().transform(prepared.embeddings), prepared.catalogue.codes_raw)
    # splits agree with the source sequences: every test target is the user's last item
    lines = (folder_dataset / "user_sequence.txt").read_text().split("\n")
    last = {ln.split()[0]: ln.split()[-1] for ln in lines if ln}
    ids = prepared.items["item_id"].tolist()
    assert all(ids[t] == last[prepared.users[u]] for u, t in zip(prepared.splits["test"].users, prepared.splits["test"].targets))


def test_prepare_is_deterministic_under_a_seed(folder_dataset, tmp_path, capsys):
    args = ["prepare", "--dataset", str(folder_dataset), "--codebook", "16", "--quiet", "--seed", "7"]
    assert run(capsys, *args, "--out", str(tmp_path / "a"))[0] == 0
    assert run(capsys, *args, "--out", str(tmp_path / "b"))[0] == 0
    assert (tmp_path / "a" / "sids.tsv").read_text() == (tmp_path / "b" / "sids.tsv").read_text()


def test_text_report_mentions_the_numbers(folder_dataset, tmp_path, capsys):
    code, stdout, _ = run(capsys, "prepare", "--dataset", str(folder_dataset), "--out", str(tmp_path / "o"),
                          "--codebook", "16", "--tokenizer", "rq", "--quiet")
    assert code == 0
    assert "60 users, 120 items" in stdout and "rq, 4 digits x 16 codes" in stdout and "-> 0.00% after repair" in stdout


def test_short_sequences_are_skipped_and_counted(folder_dataset, tmp_path, capsys):
    with open(folder_dataset / "user_sequence.txt", "a") as fh:
        fh.write("short1 I1 I2\nshort2 I3\n")
    code, stdout, _ = run(capsys, "prepare", "--dataset", str(folder_dataset), "--out", str(tmp_path / "o"),
                          "--codebook", "16", "--quiet", "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["skipped_users"] == 2 and report["n_users"] == 60


def bad_items(folder):
    (folder / "items.jsonl").write_text('{"item_id": "I0", "title": "ok"}\n{broken\n')


def no_text(folder):
    lines = (folder / "items.jsonl").read_text().splitlines()
    lines[5] = json.dumps({"item_id": "I5", "title": "", "categories": []})
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")


def no_sequences(folder):
    (folder / "user_sequence.txt").unlink()


@pytest.mark.parametrize(
    "breaker, extra, expect",
    [
        (bad_items, [], "items.jsonl:2: not valid JSON"),
        (no_text, [], "1 item(s) have no text"),
        (no_sequences, [], "missing file"),
        (None, ["--codebook", "256"], "a codebook of 256 codes needs at least 256 training items"),
        (None, ["--codebook", "100"], "power of two"),
        (None, ["--digits", "1", "--codebook", "64"], "cannot hold 120 distinct items"),
    ],
)
def test_bad_input_gives_one_error_line(folder_dataset, tmp_path, capsys, breaker, extra, expect):
    if breaker:
        breaker(folder_dataset)
    code, _, err = run(capsys, "prepare", "--dataset", str(folder_dataset), "--out", str(tmp_path / "o"), "--quiet", *extra)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err


def test_unknown_dataset_from_the_real_console_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "diffgrm", "prepare", "--dataset", "netflix-prize", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown dataset 'netflix-prize': not a folder, and not one of "
        "movielens-100k, amazon-beauty, amazon-sports, amazon-toys"
    )
    assert "Traceback" not in proc.stderr


def test_many_items_few_users_still_prepares(tmp_path, capsys):
    folder = write_folder_dataset(tmp_path / "wide", n_items=300, n_users=20, seed=2)
    code, stdout, _ = run(capsys, "prepare", "--dataset", str(folder), "--out", str(tmp_path / "o"),
                          "--codebook", "8", "--quiet", "--json")
    report = json.loads(stdout)
    assert code == 0 and report["n_items"] == 300 and report["collision_rate_after"] == 0.0


def test_app_dry_run_prints_the_streamlit_command(chain_run, chain_ar_run, capsys, monkeypatch):
    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    code, out, err = run(capsys, "app", str(chain_run), "--ar", str(chain_ar_run), "--port", "8599", "--dry-run")
    assert code == 0
    assert "streamlit run" in out and out.rstrip().endswith(f"--run {chain_run} --ar {chain_ar_run}")
    assert "--server.port 8599" in out and "http://127.0.0.1:8599" in err
    assert (chain_run / "codebook_pca.csv").is_file()  # projected before serving
    assert "--client.toolbarMode minimal" in out  # no Deploy button
    # served, not edited: no file watcher, no full garbage collection after every rerun (bench/app_speed.py)
    assert "--server.fileWatcherType none" in out and "--runner.postScriptGC false" in out


def test_app_prints_the_scores_the_sidebar_shows(chain_run, tmp_path, capsys, monkeypatch):
    import json
    import shutil

    monkeypatch.setenv("DIFFGRM_PROJECTION", "pca")
    run_ = Path(shutil.copytree(chain_run, tmp_path / "run"))
    shutil.copytree(chain_run, tmp_path / "run-ar")
    (run_ / "metrics.json").write_text(json.dumps({"model": "diffgrm", "split": "test", "item": {"ndcg@10": 0.03},
                                                   "popularity": {"ndcg@10": 0.01}, "exclude_seen": True}))
    (tmp_path / "run-ar" / "metrics.json").write_text(json.dumps({"model": "ar", "split": "test", "item": {"ndcg@10": 0.02}}))
    code, _, err = run(capsys, "app", str(run_), "--dry-run")
    assert code == 0
    assert "diffgrm test NDCG@10 0.0300 = 3.0x popularity, history kept out" in err
    assert "ar test NDCG@10 0.0200" in err


def test_app_refuses_a_folder_without_a_checkpoint(tmp_path, capsys):
    code, _, err = run(capsys, "app", str(tmp_path), "--dry-run")
    assert code == 2 and "holds no checkpoint" in err


def test_a_byte_order_mark_does_not_join_the_first_user_id(folder_dataset, tmp_path, capsys):
    seq = folder_dataset / "user_sequence.txt"
    seq.write_bytes(b"\xef\xbb\xbf" + seq.read_bytes())
    items = folder_dataset / "items.jsonl"
    items.write_bytes(b"\xef\xbb\xbf" + items.read_bytes())
    assert run(capsys, "prepare", "--dataset", str(folder_dataset), "--out", str(tmp_path / "o"), "--codebook", "16",
               "--quiet")[0] == 0
    prepared = load_prepared(tmp_path / "o")
    assert "U0" in prepared.users and not any(u.startswith("\ufeff") for u in prepared.users)


def test_prepare_force_replaces_the_whole_folder(folder_dataset, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["prepare", "--dataset", str(folder_dataset), "--out", str(out), "--codebook", "16", "--quiet"]
    assert run(capsys, *args)[0] == 0
    (out / "notes.txt").write_text("stale")
    code, _, err = run(capsys, *args, "--seed", "5")
    assert code == 2 and "pass --force" in err and (out / "notes.txt").is_file()
    assert run(capsys, *args, "--seed", "5", "--force")[0] == 0
    assert not (out / "notes.txt").exists()
    assert json.loads((out / "tokenizer.json").read_text())["seed"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging folder was left behind"


def test_train_force_replaces_the_whole_run(chain_prepared, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", str(chain_prepared), "--out", str(run_dir), "--preset", "tiny", "--epochs", "1", "--max-steps", "2",
            "--quiet"]
    assert run(capsys, *args)[0] == 0
    for stale in ("metrics.json", "codebook_umap.csv", "codebook_umap.json"):
        (run_dir / stale).write_text("{}")
    weights = (run_dir / "model.safetensors").read_bytes()
    code, _, err = run(capsys, *args, "--seed", "4")
    assert code == 2 and "pass --force" in err and (run_dir / "model.safetensors").read_bytes() == weights
    assert run(capsys, *args, "--seed", "4", "--force")[0] == 0
    assert sorted(p.name for p in run_dir.iterdir()) == ["catalogue", "config.json", "history.jsonl", "model.safetensors"]
    assert (run_dir / "model.safetensors").read_bytes() != weights
    assert json.loads((run_dir / "config.json").read_text())["train"]["seed"] == 4


def test_evaluate_and_recommend_with_fewer_passes(chain_run, chain_ar_run, tmp_path, capsys):
    import shutil

    run_dir = Path(shutil.copytree(chain_run, tmp_path / "run"))
    code, out, _ = run(capsys, "evaluate", str(run_dir), "--users", "40", "--passes", "2", "--quiet")
    assert code == 0 and "item" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["passes"] == 2 and metrics["users"] == 40
    trace = tmp_path / "t.csv"
    code, out, _ = run(capsys, "recommend", str(run_dir), "--user", "U0", "--passes", "1", "--trace", str(trace))
    assert code == 0 and "Top-10" in out and trace.is_file()
    code, _, err = run(capsys, "evaluate", str(chain_ar_run), "--users", "5", "--passes", "2", "--quiet")
    assert code == 2 and "applies to DiffGRM" in err
    code, _, err = run(capsys, "evaluate", str(run_dir), "--users", "5", "--steps", "9", "--quiet")
    assert code == 2 and "at most the SID's 4 digits" in err
    assert "--steps is deprecated" in err and "--passes" in err  # the old flag still reads as passes


# --------------------------------------------------------------------------- flags made from the configs


def _subcommand(name):
    from diffgrm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def _flags(name):
    """dest -> the option strings of a subcommand."""
    return {a.dest: a for a in _subcommand(name)._actions}


def test_every_config_field_has_a_flag_unless_listed_with_a_reason():
    from dataclasses import fields

    from diffgrm.config import NOT_ON_THE_COMMAND_LINE, ModelConfig, TokenizerConfig, TrainConfig

    listed = set(NOT_ON_THE_COMMAND_LINE)
    for command, classes in (("prepare", [TokenizerConfig]), ("train", [ModelConfig, TrainConfig])):
        flags = _flags(command)
        for cls in classes:
            for f in fields(cls):
                key = f"{cls.__name__}.{f.name}"
                assert (f.name in flags) != (key in listed), f"{key}: give it a flag or list it in NOT_ON_THE_COMMAND_LINE"
                if f.name in flags:
                    assert flags[f.name].help and flags[f.name].default is None, key  # None: the preset decides
    every = {f"{c.__name__}.{f.name}" for c in (ModelConfig, TokenizerConfig, TrainConfig) for f in fields(c)}
    assert listed <= every and len(listed) <= 4, "the list names real fields and stays short"
    assert all(len(reason) > 20 for reason in NOT_ON_THE_COMMAND_LINE.values())


def test_flags_keep_their_names_choices_and_bounds():
    from diffgrm.config import MODEL_KINDS, PRESETS, TOKENIZER_METHODS
    from diffgrm.cpd import ORDERS
    from diffgrm.ocn import STRATEGIES

    train = {opt: a for a in _subcommand("train")._actions for opt in a.option_strings}
    for old in ("--model", "--preset", "--epochs", "--noising", "--ocn-views", "--ocn-pick", "--eval-start", "--select",
                "--max-minutes", "--max-steps", "--seed", "--min-history", "--label-smoothing", "--input-dropout",
                "--item-id-emb", "--precision", "--device", "--quiet", "--force", "--out"):
        assert old in train, old
    assert tuple(train["--noising"].choices) == STRATEGIES and tuple(train["--model"].choices) == MODEL_KINDS
    assert tuple(train["--preset"].choices) == tuple(PRESETS)
    prepare = {opt: a for a in _subcommand("prepare")._actions for opt in a.option_strings}
    for old in ("--digits", "--codebook", "--tokenizer", "--seed", "--kmeans-seeds", "--no-repair", "--preset"):
        assert old in prepare, old
    assert tuple(prepare["--tokenizer"].choices) == TOKENIZER_METHODS
    for command in ("evaluate", "recommend", "report"):
        order = next(a for a in _subcommand(command)._actions if "--order" in a.option_strings)
        assert tuple(order.choices) == ORDERS, command


def test_help_shows_what_each_preset_sets(capsys, monkeypatch):
    from diffgrm.config import PRESETS

    monkeypatch.setenv("COLUMNS", "400")  # one line per flag: no wrapping inside "cpu-long"
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    text = " ".join(out.split())
    epochs = ", ".join(f"{name} {train.epochs}" for name, (_, train) in PRESETS.items())
    assert f"(default by --preset: {epochs})" in text
    from diffgrm.config import MODEL_KINDS

    assert "--model {" + ",".join(MODEL_KINDS) + "}" in text and "(the cpu-long preset turns it on)" in text
    evaluate = " ".join(run(capsys, "evaluate", "--help")[1].split())
    assert "--passes S" in evaluate and "--order {confidence,fixed,random}" in evaluate


def test_a_flag_left_out_keeps_the_presets_value_and_a_new_flag_reaches_the_config(chain_prepared, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", str(chain_prepared), "--preset", "tiny", "--out", str(run_dir), "--epochs", "1",
                       "--max-steps", "2", "--quiet", "--lr", "0.002", "--dec-layers", "1", "--warmup-steps", "7")
    assert code == 0, err
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["train"]["lr"] == 0.002 and meta["train"]["warmup_steps"] == 7 and meta["model"]["dec_layers"] == 1
    assert meta["train"]["eval_users"] == 300 and meta["model"]["d_model"] == 64  # the tiny preset's, not the defaults
    for argv, expect in [(["--lr", "0"], "--lr: must be a positive number, got 0"),
                         (["--dropout", "1"], "--dropout: must be at least 0 and below 1, got 1"),
                         (["--n-heads", "3"], "d_model (64) must be divisible by n_heads (3)"),
                         (["--eval-beam", "4"], "the beam (4) must be at least K (10)")]:
        code, _, err = run(capsys, "train", str(chain_prepared), "--preset", "tiny", "--out", str(tmp_path / "x"), *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expect in lines[0], (argv, err)
        assert not (tmp_path / "x").exists()


def test_from_dict_refuses_unknown_keys_and_reads_every_shipped_run():
    from pathlib import Path

    from diffgrm.config import ModelConfig, TokenizerConfig, TrainConfig, UnknownSettings

    shipped = sorted((Path(__file__).resolve().parents[1] / "diffgrm" / "demo_runs").glob("*/config.json"))
    assert len(shipped) == 2
    for path in shipped:  # runs written by this version and the versions before it
        meta = json.loads(path.read_text())
        assert ModelConfig.from_dict(meta["model"]).to_dict() == meta["model"]
        assert TrainConfig.from_dict(meta["train"]).to_dict() == meta["train"]
    tok = json.loads((shipped[0].parents[1] / "catalogue" / "tokenizer.json").read_text())
    assert TokenizerConfig.from_dict(tok).to_dict() == tok
    with pytest.raises(UnknownSettings, match=r"^runs/x/config.json: unknown key 'lr_decay' in TrainConfig \(.*it knows "
                                              r"epochs, batch_size"):
        TrainConfig.from_dict({"epochs": 3, "lr_decay": 0.5}, where="runs/x/config.json")
    with pytest.raises(UnknownSettings, match="unknown keys 'a', 'b' in ModelConfig"):
        ModelConfig.from_dict({"a": 1, "b": 2})
    with pytest.raises(UnknownSettings, match="in TokenizerConfig"):
        TokenizerConfig.from_dict({"n_digits": 4, "n_digit": 4})
    # a legacy key (SASRec runs of the older layout) is accepted and means nothing here
    assert ModelConfig.from_dict({"kind": "sasrec", "n_items": 60}).kind == "sasrec"


def test_the_command_line_starts_without_importing_torch():
    """`diffgrm fetch` and `diffgrm app` run before any model is touched: importing the command line
    must not import torch (a second or more on a small machine, paid by every `make app`)."""
    import subprocess
    import sys

    code = "import sys, diffgrm.cli; print(sorted(m for m in ('torch', 'diffgrm.cpd', 'diffgrm.trace') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
