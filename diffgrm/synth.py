"""Synthetic datasets for scale tests: clustered item vectors, item texts, and users who follow the clusters.

``diffgrm synth --items N --users U --out DIR`` writes a data folder in the bring-your-own format
(``items.jsonl``, ``user_sequence.txt``) plus ``item_embeddings.npy``, so ``prepare`` skips the
sentence encoder and PSE finds real structure: items sit in topics, topics in themes, and a
user's sequence stays mostly within one topic and its theme. Nothing is downloaded, and a
million items take seconds, not the hours a sentence encoder would need on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffgrm.data import EMBEDDINGS_FILE
from diffgrm.errors import DiffGRMError
from diffgrm.safeio import check_output, staged_folder

WORDS = ("amber azure bold bright calm coral crisp dusk fern frost gilded golden ivory jade lunar "
         "marble misty noble opal pearl plum quiet rapid royal ruby sage silver solar spruce stone "
         "swift velvet vivid warm wild").split()
NOUNS = ("balm blend brush candle cream dye gel kit lotion mask mist oil palette polish powder "
         "rinse salve scrub serum soap spray tint tonic wash").split()


def synthesize(out: str | Path, n_items: int, n_users: int, *, dim: int = 64, topics: int | None = None,
               length: tuple[int, int] = (5, 20), seed: int = 0, force: bool = False,
               progress: bool = True) -> dict[str, int]:
    """Write a synthetic data folder; returns its counts.

    Items: ``topics`` topic centres (default about sqrt(items)) grouped into themes and split
    into subtopics of about ten items; an item's vector is its subtopic centre plus noise, unit
    length. Users: a home topic drawn with a
    popularity skew; each next item comes from the home topic (70%), another topic of the same
    theme (20%) or anywhere (10%), popular items of a topic more often.
    """
    if n_items < 10 or n_users < 1 or dim < 2:
        raise DiffGRMError(f"synth needs at least 10 items, 1 user and 2 dimensions (got {n_items}, {n_users}, {dim})")
    lo, hi = length
    if not 2 <= lo <= hi:
        raise DiffGRMError(f"sequence lengths must satisfy 2 <= min <= max, got {lo}..{hi}")
    out = Path(out)
    check_output(out, "data", force=force)
    rng = np.random.default_rng(seed)
    topics = int(topics or max(2, round(n_items ** 0.5)))
    themes = max(1, round(topics ** 0.5))

    # three levels of structure, like real item spaces: themes, topics, and subtopics of about ten
    # items, plus per-item noise (with these scales PSE sees about a quarter of the items share a
    # SID before repair at 20,000 items, as on Amazon Beauty)
    theme_of = rng.integers(0, themes, size=topics)
    centres = rng.normal(size=(themes, dim))[theme_of] + 0.6 * rng.normal(size=(topics, dim))
    subtopics = max(topics, n_items // 10)
    sub_topic = np.sort(rng.integers(0, topics, size=subtopics))  # subtopics grouped by topic
    sub_centres = (centres[sub_topic] + 0.5 * rng.normal(size=(subtopics, dim))).astype(np.float32)
    sub = np.sort(rng.integers(0, subtopics, size=n_items))  # items grouped by subtopic, so by topic too
    topic = sub_topic[sub]
    start = np.searchsorted(topic, np.arange(topics + 1))
    size = np.diff(start)

    with staged_folder(out) as stage:
        vectors = np.empty((n_items, dim), dtype=np.float32)
        for s in range(0, n_items, 1 << 16):
            block = sub_centres[sub[s : s + (1 << 16)]]
            block = block + 0.5 * rng.normal(size=block.shape)
            vectors[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        np.save(stage / EMBEDDINGS_FILE, vectors)
        del vectors
        with open(stage / "items.jsonl", "w", encoding="utf-8") as fh:
            for i in tqdm(range(n_items), desc="items", unit="item", disable=not progress, mininterval=1.0):
                t = int(topic[i])
                title = f"{WORDS[t % len(WORDS)].title()} {NOUNS[(t // len(WORDS)) % len(NOUNS)]} {i}"
                fh.write(json.dumps({"item_id": f"i{i}", "title": title,
                                     "categories": [["Synthetic", f"theme {int(theme_of[t])}", f"topic {t}"]]}) + "\n")

        popularity = 1.0 / np.arange(1, topics + 1) ** 0.8  # home topics: a few popular ones
        popularity = rng.permutation(popularity / popularity.sum())
        by_theme = np.argsort(theme_of, kind="stable")  # topics grouped by theme
        theme_start = np.searchsorted(theme_of[by_theme], np.arange(themes + 1))
        fallback = int(np.argmax(size))  # for a topic that drew no item
        interactions = 0
        with open(stage / "user_sequence.txt", "w", encoding="utf-8") as fh:
            for first in tqdm(range(0, n_users, 1 << 14), desc="users", unit="chunk", disable=not progress):
                users = np.arange(first, min(n_users, first + (1 << 14)))
                lens = rng.integers(lo, hi + 1, size=len(users))
                home = np.repeat(rng.choice(topics, size=len(users), p=popularity), lens)
                theme = theme_of[home]
                nearby = by_theme[theme_start[theme] + (rng.random(len(home)) * np.diff(theme_start)[theme]).astype(np.int64)]
                draw = rng.random(len(home))
                picks = np.where(draw < 0.7, home, np.where(draw < 0.9, nearby, rng.integers(0, topics, size=len(home))))
                picks = np.where(size[picks] > 0, picks, np.where(size[home] > 0, home, fallback))
                # popular items of a topic more often: a squared uniform leans to the topic's first items
                items = start[picks] + (rng.random(len(home)) ** 2 * size[picks]).astype(np.int64)
                ends = np.cumsum(lens)
                for u, a, b in zip(users, ends - lens, ends):
                    fh.write(f"u{u} " + " ".join(f"i{i}" for i in items[a:b].tolist()) + "\n")
                interactions += int(lens.sum())
    return {"items": n_items, "users": n_users, "interactions": interactions, "topics": topics, "dim": dim}
