"""What the app and the notebooks ask of a trained run, in one place and without any UI.

An :class:`Explorer` loads a run once, then answers: which users are there, what is a user's
history and held-out next item, what does the decoder recommend for a (possibly edited)
history, with its step-by-step trace, and where do items sit in each digit's codebook space.
The Streamlit app is wiring around this class; nothing here imports Streamlit.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from diffgrm.coords_cache import cached_coords, write_coords
from diffgrm.decode import Recommender
from diffgrm.errors import DiffGRMError
from diffgrm.model import DiffGRM
from diffgrm.safeio import read_json
from diffgrm.sid_index import sid_text
from diffgrm.trace import DenoisingTrace, SearchResult, check_beam
from diffgrm.train import load_run
from diffgrm.why import WhyNot, why_not

MIN_HISTORY = 1
"""The fewest history items a recommendation reads: the encoder needs one item to attend to."""


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

    def __init__(self, run: str | Path, device: str | None = "cpu", data: str | Path | None = None) -> None:
        self.run = Path(run)
        self.model, self.prepared, self.meta = load_run(self.run, data=data, device=device)
        self.recommender = Recommender(self.model)
        self.titles: list[str] = self.prepared.items["title"].tolist()
        self.codes: np.ndarray = self.prepared.catalogue.codes
        test = self.prepared.splits["test"]
        self._rows = {self.prepared.users[u]: i for i, u in enumerate(test.users)}
        self._code_words: list[list[list[str]]] | None = None

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

    def diagnostics(self) -> dict | None:
        """The run's ``diagnostics.json`` (``diffgrm diagnose``), if any; one written by another
        version is None, with a note saying how to write it again."""
        from diffgrm.diagnose import read_diagnostics

        try:
            return read_diagnostics(self.run)
        except DiffGRMError as exc:
            print(f"note: {exc}", file=sys.stderr)
            return None

    def diagnose(self, settings, ar: "Explorer | None" = None, progress: bool = False) -> dict[str, dict]:
        """Diagnose this run (and ``ar``, an AR run on the same catalogue, on the same users) and
        write each run's ``diagnostics.json``; returns them by kind."""
        from diffgrm.diagnose import diagnose, write_diagnostics

        out = {self.kind: diagnose(self.model, self.prepared, settings, progress=progress,
                                   ar_model=ar.model if ar is not None and self.kind != "ar" else None)}
        write_diagnostics(self.run, out[self.kind])
        if ar is not None and ar.kind == "ar" and self.kind != "ar":
            out["ar"] = diagnose(ar.model, ar.prepared, settings, progress=progress)
            write_diagnostics(ar.run, out["ar"])
        return out

    @property
    def kind(self) -> str:
        return self.model.config.kind

    @property
    def denoises(self) -> bool:
        """Whether the run's network is a denoising decoder (CPD's fill orders apply): DiffGRM's own
        kind and the released network imported from Cornac or the reference code (``cornac-diffgrm``)."""
        return isinstance(self.model, DiffGRM)

    @property
    def source(self) -> str | None:
        """Where an imported run's network was trained (``"cornac"``, ``"reference"``); None for diffgrm's own."""
        return self.meta.get("source")

    @property
    def label(self) -> str | None:
        """What the page calls an imported run ("diffgrm's CPD on a Cornac network"); None for diffgrm's own."""
        return self.meta.get("label")

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
                  target: int | None = None, seed: int = 0, passes: int | None = None,
                  exclude_seen: bool = False) -> Recommendation:
        """Top-``k`` items and the trace for one history (which may have been edited).

        ``exclude_seen`` keeps the history's items out of the Top-K inside the search (their slots
        go to the next best items); the table's ``in_history`` column says which items were seen.
        """
        if len(history) < MIN_HISTORY:
            raise DiffGRMError("the history is empty: keep at least one item")
        check_beam(beam, k)
        history = np.asarray(history, dtype=np.int64)
        result = self.recommender.search([history], beam=beam, topk=k, order=order, trace=True, seed=seed,
                                         passes=passes, exclude_seen=exclude_seen)
        items = result.items[0].tolist()
        scores = result.scores[0].tolist()
        seen = set(history.tolist())
        rows = [
            {"rank": r, "item": i, "title": self.titles[i], "sid": sid_text(self.codes[i]),
             "score": s, "probability": float(np.exp(s)), "hit": i == target, "in_history": i in seen}
            for r, (i, s) in enumerate(zip(items, scores), 1) if i >= 0
        ]
        columns = ["rank", "item", "title", "sid", "score", "probability", "hit", "in_history"]
        return Recommendation(result=result, trace=result.traces[0], table=pd.DataFrame(rows, columns=columns))

    def why_not(self, history: np.ndarray, rec: Recommendation, item: int) -> WhyNot:
        """Where ``item``'s SID left the search that produced ``rec`` (same history), and why."""
        if not 0 <= int(item) < len(self.codes):
            raise DiffGRMError(f"item {item} is not in the catalogue (0..{len(self.codes) - 1})")
        return why_not(rec.trace, self.codes[int(item)], lambda toks: self.recommender.digit_logprobs(history, toks),
                       item=int(item), topk=len(rec.table))

    def history_table(self, history: np.ndarray) -> pd.DataFrame:
        """The history as titles and SIDs, most recent first (``position`` 1 = the latest item)."""
        rows = [{"position": len(history) - j, "item": int(i), "title": self.titles[i],
                 "sid": sid_text(self.codes[i])} for j, i in enumerate(history)]
        return pd.DataFrame(rows[::-1], columns=["position", "item", "title", "sid"])

    @staticmethod
    def rank_changes(before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """How a Top-K moved (two ``recommend(...).table``): the new list with each item's rank
        before (``rank_before``, NaN if it is new) and a ``change`` ("new", "up 2", "down 1",
        "same"), and the items that dropped out (``rank_before``, title, sid)."""
        old = dict(zip(before["item"], before["rank"]))
        changes = []
        for item, rank in zip(after["item"], after["rank"]):
            was = old.get(item)
            changes.append("new" if was is None else "same" if was == rank else
                           f"up {was - rank}" if was > rank else f"down {rank - was}")
        now = after.assign(rank_before=[old.get(i, np.nan) for i in after["item"]], change=changes)
        dropped = before[~before["item"].isin(set(after["item"]))]
        dropped = dropped.rename(columns={"rank": "rank_before"})[["rank_before", "item", "title", "sid"]]
        return now, dropped.reset_index(drop=True)

    @staticmethod
    def orders_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """Several Top-K lists side by side: one row per rank, one column of titles per list (a
        held-out hit is marked "(held-out item)")."""
        depth = max((len(t) for t in tables.values()), default=0)
        out = pd.DataFrame({"rank": np.arange(1, depth + 1)})
        for name, t in tables.items():
            cells = [f"{title} (held-out item)" if hit else title for title, hit in zip(t["title"], t["hit"])]
            out[name] = cells + [""] * (depth - len(cells))
        return out

    def code_words(self) -> list[list[list[str]]]:
        """``[digit][code]`` -> the words most over-represented among the code's items (computed once)."""
        if self._code_words is None:
            from diffgrm.code_words import code_words

            self._code_words = code_words(self.prepared.items["text"].tolist(), self.codes,
                                          self.prepared.catalogue.codebook_size)
        return self._code_words

    def fill_orders(self, history: np.ndarray, rec: Recommendation) -> tuple[np.ndarray, np.ndarray]:
        """The order OCN's training views assume for this history (most confident first, one pass over
        the masked SID) and the order in which ``rec``'s best beam filled the digits."""
        from diffgrm.onpolicy import cpd_order, ocn_order

        return ocn_order(self.recommender, [np.asarray(history, dtype=np.int64)])[0], cpd_order(rec.trace)

    def code_items(self, digit: int, code: int) -> np.ndarray:
        """The items whose SID has ``code`` in ``digit``."""
        if not 0 <= digit < self.n_digits:
            raise DiffGRMError(f"digit must be in 0..{self.n_digits - 1}, got {digit}")
        return np.flatnonzero(self.codes[:, digit] == code)

    def search_titles(self, query: str, limit: int = 20) -> pd.DataFrame:
        """Items whose title contains ``query`` (case-insensitive), for the what-if editor."""
        items = self.prepared.items
        hits = items[items["title"].str.contains(query, case=False, regex=False)] if query else items.iloc[:0]
        return pd.DataFrame({"item": hits.index[:limit], "title": hits["title"].iloc[:limit]})

    # ----------------------------------------------------------------- codebook spaces
    def codebook_coords(self, method: str = "umap", max_items: int = 5000) -> dict[int, pd.DataFrame]:
        """Per-digit 2-D coordinates of centroids and items, laid out by code (``project_codebook(...,
        by_code=True)``), computed once and kept in the run folder (a cache of another layout is
        computed again)."""
        cached = cached_coords(self.run, method)
        if cached is not None:
            return cached
        from diffgrm.viz import project_codebook

        sub, cent, rows = self.prepared.codebook_space()
        coords = project_codebook(sub, cent, codes=self.codes[rows], method=method, max_items=max_items, by_code=True)
        if len(rows) < len(self.codes):  # a sample of a huge catalogue: its rows back to item indices
            for frame in coords.values():
                frame["item"] = np.where(frame["item"] >= 0, rows[np.maximum(frame["item"], 0)], -1)
        write_coords(self.run, method, coords)
        return coords

    def code_summary(self, digit: int, *, history: np.ndarray = (), recommended: np.ndarray = (),
                     target: int | None = None, beam_codes: np.ndarray = ()) -> pd.DataFrame:
        """One row per code of ``digit``: how many items hold it, and how many of the history's and
        of the recommendations' items, whether the held-out ``target`` does, and whether a final
        beam chose it (columns code, items, history, recommended, target, beams)."""
        if not 0 <= digit < self.n_digits:
            raise DiffGRMError(f"digit must be in 0..{self.n_digits - 1}, got {digit}")
        k = self.prepared.catalogue.codebook_size
        col = self.codes[:, digit]

        def count(items) -> np.ndarray:
            return np.bincount(col[np.asarray(items, dtype=np.int64)], minlength=k)

        chosen = set(int(c) for c in beam_codes)
        return pd.DataFrame({"code": np.arange(k), "items": count(np.arange(len(col))), "history": count(history),
                             "recommended": count(recommended),
                             "target": [target is not None and int(col[int(target)]) == c for c in range(k)],
                             "beams": [c in chosen for c in range(k)]})

    def code_separation(self, digit: int) -> float:
        """The median, over items, of (distance to the item's own centroid) / (distance to the
        nearest other centroid) in ``digit``'s sub-space: near 1, the codes cut a continuum into
        cells (no visible clusters); well below 1, items cluster around their centroids."""
        sub, cent, rows = self.prepared.codebook_space()
        x = np.asarray(sub[:, digit], dtype=np.float64)
        cent = np.asarray(cent[digit], dtype=np.float64)
        dist = np.sqrt(np.maximum((x**2).sum(1)[:, None] - 2 * x @ cent.T + (cent**2).sum(1)[None], 0.0))
        at, codes = np.arange(len(x)), self.codes[rows, digit]
        own = dist[at, codes]
        dist[at, codes] = np.inf
        return float(np.median(own / np.maximum(dist.min(1), 1e-12)))


_OPEN: dict[str, Explorer] = {}
_OPEN_LOCK = threading.Lock()


def open_explorer(run: str | Path, data: str | Path | None = None) -> Explorer:
    """One :class:`Explorer` per run folder (and users' data) and process, shared by the app's
    sessions and by the preload that ``diffgrm app`` starts beside the server (a session that comes
    while it loads waits for it instead of loading a second copy)."""
    key = f"{Path(run).resolve()}|{data or ''}"
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = Explorer(run, data=data)
        return _OPEN[key]
