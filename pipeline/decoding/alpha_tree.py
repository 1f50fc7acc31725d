"""α-labels by a prefix tree: decode every (α, N) of two grids with shared work.

At each of the max(N) mixed steps one student and one teacher forward give p_s and p_t
for every node; argmax(p_s + α(p_t − p_s)) is evaluated for the node's whole α group at
once and α values are grouped by the token they pick. The leaf of (α, N) is the depth-N
node of α's path (or the node where its path ended early), continued greedily by the
student; each distinct leaf is continued once, batched with all others, and its answer
holds for every α of its group. Greedy continuation is a function of the prefix, so a
depth-N node whose α group also picks the student's own argmax at depth N shares the
continuation of that child: only nodes without such a child get a continuation row of
their own, which is forked off the tree's batch and decoded alongside it. Because p_mix
is linear in α, the exact α interval where a token wins is the token's segment of the
upper envelope of the lines p_s(x) + α(p_t(x) − p_s(x)), which labels record next to the grid.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import torch

from pipeline.config.sections import LabelSettings
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.generation import Generation
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
class Node(Leaf):
    """A node of the tree while it is decoded. `cont` is the row whose tokens are this
    node's greedy continuation when that is not the node itself: its child on the student's
    own argmax, or a continuation row forked off it."""

    cont: "Node | None" = None
    needs_cont: bool = False  # some N's leaf is (or continues through) this node

    def terminal(self) -> "Node":
        node = self
        while node.cont is not None:
            node = node.cont
        return node


@dataclass
class NLabels:
    """The labels of one N: distinct leaves (high α first) and each grid α's leaf."""

    n_tokens: int
    leaves: list[Leaf]
    leaf_of_alpha: list[int]  # grid index -> leaf index


@dataclass
class ExampleLabels:
    leaves: list[Leaf]  # those of settings.n_tokens (the single-N columns)
    leaf_of_alpha: list[int]  # grid index -> leaf index
    features: list[float]
    first_token: dict
    student_tokens_processed: int
    teacher_tokens_processed: int
    per_n: list[NLabels] = field(default_factory=list)  # one per N of settings.n_grid, in its order
    continuations: int = 0  # distinct token sequences decoded for this example, all N together


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


def _branch(node: Node, p_s: torch.Tensor, p_t: torch.Tensor, grid: torch.Tensor) -> list[tuple[int, Node]]:
    """Children of a node at one mixed step: one per distinct token its α group picks."""
    choice = mix(p_s.unsqueeze(0), p_t.unsqueeze(0), grid[node.alphas]).argmax(dim=-1).tolist()
    groups: dict[int, list[int]] = {}
    for alpha_index, token in zip(node.alphas, choice):
        groups.setdefault(token, []).append(alpha_index)
    segments = {} if len(groups) == 1 else {t: (s, e) for t, s, e in envelope(p_s, p_t - p_s, node.lo, node.hi)}
    children = []
    for token, alphas in groups.items():
        lo, hi = segments.get(token, (node.lo, node.hi)) if segments else (node.lo, node.hi)
        children.append((token, Node(node.row, alphas, lo, hi, Generation(token_ids=list(node.gen.token_ids)))))
    return children


@dataclass
class _Step:
    """The rows fed to the student after one mixed step: tree nodes first, then continuation
    rows; `parents` index the batch they branch from."""

    tree: list[Node] = field(default_factory=list)
    tree_parents: list[int] = field(default_factory=list)
    tree_tokens: list[int] = field(default_factory=list)
    greedy: list[Node] = field(default_factory=list)
    greedy_parents: list[int] = field(default_factory=list)
    greedy_tokens: list[int] = field(default_factory=list)

    def add(self, kind: str, node: Node, parent: int, token: int) -> None:
        getattr(self, kind).append(node)
        getattr(self, f"{kind}_parents").append(parent)
        getattr(self, f"{kind}_tokens").append(token)


def _grow(decoder: Decoder, tree: list[Node], greedy: list[Node], p_s: torch.Tensor, p_t: torch.Tensor,
          grid: torch.Tensor, leaf_depth: bool, path: list[list[Node]]) -> _Step:
    """One mixed step: branch every tree node, fork a continuation row off each node that
    needs its greedy continuation and has no child on the student's argmax, and advance the
    continuation rows already forked. `path[r][a]` follows each α's node."""
    step = _Step()
    for i, node in enumerate(tree):
        children = _branch(node, p_s[i], p_t[i], grid)
        for _, child in children:
            child.needs_cont = leaf_depth
            for a in child.alphas:
                path[child.row][a] = child
        if node.needs_cont:
            own = int(p_s[i].argmax())
            same = next((child for token, child in children if token == own), None)
            if same is not None:  # the greedy continuation goes through this child: decode it there
                node.cont, same.needs_cont = same, True
            else:
                node.cont = Node(node.row, [], node.lo, node.hi, Generation(token_ids=list(node.gen.token_ids)))
                if not decoder.record(node.cont.gen, own):
                    step.add("greedy", node.cont, i, own)
        for token, child in children:
            if not decoder.record(child.gen, token):
                step.add("tree", child, i, token)
    for j, row in enumerate(greedy, start=len(tree)):
        own = int(p_s[j].argmax())
        if not decoder.record(row.gen, own):
            step.add("greedy", row, j, own)
    return step


def label_batch(decoder: Decoder, prompts: list[Prompt], settings: LabelSettings) -> list[ExampleLabels]:
    """(α, N)-labels for a batch of prompts; `decoder` supplies the two engines and the stop rule."""
    student, teacher = decoder.student, decoder.teacher
    session = uuid.uuid4().hex
    grid = torch.tensor(settings.alpha_grid, dtype=torch.float32)
    depth, leaf_depths = max(settings.n_grid), set(settings.n_grid)
    s_cost = [student.prompt_cost(p) for p in prompts]
    t_cost = [teacher.prompt_cost(p) for p in prompts]
    live: list[Node] = []
    try:
        first = student.prefill(session, prompts, FeatureRequest(settings.feature_layers, settings.feature_pool))
        p_s, features = first.probs, first.features
        p_t = teacher.prefill(session, prompts).probs.to(p_s.device)
        stats = stats_rows(first_token_stats(p_s, p_t))
        grid = grid.to(p_s.device)
        tree = [Node(i, list(range(len(grid))), min(settings.alpha_grid), max(settings.alpha_grid)) for i in range(len(prompts))]
        greedy: list[Node] = []
        path = [[root] * len(grid) for root in tree]
        node_of: dict[int, list[list[Node]]] = {}  # N -> example -> grid index -> leaf node
        for k in range(depth):
            step = _grow(decoder, tree, greedy, p_s, p_t, grid, k + 1 in leaf_depths, path)
            if k + 1 in leaf_depths:
                node_of[k + 1] = [list(p) for p in path]
            tree, greedy = step.tree, step.greedy
            live = tree + greedy
            if not live:
                break
            fed = torch.tensor(step.tree_tokens + step.greedy_tokens)
            p_s = student.step(session, fed, rows=step.tree_parents + step.greedy_parents).probs
            for node in live:
                s_cost[node.row] += 1
            if not tree:
                break
            if k + 1 < depth:
                p_t = teacher.step(session, torch.tensor(step.tree_tokens), rows=step.tree_parents).probs.to(p_s.device)
                for node in tree:
                    t_cost[node.row] += 1
        teacher.close(session)
        if live:  # the depth-max(N) nodes and the continuation rows still decoding
            decoder.continue_greedy(session, p_s, [node.gen for node in live])
    finally:
        student.close(session)
        teacher.close(session)
    for node in live:
        s_cost[node.row] += node.gen.tokens_processed
    for n in settings.n_grid:  # every path ended before depth N: its leaves are where they ended
        node_of.setdefault(n, path)
    return _collect(node_of, settings, features, stats, s_cost, t_cost, len(prompts), decoder)


def _labels_of_n(n: int, nodes: list[Node]) -> NLabels:
    distinct = list({id(node): node for node in nodes}.values())
    distinct.sort(key=lambda node: -node.hi)  # by α, high to low, like the default grid
    index = {id(node): li for li, node in enumerate(distinct)}
    leaves = [Leaf(node.row, node.alphas, node.lo, node.hi, node.terminal().gen) for node in distinct]
    return NLabels(n, leaves, [index[id(node)] for node in nodes])


def _collect(node_of, settings: LabelSettings, features, stats, s_cost, t_cost, n_rows, decoder) -> list[ExampleLabels]:
    out = []
    for r in range(n_rows):
        per_n = [_labels_of_n(n, node_of[n][r]) for n in settings.n_grid]
        gens = list({id(leaf.gen): leaf.gen for part in per_n for leaf in part.leaves}.values())
        for gen in gens:
            gen.text = decoder.finish_text(gen)
        main = per_n[settings.n_grid.index(settings.n_tokens)]
        out.append(ExampleLabels(main.leaves, main.leaf_of_alpha, features[r].tolist(), stats[r], s_cost[r], t_cost[r],
                                 per_n, len(gens)))
    return out
