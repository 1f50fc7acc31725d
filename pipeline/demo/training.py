"""Train the demo world's student and teacher: small Llama causal LMs, on CPU.

Each training example is the exact prompt the decoding engine feeds the model,
``encode_prompt(tokenizer, template, question)`` (preamble ids + suffix ids), as
unsupervised context, followed by the target ``encode(" " + cot) + [eos]``; the loss
is on the target tokens only.  Training starts with up to `drill_steps` steps of the
recall drill alone (pipeline/demo/drill.py, constant `drill_lr` after a short warmup;
it ends early once recall on held-out drill sequences reaches `drill_until`, since
the step at which the lookup circuit forms varies from run to run), then trains on
problems, each batch topped up with `drill_per_batch` drill sequences, with
linear warmup then cosine decay.  AdamW throughout.  Everything (init, data and drill
order, dropout-free model) is fixed by the seed, with a fixed thread count.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pipeline.demo.drill import IGNORE, drill_sequence
from pipeline.demo.problems import cot_text
from pipeline.data.prompts import PromptTemplate, answer_lead, encode_prompt


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and training budget of one demo model."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    steps: int
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05
    drill_steps: int = 0
    drill_lr: float = 1e-3
    drill_per_batch: int = 0
    drill_until: float = 1.0

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


def build_examples(rows: list[dict], tok: PreTrainedTokenizerFast,
                   template: PromptTemplate) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per row: the prompt as context, the CoT + eos as target.

    The loss also covers the space between "A:" and the answer, whether the template's
    answer prefix ends with it or not, so both ways of writing the prompt train the
    same model (the token sequence is the same).
    """
    out = []
    for row in rows:
        pre, suf = encode_prompt(tok, template, row["question"])
        ctx = pre + suf
        tgt = tok.encode(answer_lead(template) + cot_text(row), add_special_tokens=False) + [tok.eos_token_id]
        n_context = len(ctx) - (1 if template.answer_prefix.endswith(" ") else 0)
        ids = ctx + tgt
        out.append((ids, [IGNORE] * n_context + ids[n_context:]))
    return out


def _collate(batch, pad_id: int):
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):  # right padding for training
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask


def _lr_at(step: int, spec: ModelSpec) -> float:
    """Learning rate at `step` of the problem phase."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cos)


def _optimizer(model: LlamaForCausalLM, spec: ModelSpec) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr, betas=(0.9, 0.98), eps=1e-8,
    )


def _step(model: LlamaForCausalLM, opt: torch.optim.AdamW, batch, pad_id: int, lr: float) -> float:
    ids, labels, mask = _collate(batch, pad_id)
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


@torch.no_grad()
def drill_recall(model: LlamaForCausalLM, sequences: list[tuple[list[int], list[int]]], pad_id: int) -> float:
    """Fraction of drill counts the model predicts exactly (greedy, teacher-forced)."""
    was_training = model.training
    model.eval()
    ids, labels, mask = _collate(sequences, pad_id)
    pred = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    supervised = target != IGNORE
    model.train(was_training)
    return ((pred == target) & supervised).sum().item() / supervised.sum().item()


def _drill_phase(model, opt, spec: ModelSpec, tok, rng: random.Random, desc: str, position: int) -> None:
    held_out = [drill_sequence(random.Random(rng.random()), tok) for _ in range(100)]
    bar = tqdm(range(spec.drill_steps), desc=f"{desc} drill", unit="step", dynamic_ncols=True, position=position)
    for step in bar:
        lr = spec.drill_lr * min(1.0, (step + 1) / spec.warmup_steps)
        _step(model, opt, [drill_sequence(rng, tok) for _ in range(spec.batch_size)], tok.pad_token_id, lr)
        if (step + 1) % 50 == 0:
            recall = drill_recall(model, held_out, tok.pad_token_id)
            bar.set_postfix(recall=f"{recall:.3f}")
            if recall >= spec.drill_until:
                break
    bar.close()


def train_model(spec: ModelSpec, examples: list[tuple[list[int], list[int]]],
                tok: PreTrainedTokenizerFast, seed: int, desc: str = "train",
                threads: int = 1, position: int = 0) -> LlamaForCausalLM:
    """Train one model from scratch; deterministic for (spec, examples, seed, threads)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(spec.llama_config(tok))
    model.train()
    opt = _optimizer(model, spec)
    drill_rng = random.Random(seed + 1_000_003)
    if spec.drill_steps:
        _drill_phase(model, opt, spec, tok, drill_rng, desc, position)
    order_rng = random.Random(seed)
    order: list[int] = []
    ema = None
    bar = tqdm(range(spec.steps), desc=desc, unit="step", dynamic_ncols=True, position=position)
    for step in bar:
        if len(order) < spec.batch_size:  # deterministic epoch-wise reshuffle
            perm = list(range(len(examples)))
            order_rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[: spec.batch_size], order[spec.batch_size:]
        batch = [examples[i] for i in idx] + [drill_sequence(drill_rng, tok) for _ in range(spec.drill_per_batch)]
        loss = _step(model, opt, batch, tok.pad_token_id, _lr_at(step, spec))
        ema = loss if ema is None else 0.98 * ema + 0.02 * loss
        if step % 10 == 0 or step == spec.steps - 1:
            bar.set_postfix(loss=f"{ema:.4f}", lr=f"{_lr_at(step, spec):.2e}")
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
        import json
        meta = {"spec": asdict(spec), "seed": seed,
                "num_parameters": sum(p.numel() for p in model.parameters())}
        (out_dir / "demo_training.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir
