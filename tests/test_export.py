"""``diffgrm export``: the static explorer, on the shipped demo runs (installed, never trained).

What each user's file holds (checked against ``Explorer.recommend`` with the same settings), the bad
inputs (each one error line, nothing written), and the page itself in chromium from ``file://`` with
the network refused: it shows a user, plays the denoising to the Top-K, switches user in place and
draws the codebook map. Screenshots go to ``test-artifacts/export/``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from diffgrm import demo
from diffgrm.cli import main
from diffgrm.errors import DiffGRMError
from diffgrm.explorer import Explorer
from diffgrm.export import MARKER, export, sample_users
from diffgrm.export_payload import PayloadBuilder
from tests.test_browser import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("DIFFGRM_ARTIFACTS", ROOT / "test-artifacts")) / "export"
USERS = 12
BEAMS = (32, 48)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The demo runs installed from the package: ``runs/ml`` and ``runs/ml-ar``."""
    run = tmp_path_factory.mktemp("export") / "runs" / "ml"
    demo.ensure_demo_run(run, progress=False)
    return run


@pytest.fixture(scope="module")
def exported(runs) -> Path:
    out = runs.parent.parent / "explorer"
    summary = export(runs, out, users=USERS, beams=BEAMS)
    assert summary.users == USERS and summary.settings == len(BEAMS) and summary.bytes > 4e6  # plotly.js included
    return out


def payload(path: Path) -> tuple[str, str, dict]:
    """A data file's (kind, key, payload): ``DIFFGRM.register(kind,key,{...});``."""
    text = path.read_text()
    assert text.startswith("DIFFGRM.register(") and text.endswith(");\n")
    kind, key, value = json.loads("[" + text[len("DIFFGRM.register("):-3] + "]")
    return kind, key, value


def test_the_folder_holds_the_page_the_data_and_every_user(exported, runs):
    for name in ("index.html", "app.js", "style.css", "plotly.min.js", MARKER, "data/manifest.js", "data/codebook.js"):
        assert (exported / name).is_file(), name
    marker = json.loads((exported / MARKER).read_text())
    assert marker["format"] == "diffgrm-export" and marker["users"] == USERS
    html = (exported / "index.html").read_text()
    assert "fetch(" not in (exported / "app.js").read_text() and "XMLHttpRequest" not in (exported / "app.js").read_text()
    assert "http" not in html.replace("http-equiv", "")  # nothing from the network
    kind, _, manifest = payload(exported / "data" / "manifest.js")
    assert kind == "manifest" and [s["beam"] for s in manifest["settings"]] == list(BEAMS)
    assert manifest["ar"]["name"] == "ml-ar" and manifest["run"]["n_digits"] == 4
    users = [u for u, _ in manifest["users"]]
    ex = Explorer(runs)
    first = ex.users()["user"].astype(str).tolist()
    assert users[:10] == first[:10] and len(set(users)) == USERS  # the first users, then a sample
    assert users == sample_users(ex, USERS, seed=0)  # the same users each time
    for j in range(len(BEAMS)):
        assert sorted(p.name for p in (exported / "data" / f"s{j}").iterdir()) == sorted(f"u{i}.js" for i in range(USERS))
    _, _, cloud = payload(exported / "data" / "codebook.js")
    assert len(cloud) == 4 and all(len(d["data"]) == 2 and d["data"][0]["type"] == "scatter" for d in cloud)
    assert len(cloud[0]["data"][0]["x"]) == ex.prepared.n_items  # the item cloud, once for all users


@pytest.mark.parametrize("setting", [0, 1])
def test_each_user_file_matches_the_explorer(exported, runs, setting):
    ex = Explorer(runs)
    _, _, manifest = payload(exported / "data" / "manifest.js")
    beam = BEAMS[setting]
    for i in (0, 5, USERS - 1):
        user = manifest["users"][i][0]
        kind, key, u = payload(exported / "data" / f"s{setting}" / f"u{i}.js")
        assert (kind, key, u["user"]) == ("user", f"s{setting}/u{i}", user)
        case = ex.user(user)
        rec = ex.recommend(case.history, beam=beam, k=10, target=case.target, exclude_seen=True)
        top = u["topk"]
        col = {c: top["columns"].index(c) for c in top["columns"]}
        assert [r[col["item"]] for r in top["rows"]] == rec.table["item"].tolist()
        assert [r[col["sid"]] for r in top["rows"]] == rec.table["sid"].tolist()
        np.testing.assert_allclose([r[col["probability"]] for r in top["rows"]], rec.table["probability"], rtol=1e-3)
        assert [r[col["hit"]] for r in top["rows"]] == rec.table["hit"].tolist()
        assert len(u["history"]["rows"]) == len(case.history) and u["heldout"]["item"] == case.target

        d = u["denoising"]
        n = d["steps"]
        assert n == 4 and len(d["strip"]["frames"]) == n + 1 and len(d["alternatives"]["frames"]) == n
        assert len(d["text"]) == n + 1 and d["text"][0].startswith("Step 0 of 4")
        start, last = d["strip"]["frames"][0]["data"], d["strip"]["frames"][-1]["data"]
        rows = min(8, len(rec.table))
        assert all(v is None for row in start[0]["z"] for v in row)  # step 0: nothing committed ...
        assert start[1]["z"] == [[0] * n] * rows  # ... every digit masked
        assert all(v is None for row in last[1]["z"] for v in row)  # the last step: nothing masked
        custom = last[0]["customdata"]
        codes = ["-".join(str(custom[r][dg][1]) for dg in range(n)) for r in range(rows)]
        assert codes == rec.table["sid"].tolist()[:rows]  # the strip ends on the Top-K's SIDs
        assert u["why"]["message"] and (u["why"]["figure"] is None or u["why"]["figure"]["data"])
        orders = u["orders"]
        assert orders["table"]["columns"] == ["rank", "confidence order", "fixed order", "random order",
                                              "AR (left to right)"]
        assert {t["name"] for t in orders["figure"]["data"]} == {"confidence order", "fixed order", "random order",
                                                                "AR (left to right)"}
        assert len(u["codebook"]) == 4
        names = {t["name"] for t in u["codebook"][0]}
        assert {"history", "recommended", "held-out next item"} <= names


def test_payloads_are_compact(exported):
    text = (exported / "data" / "s0" / "u0.js").read_text()
    _, _, u = payload(exported / "data" / "s0" / "u0.js")
    assert json.dumps(u, separators=(",", ":")) in text  # compact separators, ASCII only
    assert '"template"' not in text and '"bdata"' not in text  # shipped once; plain rounded numbers
    floats = [v for row in u["denoising"]["confidence"]["data"][0]["z"] for v in row if isinstance(v, float)]
    assert floats and all(len(repr(abs(v)).replace("0.", "").lstrip("0")) <= 5 for v in floats)  # ~4 digits
    assert len(text) < 150_000


# --------------------------------------------------------------------------- bad input


def _nothing_beside(out: Path) -> None:
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_inputs_are_one_line_and_write_nothing(runs, tmp_path, capsys):
    out = tmp_path / "site"

    def fails(*args: str, says: str) -> None:
        assert main(["export", str(runs), "--out", str(out), "--users", "2", "--quiet", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and says in err, err
        _nothing_beside(out)

    fails("--users", "5000", says="more than the 943 users")
    assert not out.exists()
    fails("--ar", str(runs), says="is a diffgrm run, not an autoregressive one")
    fails("--ar", str(tmp_path), says="is not a run folder")
    fails("--beams", "8", says="must be at least K")
    fails("--passes", "9", says="--passes must be between 1 and the SID's 4 digits")
    assert not out.exists()

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    fails(says="not a diffgrm export")
    fails("--force", says="not a diffgrm export")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    solo = tmp_path / "solo"  # a run with no RUN-ar beside it
    shutil.copytree(runs, solo)
    assert main(["export", str(solo), "--out", str(tmp_path / "x"), "--ar", "--users", "2", "--quiet"]) == 2
    assert "there is no AR run at" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_export_is_replaced_only_with_force(runs, tmp_path, capsys):
    out = tmp_path / "explorer"
    assert main(["export", str(runs), "--out", str(out), "--users", "2", "--no-ar", "--include-seen", "--quiet"]) == 0
    assert "exported 2 users into" in capsys.readouterr().err
    _, _, manifest = payload(out / "data" / "manifest.js")
    assert manifest["ar"] is None and manifest["settings"][0]["exclude_seen"] is False
    before = (out / MARKER).read_text()
    assert main(["export", str(runs), "--out", str(out), "--users", "3", "--quiet"]) == 2
    assert "already holds a diffgrm export; pass --force" in capsys.readouterr().err
    assert (out / MARKER).read_text() == before
    assert main(["export", str(runs), "--out", str(out), "--users", "3", "--force", "--quiet"]) == 0
    assert json.loads((out / MARKER).read_text())["users"] == 3 and not (out / "data" / "s0" / "u3.js").exists()
    _nothing_beside(out)


def test_an_ar_run_on_another_catalogue_is_refused(runs):
    from diffgrm.checkpoint import check_companion

    mine = {"model": {"kind": "diffgrm"}, "fingerprint": "abc"}
    with pytest.raises(DiffGRMError, match="trained on another catalogue than"):
        check_companion(runs, mine, Path("other-ar"), {"model": {"kind": "ar"}, "fingerprint": "xyz"})
    check_companion(runs, mine, Path("same-ar"), {"model": {"kind": "ar"}, "fingerprint": "abc"})


def test_the_page_ships_as_package_data():
    import tomllib

    from diffgrm.export import ASSETS

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "export_assets/*" in config["diffgrm"]
    assert all((ROOT / "diffgrm" / "export_assets" / name).is_file() for name in ASSETS)


def test_a_failure_midway_leaves_the_previous_export(runs, tmp_path, monkeypatch):
    out = tmp_path / "explorer"
    export(runs, out, users=2, no_ar=True)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    calls = []

    def broken(self, user, setting):
        calls.append(user)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self, user, setting)

    real = PayloadBuilder.user
    monkeypatch.setattr(PayloadBuilder, "user", broken)
    with pytest.raises(KeyboardInterrupt):
        export(runs, out, users=3, no_ar=True, force=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    _nothing_beside(out)
    with pytest.raises(DiffGRMError, match="no trained run"):
        export(tmp_path / "nothing", tmp_path / "y")


# --------------------------------------------------------------------------- the page in chromium


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM}")
def test_the_page_plays_switches_in_place_and_draws_the_map(exported):
    from tests.export_page import PLOTS, VIEWPORT, open_export, switch_by_length, wait_switches
    from tests.test_browser import offline_page

    SHOTS.mkdir(parents=True, exist_ok=True)
    _, _, manifest = payload(exported / "data" / "manifest.js")
    first, second = manifest["users"][0][0], manifest["users"][7][0]
    _, _, u0 = payload(exported / "data" / "s0" / "u0.js")
    with offline_page(VIEWPORT) as (page, requested, errors):
        console = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        open_export(page, exported)
        assert page.text_content("#user-title") == f"User {first}: what comes next?"
        assert page.text_content("#step-label") == "0 of 4"
        assert page.evaluate("document.getElementById('fig-strip').data[0].z.flat().every(v => v === null)")
        assert page.locator("#topk tbody tr").count() == 10
        page.evaluate(f"window.__plots = {list(PLOTS)}.map(id => {{ const d = document.getElementById(id); "
                      "d.__mark = true; return d; })")
        page.screenshot(path=str(SHOTS / "01-first-user.png"), full_page=True)

        page.click("#play")  # from step 0, one digit per step, to the Top-K
        page.wait_for_function("() => DIFFGRM.state.step === 4 && DIFFGRM.state.timer === null", timeout=20_000)
        page.wait_for_function("() => document.getElementById('play').textContent.includes('Play')")
        assert page.text_content("#step-label") == "4 of 4"
        drawn = page.evaluate("document.getElementById('fig-strip').data[0].z")
        assert drawn == u0["denoising"]["strip"]["frames"][-1]["data"][0]["z"]  # the strip's last state
        assert "0 digit(s) still masked" in page.text_content("#step-text")
        page.screenshot(path=str(SHOTS / "02-played.png"), full_page=True)

        box = page.locator("#user-id")
        box.fill(second)
        box.press("Enter")
        wait_switches(page, 1)
        assert page.text_content("#user-title") == f"User {second}: what comes next?"
        assert page.evaluate("location.hash") == f"#user={second}"
        same = page.evaluate(f"{list(PLOTS)}.every((id, i) => document.getElementById(id) === window.__plots[i] "
                             "&& document.getElementById(id).__mark)")
        assert same and page.locator(".js-plotly-plot").count() == 3  # updated in place, no new plots
        switch_by_length(page, 3, 2)

        page.click("button[data-tab=codebook]")
        page.wait_for_function("() => document.body.dataset.shown.endsWith('|codebook')", timeout=30_000)
        traces = page.evaluate("document.getElementById('fig-codebook').data.map(t => t.name)")
        assert traces[:2] == ["items", "centroids (labelled with their code)"] and "history" in traces
        assert page.locator("#fig-codebook .scatterlayer .trace").count() == len(traces)
        page.select_option("#digit", "2")
        page.wait_for_function("() => document.getElementById('fig-codebook').layout.title.text.includes('digit 2')")
        page.screenshot(path=str(SHOTS / "03-codebook.png"), full_page=True)

        page.select_option("#setting", "1")  # the other precomputed beam
        page.wait_for_function("() => document.body.dataset.shown.includes('|s1|')", timeout=30_000)
        assert "beam 48" in page.text_content("#setting option:checked")
        for tab in ("why", "orders"):
            page.click(f"button[data-tab={tab}]")
            page.wait_for_function(f"() => document.body.dataset.shown.endsWith('|{tab}')", timeout=30_000)
        assert page.locator("#orders-table tbody tr").count() == 10
        page.screenshot(path=str(SHOTS / "04-orders.png"), full_page=True)
        box.fill("no-such-user")
        box.press("Enter")
        assert "is not in this export" in page.text_content("#status")
    assert errors == [] and console == [] and requested == []
