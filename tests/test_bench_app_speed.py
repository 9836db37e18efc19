"""python -m bench app-speed: the table it writes from its measurements (the measuring itself is the benchmark's)."""

from __future__ import annotations

import json

import pytest

from bench.perf import app_speed
from bench.registry import run


def _switch_row(viewers: int, median: float) -> dict:
    return {"viewers": viewers, "switches": 5 * viewers, "median_s": median, "p95_s": median * 1.5,
            "max_s": median * 2, "errors": 0, "server_cpu_per_switch_s": 0.0875, "browser_cpu_per_switch_s": 0.91,
            "memory_mb_before": 430.0, "memory_growth_mb": 3.0}


def test_render_states_each_measurement():
    res = {"start": {"commit": "abc1234", "cold": {"setup_s": 101.5, "demo_runs_s": 130.2, "served_s": 140.0,
                                                    "page_s": 151.3},
                     "warm": {"served_s": 3.1, "page_s": 4.4}},
           "switch": {"run": "runs/ml-tiny", "rounds": 5, "first_page_s": 6.2,
                      "rows": [_switch_row(1, 0.41), _switch_row(8, 2.9)]}}
    text = app_speed.render(res)
    assert "Commit abc1234" in text
    assert "| cold (new clone) | 101.5 | 130.2 | 140.0 | **151.3** |" in text
    assert "| warm (second start) | - | - | **3.1** | 4.4 |" in text
    assert "spends 1.3 s loading" in text  # the warm page's browser seconds, from the measurement
    assert "| 1 | 5 | 0.41 | 0.61 | 0.82 | 0 | 0.087 | 0.91 | 430 (+3) |" in text
    assert "| 8 | 40 | 2.90 | 4.35 | 5.80 | 0 |" in text
    assert "first page after 6.2 s" in text


def test_render_shows_only_what_was_measured():
    text = app_speed.render({"switch": {"run": "r", "rounds": 2, "first_page_s": 5.0, "rows": [_switch_row(1, 0.5)]}})
    assert "## Switching user" in text and "make app" not in text


def test_p95_reads_the_sorted_values():
    assert app_speed._p95([0.1 * i for i in range(1, 21)]) == pytest.approx(1.9)
    assert app_speed._p95([3.0]) == 3.0


def test_main_keeps_the_other_stage_of_the_results_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "app-speed"
    out.with_suffix(".json").write_text(json.dumps({"start": {"commit": "c", "cold": {"served_s": 1, "page_s": 2},
                                                              "warm": {"served_s": 1, "page_s": 1}}}))
    monkeypatch.setattr(app_speed, "stage_switch", lambda args: {"run": "r", "rounds": 1, "first_page_s": 1.0,
                                                                  "rows": [_switch_row(1, 0.3)]})
    run("app-speed", ["switch", "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert set(saved) == {"start", "switch"} and saved["start"]["commit"] == "c"
    assert "**2**" in out.with_suffix(".md").read_text()
