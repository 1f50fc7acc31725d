"""Tiny randomly initialised checkpoints built in the tests (seconds), saved and
loaded back with from_pretrained like real ones."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:?!$+-*/=#\n")


def build_char_tokenizer(extra: str = "") -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in CHARS + list(extra):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def save_tiny_llama(path: Path, tokenizer, *, hidden: int, layers: int, seed: int, vocab_pad: int = 0) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + vocab_pad,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    # larger init than default so random models give confident, tie-free logits
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_word_tokenizer(words: list[str], special: list[str], eos: str, pad: str = "<pad>") -> PreTrainedTokenizerFast:
    """A word-level tokenizer laid out like a chat model's: several special tokens (end ids
    among them), words with their leading space ("Q:", " What", ...)."""
    from tokenizers import Regex

    vocab = {t: i for i, t in enumerate([pad, "<unk>", *special])}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^\s]+|\s+"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos, unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": [s for s in special if s != eos]})
    return fast


def save_chain_model(path: Path, tokenizer, chain: dict[str, str], *, arch: str = "llama",
                     eos_ids: list[int] | None = None) -> Path:
    """A real Llama or Qwen2 checkpoint whose greedy next token depends only on the current
    one (its layers add nothing; lm_head maps each token to its successor in `chain`, every
    other token to the tokenizer's eos), saved with `eos_ids` in its generation_config."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    vocab = len(tokenizer)
    hidden = vocab + (-vocab) % 8  # 4 heads of an even width (RoPE)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config, cls = (Qwen2Config(**common), Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig(**common, bos_token_id=None), LlamaForCausalLM)
    model = cls(config).eval()
    ids = tokenizer.convert_tokens_to_ids
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.zero_()  # the residual stream stays the current token's embedding
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.eos_token_id, :] = 10.0
        for cur, nxt in chain.items():
            model.lm_head.weight[:, ids(cur)] = 0.0
            model.lm_head.weight[ids(nxt), ids(cur)] = 100.0
    model.generation_config = GenerationConfig(eos_token_id=eos_ids or [tokenizer.eos_token_id],
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
