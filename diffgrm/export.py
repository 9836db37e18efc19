"""``diffgrm export RUN --users N --out DIR``: the explorer as a static folder anyone can open.

The folder needs no Python and no server: ``DIR/index.html`` opens from ``file://`` with the network
off, and the folder can be put on any static host as it is. It holds the page (``index.html``,
``app.js``, ``style.css``: ``diffgrm/export_assets/``), the ``plotly.min.js`` of the installed
plotly, ``export.json`` (what was exported, how, and when; it also marks the folder as an export)
and ``data/``: ``manifest.js`` (the run, the settings, the users, the figures' template),
``codebook.js`` (each digit's item cloud, once for all users) and one file per user and setting,
``data/s<j>/u<i>.js``, which the page loads only when that user is shown.

Browsers refuse to ``fetch`` a local file from a ``file://`` page, so every data file is a script
that hands its payload to the page's ``DIFFGRM.register(kind, key, payload)``.

The users are a seeded sample of the test split that always holds its first users (so the demo
opens on the same user as the app); the same run, count and seed give the same users. The per-user
payloads are built by :mod:`diffgrm.export_payload` with the app's own figures.
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import resources
from itertools import product
from pathlib import Path

import numpy as np

from diffgrm import __version__
from diffgrm.checkpoint import check_companion
from diffgrm.errors import DiffGRMError
from diffgrm.export_payload import ExportSetting, PayloadBuilder, compact
from diffgrm.safeio import EXPORT_FILES, check_output, output_lock, read_json, staged_folder, write_json
from diffgrm.trace import check_beam

MARKER = EXPORT_FILES[0]
"""The file that tells an export folder apart (``--force`` replaces only a folder that holds one)."""
FORMAT = "diffgrm-export"
FORMAT_VERSION = 1
ASSETS = ("index.html", "app.js", "style.css")
"""The page's own files, shipped in the package (``diffgrm/export_assets/``)."""
PLOTLY_JS = "plotly.min.js"
DEFAULT_USERS = 200
FIRST_USERS = 10
"""The first users of the test split, always exported (the page opens on the first one)."""


@dataclass
class ExportSummary:
    out: Path
    users: int
    settings: int
    files: int
    bytes: int
    seconds: float


# --------------------------------------------------------------------------- checks


def check_out(out: str | Path, *, force: bool = False, inputs: tuple[str | Path, ...] = ()) -> None:
    """Refuse an ``--out`` that would lose data: a file, a folder that holds one of the inputs, a
    non-empty folder that is not an export, or an export without ``force`` (``safeio.check_output``)."""
    check_output(out, "export", force=force, inputs=inputs)


def is_export(folder: str | Path) -> bool:
    """Whether ``folder`` holds an export written by ``diffgrm export`` (its :data:`MARKER`)."""
    try:
        return read_json(Path(folder) / MARKER).get("format") == FORMAT
    except DiffGRMError:
        return False


def companion(run: str | Path, ar: str | Path | None, *, required: bool = False):
    """The AR run to compare with, opened, or None: ``ar`` when given (it must be an AR run on the
    run's catalogue), else ``RUN-ar`` when it exists (``required``: it must). Returns the folder."""
    run = Path(run)
    given = ar is not None and str(ar) != ""
    folder = Path(ar) if given else Path(f"{run}-ar")
    if not (folder / "model.safetensors").is_file():
        if given:
            raise DiffGRMError(f"--ar {folder} is not a run folder (no model.safetensors)")
        if required:
            raise DiffGRMError(f"--ar: there is no AR run at {folder}; train one with `diffgrm train DATA --model ar "
                               f"--out {folder}`, name it with --ar AR_RUN, or pass --no-ar")
        return None
    return folder


def export_settings(ex, beams=(32,), ks=(10,), exclude_seen: bool = True, passes=(None,)) -> list[ExportSetting]:
    """Every combination of the given beams, Ks and passes (each checked, in the order given)."""
    passes = tuple(passes) or (None,)
    if any(p is not None for p in passes):
        n = ex.n_digits
        if not ex.denoises:
            raise DiffGRMError(f"--passes applies to DiffGRM runs; this AR run fills its {n} digits one per pass")
        bad = [p for p in passes if p is not None and not 1 <= p <= n]
        if bad:
            raise DiffGRMError(f"--passes must be between 1 and the SID's {n} digits, got {bad[0]}")
    out = []
    for beam, k, p in product(dict.fromkeys(beams), dict.fromkeys(ks), dict.fromkeys(passes)):
        check_beam(beam, k)
        out.append(ExportSetting(int(beam), int(k), bool(exclude_seen), None if p in (None, ex.n_digits) else int(p)))
    return list(dict.fromkeys(out))


def sample_users(ex, n: int, seed: int = 0) -> list[str]:
    """``n`` test users in file order: the first :data:`FIRST_USERS`, then a ``seed``-ed sample of the
    rest (users with an empty history, which nothing can be recommended from, are left out)."""
    users = ex.users()
    pool = users.loc[users["history_length"] >= 1, "user"].astype(str).tolist()
    if n < 1:
        raise DiffGRMError(f"--users must be at least 1, got {n}")
    if n > len(pool):
        raise DiffGRMError(f"--users {n} is more than the {len(pool)} users of {ex.run}'s test split; "
                           f"ask for at most {len(pool)}")
    first = min(n, FIRST_USERS)
    rest = np.random.default_rng(seed).choice(len(pool) - first, size=n - first, replace=False) + first
    return [pool[i] for i in sorted([*range(first), *rest.tolist()])]


# --------------------------------------------------------------------------- the page's data


def script(kind: str, key: str, payload) -> str:
    """A data file: JavaScript that registers ``payload`` with the page (compact JSON, ASCII only)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return f"DIFFGRM.register({json.dumps(kind)},{json.dumps(key)},{body});\n"


def figure_template() -> dict:
    """The layout template every exported figure uses (plotly's default), shipped once."""
    import plotly.graph_objects as go

    return compact(go.Figure().to_plotly_json()["layout"].get("template") or {})


def manifest(ex, ar_ex, settings: list[ExportSetting], users: list[str], seed: int) -> dict:
    lengths = dict(zip(ex.users()["user"].astype(str), ex.users()["history_length"]))
    metrics = ex.metrics() or {}
    ar_metrics = (ar_ex.metrics() or {}) if ar_ex is not None else {}

    def score(m: dict) -> dict | None:
        if not m.get("item"):
            return None
        pop = (m.get("popularity") or {}).get("ndcg@10")
        return {"ndcg@10": m["item"]["ndcg@10"], "popularity": pop, "split": m.get("split", "test"),
                "users": m.get("users"), "beam": m.get("beam"), "exclude_seen": bool(m.get("exclude_seen"))}

    n, k = ex.n_digits, ex.prepared.catalogue.codebook_size
    return compact({
        "format": FORMAT, "version": FORMAT_VERSION, "diffgrm": __version__,
        "run": {"name": ex.run.name, "kind": ex.kind, "label": ex.label, "denoises": ex.denoises,
                "dataset": str(ex.prepared.report.get("dataset", "")), "items": ex.prepared.n_items,
                "n_digits": n, "codebook_size": k, "score": score(metrics),
                "example": {"title": ex.titles[0], "sid": "-".join(str(int(c)) for c in ex.codes[0])}},
        "ar": None if ar_ex is None else {"name": ar_ex.run.name, "score": score(ar_metrics)},
        "settings": [{"key": f"s{j}", **s.describe(n)} for j, s in enumerate(settings)],
        "users": [[u, int(lengths[u])] for u in users],
        "seed": seed,
        "template": figure_template(),
    })


def plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise DiffGRMError(f"the installed plotly lacks {path.name}; reinstall it (`pip install \"diffgrm[app]\"`)")
    return path


def write_export(stage: Path, builder: PayloadBuilder, settings: list[ExportSetting], users: list[str],
                 seed: int, progress: bool = False) -> None:
    """Write the whole export into ``stage`` (an empty folder); :data:`MARKER` last."""
    ex = builder.ex
    assets = resources.files("diffgrm") / "export_assets"
    for name in ASSETS:
        (stage / name).write_bytes((assets / name).read_bytes())
    shutil.copyfile(plotly_js(), stage / PLOTLY_JS)
    data = stage / "data"
    data.mkdir()
    (data / "manifest.js").write_text(script("manifest", "", manifest(ex, builder.ar, settings, users, seed)))
    (data / "codebook.js").write_text(script("codebook", "", builder.codebook_base()))
    jobs = [(j, i, s, u) for j, s in enumerate(settings) for i, u in enumerate(users)]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="exporting users", unit="user", file=sys.stderr)
    for j, i, setting, user in jobs:
        folder = data / f"s{j}"
        folder.mkdir(exist_ok=True)
        (folder / f"u{i}.js").write_text(script("user", f"s{j}/u{i}", builder.user(user, setting)))
    write_json(stage / MARKER, {
        "format": FORMAT, "version": FORMAT_VERSION, "diffgrm": __version__, "run": str(ex.run),
        "ar": str(builder.ar.run) if builder.ar is not None else None, "users": len(users), "seed": seed,
        "settings": [s.describe(ex.n_digits) for s in settings],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def export(run: str | Path, out: str | Path, *, users: int = DEFAULT_USERS, ar: str | Path | None = None,
           no_ar: bool = False, beams=(32,), ks=(10,), exclude_seen: bool = True, passes=(None,),
           data: str | Path | None = None, force: bool = False, seed: int = 0,
           progress: bool = False) -> ExportSummary:
    """Export ``users`` users of ``run`` (and its AR companion: ``ar``, else ``RUN-ar`` when it exists;
    ``ar=""`` asks for ``RUN-ar`` and fails without it; ``no_ar`` leaves it out) into the folder ``out``.

    Every check comes first; the folder is written beside ``out`` and swapped in only when complete,
    so a failure or an interrupt leaves ``out`` as it was."""
    from diffgrm.explorer import Explorer

    t0 = time.perf_counter()
    run, out = Path(run), Path(out)
    if not (run / "model.safetensors").is_file():
        raise DiffGRMError(f"{run} holds no trained run (no model.safetensors); train one with `diffgrm train`")
    ar_folder = None if no_ar else companion(run, ar, required=ar == "")
    check_out(out, force=force, inputs=(run, *((ar_folder,) if ar_folder else ())))
    ex = Explorer(run, data=data)
    ar_ex = None
    if ar_folder is not None and ex.denoises:
        ar_ex = Explorer(ar_folder, data=data)
        try:
            check_companion(run, ex.meta, ar_folder, ar_ex.meta, flag="--ar " if ar is not None else "")
        except DiffGRMError as exc:
            if ar is not None:  # asked for: an error; found beside the run: a note, and the export goes on
                raise
            print(f"note: {exc}; exporting without an AR companion", file=sys.stderr)
            ar_ex = None
    settings = export_settings(ex, beams, ks, exclude_seen, passes)
    chosen = sample_users(ex, users, seed)
    with output_lock(out):
        check_out(out, force=force)  # again, now that no other command can write it
        with staged_folder(out) as stage:
            write_export(stage, PayloadBuilder(ex, ar_ex), settings, chosen, seed, progress)
    files = [p for p in out.rglob("*") if p.is_file()]
    return ExportSummary(out=out, users=len(chosen), settings=len(settings), files=len(files),
                         bytes=sum(p.stat().st_size for p in files), seconds=time.perf_counter() - t0)
