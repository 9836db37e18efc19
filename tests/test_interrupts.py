"""Ctrl+C (SIGINT) in the middle of `diffgrm train` and `diffgrm prepare`, in a real process.

An interrupt must leave complete files only (the previous result, or the epochs finished so
far), exit 130 with one line saying so, and the same command run again must finish cleanly:
training continues where it stopped and ends with the weights of an uninterrupted run.

The commands start with SIGINT at its default whatever the test runner inherited: the CLI itself
keeps an ignored SIGINT ignored, as a command started with `nohup ... &` should be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_folder_dataset

pytestmark = pytest.mark.slow


def default_sigint() -> None:
    """Run in the child before it starts: SIGINT back to its default. A test runner started as a
    background job of a non-interactive shell (`nohup make test &`) ignores SIGINT, and a child
    would inherit that and never see the interrupt these tests send."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffgrm", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            preexec_fn=default_sigint)  # noqa: PLW1509 (one signal call, no locks taken)


def test_the_interrupt_arrives_when_the_runner_ignores_sigint(chain_prepared, tmp_path):
    """As under `nohup make test &`: this file's helpers, used from a process that ignores SIGINT,
    still interrupt the command they start (it exits 130, not 0 after finishing)."""
    run = tmp_path / "run"
    script = f"""if True:
        import signal
        from pathlib import Path
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "the scenario needs SIGINT ignored"
        from tests.test_interrupts import cli, interrupt_when
        run = Path({str(run)!r})
        proc = cli("train", {str(chain_prepared)!r}, "--preset", "tiny", "--epochs", "6", "--max-steps", "4",
                   "--out", str(run))
        print(interrupt_when(proc, lambda _: (run / "resume.json").is_file())[0])
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["130"], "the command ran to the end: it inherited an ignored SIGINT"
    assert not (run / "config.json").exists() and (run / "resume.json").is_file()


def interrupt_when(proc: subprocess.Popen, ready, timeout: float = 240) -> tuple[int, str]:
    """Send SIGINT once ``ready(stderr so far)`` is true; returns the exit code and all of stderr."""
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    t0 = time.monotonic()
    while not ready("".join(err)):
        assert proc.poll() is None, f"finished before the interrupt: {''.join(err)[-500:]}"
        assert time.monotonic() - t0 < timeout, "never got ready"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    reader.join(timeout=10)
    return code, "".join(err)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return out + err


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigint_during_training_keeps_finished_epochs_and_a_rerun_matches(chain_prepared, tmp_path):
    args = ["train", str(chain_prepared), "--preset", "tiny", "--epochs", "6", "--max-steps", "4"]
    run = tmp_path / "run"
    code, err = interrupt_when(cli(*args, "--out", str(run)), lambda _: (run / "resume.json").is_file())
    assert code == 130, err[-1000:]
    assert "interrupted" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (run / "config.json").exists() and not (run / "model.safetensors").exists()
    assert not [p for p in run.iterdir() if ".tmp" in p.name], "a temporary file was left behind"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    state = json.loads((run / "resume.json").read_text())
    assert rows and [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert state["epoch"] >= 1

    assert "resuming" in finish(cli(*args, "--out", str(run)))
    finish(cli(*args, "--out", str(tmp_path / "straight"), "--quiet"))
    resumed, straight = files(run), files(tmp_path / "straight")
    assert resumed["model.safetensors"] == straight["model.safetensors"]
    assert resumed["history.jsonl"].count(b"\n") == straight["history.jsonl"].count(b"\n")
    assert not (run / "resume.json").exists()


def test_sigint_during_prepare_keeps_the_previous_folder(tmp_path):
    data = write_folder_dataset(tmp_path / "data", n_items=400, n_users=120)
    out = tmp_path / "prepared"
    base = ["prepare", "--dataset", str(data), "--out", str(out), "--codebook", "16"]
    finish(cli(*base, "--quiet", env={"DIFFGRM_CACHE": str(tmp_path / "cache1")}))
    before = files(out)

    # a fresh cache, so the second run embeds again: interrupt it while the encoder runs
    proc = cli(*base, "--force", "--seed", "3", env={"DIFFGRM_CACHE": str(tmp_path / "cache2")})
    code, err = interrupt_when(proc, lambda e: "embedding" in e)
    assert code == 130, err[-1000:]
    assert "Traceback" not in err
    assert files(out) == before, "the previous prepared folder changed"
    assert {p.name for p in tmp_path.iterdir()} <= {"cache1", "cache2", "data", "prepared"}, "partial folder left"
    assert not list((tmp_path / "cache2").rglob("*.npy")), "a partial embedding was cached"

    finish(cli(*base, "--force", "--seed", "3", "--quiet", env={"DIFFGRM_CACHE": str(tmp_path / "cache2")}))
    assert json.loads((out / "tokenizer.json").read_text())["seed"] == 3
    assert files(out) != before
