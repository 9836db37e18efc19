"""What the app and the notebooks ask of a trained run, in one place and without any UI.

An :class:`Explorer` loads a run once, then answers: which users are there, what is a user's
history and held-out next item, what does the decoder recommend for a (possibly edited)
history, with its step-by-step trace, and where do items sit in each digit's codebook space.
The Streamlit app is wiring around this class; nothing here imports Streamlit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import atomic_write, read_json, write_json
from diffgrm.trace import DenoisingTrace, SearchResult
from diffgrm.train import load_run
from diffgrm.why import WhyNot, why_not

MIN_HISTORY = 1


@dataclass
class UserCase:
    """A user's test-time history (item indices, oldest first) and the held-out next item."""

    user: str
    history: np.ndarray
    target: int


@dataclass
class Recommendation:
    result: SearchResult
    trace: DenoisingTrace
    table: pd.DataFrame  # rank, item, title, sid, score, hit


class Explorer:
    """A run's model, catalogue and users, ready to answer the app's questions."""

    def __init__(self, run: str | Path, device: str | None = "cpu") -> None:
        self.run = Path(run)
        self.model, self.prepared, self.meta = load_run(self.run, device=device)
        self.recommender = Recommender(self.model)
        self.titles: list[str] = self.prepared.items["title"].tolist()
        self.codes: np.ndarray = self.prepared.catalogue.codes
        test = self.prepared.splits["test"]
        self._rows = {self.prepared.users[u]: i for i, u in enumerate(test.users)}

    def metrics(self) -> dict | None:
        """The run's ``metrics.json`` (written by ``diffgrm evaluate`` or the demo set-up), if any."""
        path = self.run / "metrics.json"
        if not path.is_file():
            return None
        try:
            metrics = read_json(path)
            float(metrics["item"]["ndcg@10"])
        except (DiffGRMError, KeyError, TypeError, ValueError):
            print(f"note: {path} is damaged; ignored (run `diffgrm evaluate` to write it again)", file=sys.stderr)
            return None
        return metrics

    @property
    def kind(self) -> str:
        return self.model.config.kind

    @property
    def n_digits(self) -> int:
        return self.model.config.n_digits

    def users(self) -> pd.DataFrame:
        """Every user with the length of their test-time history, in file order."""
        test = self.prepared.splits["test"]
        return pd.DataFrame(
            {"user": [self.prepared.users[u] for u in test.users], "history_length": [len(h) for h in test.histories]}
        )

    def user(self, user_id: str) -> UserCase:
        user_id = str(user_id).strip()
        if user_id not in self._rows:
            raise DiffGRMError(f"unknown user id {user_id!r} (try e.g. {self.prepared.users[0]!r})")
        test = self.prepared.splits["test"]
        row = self._rows[user_id]
        return UserCase(user=user_id, history=np.asarray(test.histories[row]), target=int(test.targets[row]))

    def recommend(self, history: np.ndarray, *, beam: int = 32, k: int = 10, order: str = "confidence",
                  target: int | None = None, seed: int = 0, steps: int | None = None) -> Recommendation:
        """Top-``k`` items and the trace for one history (which may have been edited)."""
        if len(history) < MIN_HISTORY:
            raise DiffGRMError("the history is empty: keep at least one item")
        if beam < k:
            raise DiffGRMError(f"the beam ({beam}) must be at least K ({k})")
        result = self.recommender.search([np.asarray(history, dtype=np.int64)], beam=beam, topk=k, order=order,
                                         trace=True, seed=seed, steps=steps)
        items = result.items[0].tolist()
        scores = result.scores[0].tolist()
        rows = [
            {"rank": r, "item": i, "title": self.titles[i], "sid": "-".join(map(str, self.codes[i])),
             "score": s, "probability": float(np.exp(s)), "hit": i == target}
            for r, (i, s) in enumerate(zip(items, scores), 1) if i >= 0
        ]
        return Recommendation(result=result, trace=result.traces[0], table=pd.DataFrame(rows))

    def why_not(self, history: np.ndarray, rec: Recommendation, item: int) -> WhyNot:
        """Where ``item``'s SID left the search that produced ``rec`` (same history), and why."""
        if not 0 <= int(item) < len(self.codes):
            raise DiffGRMError(f"item {item} is not in the catalogue (0..{len(self.codes) - 1})")
        return why_not(rec.trace, self.codes[int(item)], lambda toks: self.recommender.digit_logprobs(history, toks),
                       item=int(item), topk=len(rec.table))

    def history_table(self, history: np.ndarray) -> pd.DataFrame:
        """The history as titles and SIDs, most recent first."""
        rows = [{"position": len(history) - j, "item": int(i), "title": self.titles[i],
                 "sid": "-".join(map(str, self.codes[i]))} for j, i in enumerate(history)]
        return pd.DataFrame(rows[::-1])

    def search_titles(self, query: str, limit: int = 20) -> pd.DataFrame:
        """Items whose title contains ``query`` (case-insensitive), for the what-if editor."""
        items = self.prepared.items
        hits = items[items["title"].str.contains(query, case=False, regex=False)] if query else items.iloc[:0]
        return pd.DataFrame({"item": hits.index[:limit], "title": hits["title"].iloc[:limit]})

    # ----------------------------------------------------------------- codebook spaces
    def codebook_coords(self, method: str = "umap", max_items: int = 5000) -> dict[int, pd.DataFrame]:
        """Per-digit 2-D coordinates of centroids and items, computed once and kept in the run folder."""
        path = self.run / f"codebook_{method}.csv"
        if path.is_file():
            cached = _read_coords(path, self.run / f"codebook_{method}.json")
            if cached is not None:
                return cached
        from diffgrm.viz import project_codebook

        tok = self.prepared.tokenizer()
        if tok.config.method not in ("opq", "pq"):
            raise DiffGRMError(f"the {tok.config.method} tokenizer has no per-digit codebook spaces to draw")
        coords = project_codebook(tok.subvectors(self.prepared.embeddings), tok.state["centroids"], codes=self.codes,
                                  method=method, max_items=max_items)
        frame = pd.concat([g.assign(digit=d) for d, g in coords.items()], ignore_index=True)
        used = next(iter(coords.values())).attrs.get("method", method)
        try:  # a cache: a read-only run folder still shows the plot
            atomic_write(path, lambda p: frame.to_csv(p, index=False))
            write_json(self.run / f"codebook_{method}.json", {"method": used})
        except OSError as exc:
            print(f"note: cannot keep the codebook projection in {self.run} ({exc.strerror})", file=sys.stderr)
        return coords


def _read_coords(path: Path, meta_path: Path) -> dict[int, pd.DataFrame] | None:
    """The cached projection, or ``None`` (with a note) when it is damaged and must be rebuilt."""
    try:
        frame = pd.read_csv(path)
        method = read_json(meta_path)["method"]
        if not {"digit", "x", "y"} <= set(frame.columns) or frame.empty:
            raise ValueError("columns digit, x, y missing")
    except (DiffGRMError, OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        print(f"note: the codebook projection cache {path} is damaged ({str(exc)[:120]}); computing it again",
              file=sys.stderr)
        return None
    out = {int(d): g.drop(columns="digit").reset_index(drop=True) for d, g in frame.groupby("digit")}
    for g in out.values():
        g.attrs["method"] = method
    return out
