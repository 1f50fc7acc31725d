"""Recall drill: a training-only corpus that teaches the demo models to look up a count.

Each problem needs one lookup (the asked item's count in the inventory), so problem
text alone gives a single, sparse signal per sequence; at that density the lookup
circuit does not form in a CPU-sized budget.  A drill sequence packs many lookups:
inventories in the problems' own words, each followed by queries that name an item
and are answered by its count::

    Tom has stamps 7, candies 6 and marbles 5. marbles 5 stamps 7 marbles 5 ...

The loss is on the counts only.  A model trained on the drill first, then on problems
mixed with it, reuses the circuit at the problems' decision token (the count right
after the asked item).  The drill is drawn from its own seeded generator and is never
written to the world's data files.
"""
from __future__ import annotations

import random

from transformers import PreTrainedTokenizerFast

from pipeline.demo.problems import ITEMS, NAMES, inventory_sentence

IGNORE = -100


def drill_sequence(rng: random.Random, tok: PreTrainedTokenizerFast, n_inventories: int = 2,
                   n_queries: int = 6) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one drill sequence; labels are IGNORE except at the counts."""
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, supervised: bool) -> None:
        piece = tok.encode(text, add_special_tokens=False)
        ids.extend(piece)
        labels.extend(piece if supervised else [IGNORE] * len(piece))

    for _ in range(n_inventories):
        who, _ = rng.choice(NAMES)
        items = rng.sample(ITEMS, 3)
        counts = {it: rng.randint(1, 9) for it in items}
        add(inventory_sentence(who, items, counts), supervised=False)
        for _ in range(n_queries):
            item = rng.choice(items)
            add(f" {item}", supervised=False)
            add(f" {counts[item]}", supervised=True)
        add(".\n", supervised=False)
    return ids, labels
