"""Diagnose a whole run: questions about all users at once, where the explorer answers for one.

CPD fills the digit it is surest of first, which is a good rule only if the decoder's
confidences mean what they say. :func:`diagnose` measures, over one split's users:

- **calibration**: along each user's held-out SID (teacher-forced: the decoder's surest open
  digit is filled with the target's code, so every state is one the target's own path passes
  through; AR fills left to right), the probability of the most likely code of every open digit
  against how often that code is the target's: reliability curves and expected calibration
  error (ECE) per digit and per step, and whether the digit CPD would fill first is right more
  often than the others;
- **misses**: over the users whose item is not in the Top-K, the share whose partial SID left the
  beam at each step and digit, against those still in the beam at the end but ranked below K;
- **beam width**: the hit rate at beams 8 to 256 and, per step, the share of users whose
  target's partial SID is still in the beam;
- **order**: the target's rank under confidence order against fixed order (and an AR run);
- **the Top-K itself**: popularity of the recommended items against the targets', catalogue
  coverage, Top-K items sharing a first digit, history items in the Top-K.

The result is plain JSON (``RUN/diagnostics.json``) that the explorer's "Run health" tab and
``diffgrm.viz.diagnostics`` draw. The searches are followed with their ``on_step`` hook.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffgrm.data import Samples
from diffgrm.decode import Recommender, pad_histories
from diffgrm.errors import DiffGRMError
from diffgrm.fit import subsample
from diffgrm.model import DiffGRM
from diffgrm.safeio import read_json, write_json
from diffgrm.sid_index import MASK
from diffgrm.trace import check_beam

DIAGNOSTICS = "diagnostics.json"
FORMAT = 1
BEAMS = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class DiagnoseSettings:
    """What :func:`diagnose` looks at: ``users`` of ``split`` (0 = all; the same seeded sample as
    ``diffgrm evaluate --users``), decoded with ``beam`` for a Top-``topk``; the beam curve runs
    ``beams`` on the first ``curve_users`` of them (wide beams cost the most; a beam narrower than
    K counts hits in its own Top-beam)."""

    split: str = "valid"
    users: int = 5000
    beam: int = 32
    topk: int = 10
    beams: tuple[int, ...] = BEAMS
    curve_users: int = 1000
    bins: int = 10
    batch_users: int = 32
    exclude_seen: bool = False  # keep each user's history items out of the Top-K, inside the search

    def check(self) -> None:
        check_beam(self.beam, self.topk)
        if self.users < 0 or self.curve_users < 1 or self.bins < 2 or self.batch_users < 1:
            raise DiffGRMError("users must be 0 or more; curve_users, batch_users at least 1; bins at least 2")
        if not self.beams or min(self.beams) < 1:
            raise DiffGRMError(f"the beam curve needs beams of 1 or more, got {list(self.beams)}")


def diagnose(model, prepared, settings: DiagnoseSettings = DiagnoseSettings(), *, ar_model=None,
             progress: bool = True) -> dict:
    """Everything of the module docstring for one run (``model`` and its ``prepared`` catalogue and
    users), as a JSON-ready dict. ``ar_model`` (an AR run on the same catalogue) adds its ranks to
    the order comparison."""
    settings.check()
    if settings.split not in prepared.splits:
        raise DiffGRMError(f"no split {settings.split!r} (have {', '.join(prepared.splits)})")
    samples = subsample(prepared.splits[settings.split], settings.users, seed=0)
    rec = Recommender(model)
    is_cpd = isinstance(model, DiffGRM)
    user_ids = [prepared.users[u] for u in samples.users]
    out: dict = {"format": FORMAT, "kind": model.config.kind, "settings": asdict(settings),
                 "users": len(samples), "users_sha256": hashlib.sha256("\n".join(user_ids).encode()).hexdigest(),
                 "seconds": {}}
    bar = tqdm(total=4 + len(settings.beams), desc="diagnose", disable=not progress, leave=False)

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        out["seconds"][name] = round(time.perf_counter() - t0, 2)
        bar.update()
        return value

    out["calibration"] = timed("calibration", calibration, rec, samples, settings)
    main = timed("search", follow, rec, samples, settings.beam, settings, leave_digits=True)
    out["misses"] = miss_shares(main, model.config.n_digits)
    curve = Samples(samples.histories[: settings.curve_users], samples.targets[: settings.curve_users])
    rows = []
    for beam in settings.beams:
        got = timed(f"beam {beam}", follow, rec, curve, beam, settings)
        rows.append({"beam": beam, "k": min(beam, settings.topk), "hit_rate": float((got.rank > 0).mean()),
                     "in_beam": [float(x) for x in got.in_beam.mean(0)]})
    out["beam_curve"] = {"users": len(curve), "rows": rows}
    ranks = {"confidence" if is_cpd else "left-to-right": main.rank}
    if is_cpd:
        ranks["fixed"] = timed("fixed order", follow, rec, samples, settings.beam, settings, order="fixed").rank
    else:
        bar.update()
    if ar_model is not None:
        if ar_model.config.n_digits != model.config.n_digits or not torch.equal(ar_model.item_codes.cpu(),
                                                                                  model.item_codes.cpu()):
            raise DiffGRMError("the AR run decodes other SIDs: compare runs on the same catalogue")
        ranks["ar"] = follow(Recommender(ar_model), samples, settings.beam, settings).rank
    out["order"] = order_comparison(ranks, settings.topk)
    out["topk"] = timed("top-k profile", topk_profile, main.items, samples, prepared, settings.topk)
    bar.close()
    return out


@dataclass
class Followed:
    """One search over many users: per user, the target's rank in the Top-K (0: missed), whether
    its partial SID was in the beam after each step, its rank among the last step's beams (0:
    gone), the Top-K items, and (asked for) the step and digit at which it left the beam."""

    rank: np.ndarray  # [U]
    in_beam: np.ndarray  # [U, n] bool
    beam_rank: np.ndarray  # [U]
    items: np.ndarray  # [U, K]
    left: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # [U, 2] step, digit; -1


@torch.no_grad()
def follow(rec: Recommender, samples: Samples, beam: int, settings: DiagnoseSettings, *, order: str = "confidence",
           leave_digits: bool = False) -> Followed:
    """Decode ``samples`` at ``beam`` and follow every target's partial SID through the steps."""
    model = rec.model
    n = model.config.n_digits
    codes = model.item_codes.cpu()
    parts = []
    for s in range(0, len(samples), settings.batch_users):
        hist = samples.histories[s : s + settings.batch_users]
        target = torch.as_tensor(samples.targets[s : s + settings.batch_users])
        sid = codes[target]  # [b, n]
        steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        kw = {"order": order} if isinstance(model, DiffGRM) else {}
        res = rec.search(hist, beam=beam, topk=min(beam, settings.topk), exclude_seen=settings.exclude_seen,
                         on_step=lambda _, t, sc: steps.append((t.cpu(), sc.cpu())), **kw)
        agree = [((t == MASK) | (t == sid[:, None, :])).all(-1) & torch.isfinite(sc) for t, sc in steps]  # [b, R] each
        in_beam = torch.stack([a.any(1) for a in agree], 1)  # [b, n]
        last = agree[-1]
        beam_rank = torch.where(last.any(1), last.float().argmax(1) + 1, torch.zeros(len(hist), dtype=torch.long))
        items = res.items.cpu()
        hit = items == target[:, None]
        rank = torch.where(hit.any(1), hit.float().argmax(1) + 1, torch.zeros(len(hist), dtype=torch.long))
        left = _left(rec, hist, sid, steps, agree, in_beam) if leave_digits else np.zeros((0, 2), dtype=np.int64)
        parts.append((rank.numpy(), in_beam.numpy(), beam_rank.numpy(), items.numpy(), left))
    return Followed(*(np.concatenate([p[i] for p in parts]) for i in range(5)))


def _left(rec: Recommender, hist, sid: torch.Tensor, steps, agree, in_beam: torch.Tensor) -> np.ndarray:
    """``[b, 2]``: for every target that left the beam, the step and the digit whose fill would have
    kept it (the best-scoring consistent child, as the explorer's "why not" finds it); -1 for the rest.
    An AR decoder fills digit s at step s; CPD's digit is asked of the network, for the consistent
    beams of the step before, all users at once."""
    b, n = sid.shape
    gone = ~in_beam[:, -1]
    step = torch.where(gone, (~in_beam).float().argmax(1), torch.full((b,), -1))
    out = torch.stack([step, step], 1)  # AR: the digit is the step
    users = gone.nonzero().squeeze(1)
    if not isinstance(rec.model, DiffGRM) or len(users) == 0:
        return out.numpy()
    parents = torch.full((len(users), max(t.shape[1] for t, _ in steps), n), MASK, dtype=torch.long)
    base = torch.full(parents.shape[:2], float("-inf"))
    for j, u in enumerate(users.tolist()):
        s = int(step[u])
        if s == 0:  # the fully masked start
            base[j, 0] = 0.0
            continue
        tokens, scores = steps[s - 1]
        ok = agree[s - 1][u]
        parents[j, : int(ok.sum())] = tokens[u, ok]
        base[j, : int(ok.sum())] = scores[u, ok]
    model = rec.model
    memory, keep = model.encode(pad_histories([hist[u] for u in users.tolist()], model.config.max_history,
                                              model.device))
    logp = model.denoise(parents.to(model.device), model.cross_kv(memory), keep).log_softmax(-1).cpu()
    own = logp.gather(3, sid[users][:, None, :, None].expand(-1, parents.shape[1], -1, 1)).squeeze(3)  # [m, P, n]
    cand = torch.where(parents == MASK, own, torch.full_like(own, float("-inf"))) + base[..., None]
    digit = cand.reshape(len(users), -1).argmax(1) % n
    out[users, 1] = digit
    return out.numpy()


def miss_shares(main: Followed, n: int) -> dict:
    """Over the missed users: the share that left the beam at each (step, digit), and the share
    still in the beam at the end but ranked below K. The shares sum to one."""
    missed = main.rank == 0
    total = int(missed.sum())
    grid = np.zeros((n, n))
    below = int((missed & main.in_beam[:, -1]).sum())
    for s, d in main.left[missed & ~main.in_beam[:, -1]]:
        grid[s, d] += 1
    scale = 1 / total if total else 0.0
    return {"users": int(len(missed)), "missed": total, "left_at": (grid * scale).tolist(),
            "below_k": below * scale, "beam_rank_below_k": _quantiles(main.beam_rank[missed & main.in_beam[:, -1]])}


def order_comparison(ranks: dict[str, np.ndarray], topk: int) -> dict:
    """The target's rank (1..K, K + 1 = not in the Top-K) under each decoding, and, against the
    first one, per user: wins (better rank), losses, ties; with the joint counts for a scatter."""
    names = list(ranks)
    first = names[0]
    pos = {name: np.where(r > 0, r, topk + 1) for name, r in ranks.items()}
    out = {"orders": names, "hit_rate": {name: float((r > 0).mean()) for name, r in ranks.items()}, "against": {}}
    for name in names[1:]:
        a, b = pos[first], pos[name]
        joint = np.zeros((topk + 1, topk + 1), dtype=np.int64)
        np.add.at(joint, (a - 1, b - 1), 1)
        out["against"][name] = {"wins": int((a < b).sum()), "losses": int((a > b).sum()), "ties": int((a == b).sum()),
                                "joint": joint.tolist()}
    return out


def topk_profile(items: np.ndarray, samples: Samples, prepared, topk: int) -> dict:
    """What the Top-K looks like: popularity percentiles of recommended items and of the targets
    (by training interactions), catalogue coverage, Top-K items that share a first digit with
    another, and history items in the Top-K."""
    n_items = prepared.n_items
    counts = np.bincount(prepared.splits["train"].targets, minlength=n_items)[:n_items]  # how often a training target
    ordered = np.sort(counts)  # percentile: the share of items less popular, ties counted half
    pct = 100.0 * (np.searchsorted(ordered, counts) + np.searchsorted(ordered, counts, side="right")) / (2 * n_items)
    shown = items[:, :topk]
    valid = shown >= 0
    codes = prepared.catalogue.codes
    shared, history = [], []
    for row, ok, hist in zip(shown, valid, samples.histories):
        picked = row[ok]
        first = codes[picked, 0]
        same = np.bincount(first)[first] > 1 if len(first) else np.zeros(0, dtype=bool)
        shared.append(float(same.mean()) if len(first) else 0.0)
        history.append(float(np.isin(picked, hist).mean()) if len(picked) else 0.0)
    edges = np.linspace(0, 100, 11)
    return {"recommended_popularity": _quantiles(pct[shown[valid]]), "target_popularity": _quantiles(pct[samples.targets]),
            "recommended_hist": np.histogram(pct[shown[valid]], edges)[0].tolist(),
            "target_hist": np.histogram(pct[samples.targets], edges)[0].tolist(), "edges": edges.tolist(),
            "coverage": float(len(np.unique(shown[valid])) / n_items), "distinct_items": int(len(np.unique(shown[valid]))),
            "shared_first_digit": float(np.mean(shared)) if shared else 0.0,
            "history_share": float(np.mean(history)) if history else 0.0}


def _quantiles(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    qs = (10, 25, 50, 75, 90)
    return {f"p{q}": (float(np.percentile(x, q)) if len(x) else None) for q in qs}


@torch.no_grad()
def calibration(rec: Recommender, samples: Samples, settings: DiagnoseSettings) -> dict:
    """Along every user's target SID: confidence of the top code of each open digit against
    whether it is the target's (see the module docstring), summarised per digit and per step."""
    model = rec.model
    n = model.config.n_digits
    codes = model.item_codes
    conf = np.full((len(samples), n, n), np.nan)  # [user, step, digit]: NaN where the digit is not open
    right = np.zeros((len(samples), n, n), dtype=bool)
    surest = np.zeros((len(samples), n), dtype=np.int64)  # the digit filled at each step
    for s0 in range(0, len(samples), settings.batch_users):
        hist = samples.histories[s0 : s0 + settings.batch_users]
        rows = slice(s0, s0 + len(hist))
        memory, keep = model.encode(pad_histories(hist, model.config.max_history, model.device))
        kv = model.cross_kv(memory)
        sid = codes[torch.as_tensor(samples.targets[rows], device=model.device)]  # [b, n]
        b = len(hist)
        tokens = torch.full((b, 1, n), MASK, dtype=torch.long, device=model.device)
        for step in range(n):
            if isinstance(model, DiffGRM):
                probs = model.denoise(tokens, kv, keep).float().softmax(-1)[:, 0]  # [b, n, K]
                top, arg = probs.max(-1)
                open_ = tokens[:, 0] == MASK
                pick = torch.where(open_, top, torch.full_like(top, -1.0)).argmax(1)
            else:
                probs = model.next_logits(sid[:, None, :step], kv, keep).float().softmax(-1)[:, 0]  # [b, K]
                top = torch.zeros(b, n, device=model.device)
                arg = torch.full((b, n), -1, dtype=torch.long, device=model.device)
                top[:, step], arg[:, step] = probs.max(-1)
                open_ = torch.zeros(b, n, dtype=torch.bool, device=model.device)
                open_[:, step] = True  # an AR decoder predicts digit t at step t, nothing else
                pick = torch.full((b,), step, dtype=torch.long, device=model.device)
            conf[rows, step] = torch.where(open_, top, torch.full_like(top, float("nan"))).cpu().numpy()
            right[rows, step] = (arg == sid).cpu().numpy()
            surest[rows, step] = pick.cpu().numpy()
            tokens[torch.arange(b), 0, pick] = sid[torch.arange(b), pick]
    return summarise_calibration(conf, right, surest, settings.bins)


def summarise_calibration(conf: np.ndarray, right: np.ndarray, surest: np.ndarray, bins: int) -> dict:
    """Reliability curves and ECE per digit and per step from ``conf``/``right`` ``[U, step, digit]``
    (NaN: not open) and the digit ``surest [U, step]`` filled at each step."""
    n = conf.shape[1]
    edges = np.linspace(0.0, 1.0, bins + 1)

    def curve(c: np.ndarray, r: np.ndarray) -> dict:
        ok = ~np.isnan(c)
        c, r = c[ok], r[ok]
        which = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
        count = np.bincount(which, minlength=bins)
        mean_c = np.bincount(which, c, minlength=bins) / np.maximum(count, 1)
        mean_r = np.bincount(which, r.astype(float), minlength=bins) / np.maximum(count, 1)
        ece = float((count * np.abs(mean_c - mean_r)).sum() / max(len(c), 1))
        return {"confidence": [float(x) if k else None for x, k in zip(mean_c, count)],
                "accuracy": [float(x) if k else None for x, k in zip(mean_r, count)],
                "count": count.tolist(), "ece": ece, "mean_confidence": float(c.mean()) if len(c) else None,
                "accuracy_overall": float(r.mean()) if len(r) else None}

    users = np.arange(conf.shape[0])
    surest_right, others_right = [], []
    for s in range(n):
        picked = right[users, s, surest[:, s]]
        open_ = ~np.isnan(conf[:, s])
        open_[users, surest[:, s]] = False
        surest_right.append(float(picked.mean()) if len(picked) else None)
        others_right.append(float(right[:, s][open_].mean()) if open_.any() else None)
    return {"edges": edges.tolist(), "overall": curve(conf, right),
            "per_digit": [curve(conf[:, :, d], right[:, :, d]) for d in range(n)],
            "per_step": [curve(conf[:, s], right[:, s]) for s in range(n)],
            "surest_right": surest_right, "others_right": others_right}


def write_diagnostics(run: str | Path, result: dict) -> Path:
    path = Path(run) / DIAGNOSTICS
    write_json(path, result)
    return path


def read_diagnostics(run: str | Path) -> dict | None:
    """``RUN/diagnostics.json`` if there is one this version reads; None otherwise."""
    path = Path(run) / DIAGNOSTICS
    if not path.is_file():
        return None
    found = read_json(path)
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise DiffGRMError(f"{path} was written by another diffgrm version: run `diffgrm diagnose {run}` again")
    return found


def summary(diag: dict) -> str:
    """A few lines for the terminal."""
    cal, miss, order = diag["calibration"], diag["misses"], diag["order"]
    st = diag["settings"]
    lines = [f"{diag['kind']} on {diag['users']} {st['split']} users, beam {st['beam']}, Top-{st['topk']}",
             f"calibration: ECE {cal['overall']['ece']:.3f}; per digit "
             + ", ".join(f"{c['ece']:.3f}" for c in cal["per_digit"]),
             f"misses: {miss['missed']} of {miss['users']}; still in the beam but below K: {miss['below_k']:.0%}; "
             f"left the beam: {1 - miss['below_k']:.0%}" if miss["missed"] else "misses: none",
             "beam curve (hit rate): " + ", ".join(f"{r['beam']}: {r['hit_rate']:.3f}" for r in diag["beam_curve"]["rows"])]
    for name, res in order["against"].items():
        lines.append(f"{order['orders'][0]} against {name}: {res['wins']} wins, {res['losses']} losses, {res['ties']} ties")
    top = diag["topk"]
    lines.append(f"top-k: coverage {top['coverage']:.1%}, median popularity percentile "
                 f"{top['recommended_popularity']['p50']:.0f} (targets {top['target_popularity']['p50']:.0f}), "
                 f"shared first digit {top['shared_first_digit']:.0%}, history items {top['history_share']:.1%}")
    return "\n".join(lines)
