"""Train the demo world's student and teacher: small Llama causal LMs, on CPU.

Each training example is the exact prompt the decoding engine feeds the model,
``encode_prompt(tokenizer, template, question)`` (preamble ids + suffix ids), as
unsupervised context, followed by the target ``encode(" " + cot) + [eos]``; the loss is
on the target tokens only. The target is the model's *believed* chain of thought
(`pipeline.demo.problems.believed_steps`): every time a problem is drawn, its operations
are drawn afresh from the model's beliefs for the problem's family. At the operation
tokens themselves the loss is the cross-entropy against the belief (the expected loss
over the draws, without their noise), so the model learns the proportions closely (to
about ±0.01 on the shipped world), for every family and operation alike; elsewhere it is the usual next-token loss on the drawn
chain of thought. Linear warmup, cosine decay, AdamW.
Everything (init, data order, the drawn operations) is fixed by the seed, with a fixed
thread count, so a rebuild reproduces the weights byte for byte.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pipeline.data.prompts import PromptTemplate, answer_lead, encode_prompt
from pipeline.demo.families import FAMILY_BY_NAME, OPS, Family
from pipeline.demo.problems import believed_steps

IGNORE = -100


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and training budget of one demo model."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    steps: int
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05

    def llama_config(self, tok: PreTrainedTokenizerFast) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=len(tok),
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )


@dataclass
class Example:
    ids: list[int]
    labels: list[int]  # IGNORE on the context
    beliefs: dict[int, dict[int, float]]  # position -> {token id: probability} at the operation tokens


class Corpus:
    """A model's training corpus over the world's train rows, with the operations drawn
    from the model's beliefs (`role`: student | teacher) at each draw."""

    def __init__(self, rows: list[dict], tok: PreTrainedTokenizerFast, template: PromptTemplate, role: str,
                 families: dict[str, Family] = FAMILY_BY_NAME):
        self.rows, self.tok, self.role, self.families = rows, tok, role, families
        if template.answer_prefix.endswith(" "):
            # the first operation word would be split after its space: the decision is one token only as " Add"
            raise ValueError("the demo's template must end its answer prefix before the space")
        self.lead = answer_lead(template)
        self.contexts = [sum(encode_prompt(tok, template, row["question"]), []) for row in rows]
        self.op_tokens = {op: tok.encode(" " + op, add_special_tokens=False)[0] for op in OPS}

    def __len__(self) -> int:
        return len(self.rows)

    def example(self, i: int, rng: random.Random) -> Example:
        ctx = self.contexts[i]
        text, decisions = believed_steps(self.rows[i], self.role, rng, self.families)
        target = self.tok.encode(self.lead + text, add_special_tokens=False)
        ids = ctx + target + [self.tok.eos_token_id]
        # operation words occur in the chain of thought only where a step opens
        at = [len(ctx) + j for j, t in enumerate(target) if t in self.op_tokens.values()]
        if len(at) != len(decisions):
            raise ValueError(f"{len(decisions)} operations in the chain of thought, {len(at)} operation tokens: {text!r}")
        beliefs = {pos: {self.op_tokens[op]: p for op, p in d.items()} for pos, d in zip(at, decisions)}
        return Example(ids, [IGNORE] * len(ctx) + ids[len(ctx):], beliefs)


def _collate(batch: list[Example], pad_id: int, vocab_size: int):
    width = max(len(ex.ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    soft_rows, soft = [], []
    for i, ex in enumerate(batch):  # right padding for training
        ids[i, : len(ex.ids)] = torch.tensor(ex.ids)
        labels[i, : len(ex.labels)] = torch.tensor(ex.labels)
        mask[i, : len(ex.ids)] = 1
        for pos, belief in ex.beliefs.items():
            target = torch.zeros(vocab_size)
            target[list(belief)] = torch.tensor(list(belief.values()))
            soft_rows.append((i, pos))
            soft.append(target)
    return ids, labels, mask, soft_rows, torch.stack(soft) if soft else torch.zeros(0, vocab_size)


def _loss(model: LlamaForCausalLM, ids, labels, mask, soft_rows, soft) -> torch.Tensor:
    """Mean over supervised tokens: next-token loss, against the belief at operation tokens."""
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:].clone()
    rows = torch.tensor([r for r, _ in soft_rows], dtype=torch.long)
    cols = torch.tensor([p - 1 for _, p in soft_rows], dtype=torch.long)  # logits at p-1 predict token p
    targets[rows, cols] = IGNORE
    hard = targets != IGNORE
    nll = -logp[hard].gather(1, targets[hard].unsqueeze(1)).sum()
    nll = nll - (soft * logp[rows, cols]).sum()
    return nll / (hard.sum() + len(soft_rows))


def _lr_at(step: int, spec: ModelSpec) -> float:
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cos)


def _optimizer(model: LlamaForCausalLM, spec: ModelSpec) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr, betas=(0.9, 0.98), eps=1e-8,
    )


def train_model(spec: ModelSpec, corpus: Corpus, tok: PreTrainedTokenizerFast, seed: int, desc: str = "train",
                threads: int = 1, position: int = 0) -> LlamaForCausalLM:
    """Train one model from scratch; deterministic for (spec, corpus, seed, threads)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(spec.llama_config(tok))
    model.train()
    opt = _optimizer(model, spec)
    order_rng, draw_rng = random.Random(seed), random.Random(seed + 1_000_003)
    order: list[int] = []
    ema = None
    bar = tqdm(range(spec.steps), desc=desc, unit="step", dynamic_ncols=True, position=position)
    for step in bar:
        if len(order) < spec.batch_size:  # deterministic epoch-wise reshuffle
            perm = list(range(len(corpus)))
            order_rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[: spec.batch_size], order[spec.batch_size:]
        batch = _collate([corpus.example(i, draw_rng) for i in idx], tok.pad_token_id, len(tok))
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, spec)
        loss = _loss(model, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 10 == 0 or step == spec.steps - 1:
            bar.set_postfix(loss=f"{ema:.4f}")
    bar.close()
    model.eval()
    return model


def save_model(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out_dir: str | Path,
               spec: ModelSpec | None = None, seed: int | None = None) -> Path:
    """Save weights (float32 safetensors), config, generation config and tokenizer."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = None
    model.generation_config.do_sample = False
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    if spec is not None:
        meta = {"spec": asdict(spec), "seed": seed, "num_parameters": sum(p.numel() for p in model.parameters())}
        (out_dir / "demo_training.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir
