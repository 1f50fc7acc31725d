"""A student/teacher pair with a real-size vocabulary and tiny layers, built on the fly.

Qwen2.5's 151,936 tokens (words "w3" ... of a word-level tokenizer), one layer of width 16,
and an output layer scaled so the next-token distributions are peaked like a trained
model's: what crosses the wire per row is realistic, the compute is not.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

QWEN25_VOCAB = 151_936


def big_vocab_tokenizer(vocab_size: int = QWEN25_VOCAB) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def save_big_vocab_pair(root: Path, vocab_size: int = QWEN25_VOCAB, peak: float = 40.0) -> tuple[Path, Path]:
    """(student_dir, teacher_dir) under `root`, loadable with from_pretrained."""
    tok = big_vocab_tokenizer(vocab_size)
    paths = []
    for name, seed in (("student", 11), ("teacher", 12)):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.2)
            model.lm_head.weight.mul_(peak)
        path = Path(root) / name
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]


def big_vocab_prompts(tokenizer, n: int, length: int = 12) -> list[tuple[list[int], list[int]]]:
    """n deterministic prompts of `length` words spread over the vocabulary."""
    v = len(tokenizer)
    return [([], tokenizer.encode(" ".join(f"w{3 + (i * 7919 + j * 104729) % (v - 3)}" for j in range(length)),
                                  add_special_tokens=False)) for i in range(n)]
