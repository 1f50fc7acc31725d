"""α-labels by a prefix tree: decode every α of a grid with shared work.

At each of the N mixed steps one student and one teacher forward give p_s and p_t
for every node; argmax(p_s + α(p_t − p_s)) is evaluated for the node's whole α
group at once and α values are grouped by the token they pick. Each distinct leaf
is then continued once, greedily by the student, batched with all other leaves;
its answer holds for every α of its group. Because p_mix is linear in α, the exact
α interval where a token wins is the token's segment of the upper envelope of the
lines p_s(x) + α(p_t(x) − p_s(x)), which labels record next to the grid.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import torch

from pipeline.config.sections import LabelSettings
from pipeline.decoding.decoder import Decoder, Generation
from pipeline.decoding.distributions import mix
from pipeline.decoding.features import first_token_stats, stats_rows
from pipeline.engine.interface import FeatureRequest, Prompt


@dataclass
class Leaf:
    """A distinct token prefix of one example and the α values that produce it."""

    row: int  # example index in the batch
    alphas: list[int]  # grid indices
    lo: float  # exact α interval (within the grid's range) giving this prefix
    hi: float
    gen: Generation = field(default_factory=Generation)


@dataclass
class ExampleLabels:
    leaves: list[Leaf]
    leaf_of_alpha: list[int]  # grid index -> leaf index
    features: list[float]
    first_token: dict
    student_tokens_processed: int
    teacher_tokens_processed: int


def envelope(a: torch.Tensor, b: torch.Tensor, lo: float, hi: float) -> list[tuple[int, float, float]]:
    """Segments (token, start, end) of the upper envelope of lines a + α·b over [lo, hi]."""
    a, b = a.double(), b.double()
    segments, cur = [], lo
    while True:
        values = a + cur * b
        tied = values >= values.max() - 1e-12
        w = int(torch.where(tied, b, torch.full_like(b, -math.inf)).argmax())  # the tie leader going right
        steeper = b > b[w]
        if not bool(steeper.any()):
            segments.append((w, cur, hi))
            return segments
        cross = torch.where(steeper, (a[w] - a) / (b - b[w]).clamp_min(1e-300), torch.full_like(a, math.inf))
        cross = torch.where(cross > cur, cross, torch.full_like(cross, math.inf))
        nxt = float(cross.min())
        if nxt >= hi:
            segments.append((w, cur, hi))
            return segments
        segments.append((w, cur, nxt))
        cur = nxt


def _branch(node: Leaf, p_s: torch.Tensor, p_t: torch.Tensor, grid: torch.Tensor) -> list[tuple[int, Leaf]]:
    """Children of a node at one mixed step: one per distinct token its α group picks."""
    choice = mix(p_s.unsqueeze(0), p_t.unsqueeze(0), grid[node.alphas]).argmax(dim=-1).tolist()
    groups: dict[int, list[int]] = {}
    for alpha_index, token in zip(node.alphas, choice):
        groups.setdefault(token, []).append(alpha_index)
    segments = {} if len(groups) == 1 else {t: (s, e) for t, s, e in envelope(p_s, p_t - p_s, node.lo, node.hi)}
    children = []
    for token, alphas in groups.items():
        lo, hi = segments.get(token, (node.lo, node.hi)) if segments else (node.lo, node.hi)
        children.append((token, Leaf(node.row, alphas, lo, hi, Generation(token_ids=list(node.gen.token_ids)))))
    return children


def label_batch(decoder: Decoder, prompts: list[Prompt], settings: LabelSettings) -> list[ExampleLabels]:
    """α-labels for a batch of prompts; `decoder` supplies the two engines and the stop rule."""
    student, teacher = decoder.student, decoder.teacher
    session = uuid.uuid4().hex
    grid = torch.tensor(settings.alpha_grid, dtype=torch.float32)
    s_cost = [student.prompt_cost(p) for p in prompts]
    t_cost = [teacher.prompt_cost(p) for p in prompts]
    try:
        first = student.prefill(session, prompts, FeatureRequest(settings.feature_layers, settings.feature_pool))
        p_s, features = first.probs, first.features
        p_t = teacher.prefill(session, prompts).probs.to(p_s.device)
        stats = stats_rows(first_token_stats(p_s, p_t))
        grid = grid.to(p_s.device)
        nodes = [Leaf(i, list(range(len(grid))), min(settings.alpha_grid), max(settings.alpha_grid)) for i in range(len(prompts))]
        finished: list[Leaf] = []
        for k in range(settings.n_tokens):
            live, parents, tokens = [], [], []
            for r, node in enumerate(nodes):
                for token, child in _branch(node, p_s[r], p_t[r], grid):
                    if decoder.record(child.gen, token):
                        finished.append(child)
                    else:
                        live.append(child)
                        parents.append(r)
                        tokens.append(token)
            nodes = live
            if not live:
                break
            fed = torch.tensor(tokens)
            p_s = student.step(session, fed, rows=parents).probs
            for leaf in live:
                s_cost[leaf.row] += 1
            if k + 1 < settings.n_tokens:
                p_t = teacher.step(session, fed, rows=parents).probs.to(p_s.device)
                for leaf in live:
                    t_cost[leaf.row] += 1
        teacher.close(session)
        if nodes:
            decoder.continue_greedy(session, p_s, [leaf.gen for leaf in nodes])
    finally:
        student.close(session)
        teacher.close(session)
    for leaf in nodes:
        s_cost[leaf.row] += leaf.gen.tokens_processed
    return _collect(finished + nodes, features, stats, s_cost, t_cost, len(prompts), len(grid), decoder)


def _collect(leaves, features, stats, s_cost, t_cost, n_rows, n_alphas, decoder) -> list[ExampleLabels]:
    per_row: list[list[Leaf]] = [[] for _ in range(n_rows)]
    for leaf in leaves:
        leaf.gen.text = decoder.finish_text(leaf.gen)
        per_row[leaf.row].append(leaf)
    out = []
    for r, row_leaves in enumerate(per_row):
        row_leaves.sort(key=lambda leaf: -leaf.hi)  # by α, high to low, like the default grid
        leaf_of_alpha = [0] * n_alphas
        for li, leaf in enumerate(row_leaves):
            for a in leaf.alphas:
                leaf_of_alpha[a] = li
        out.append(ExampleLabels(row_leaves, leaf_of_alpha, features[r].tolist(), stats[r], s_cost[r], t_cost[r]))
    return out
