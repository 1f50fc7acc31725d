"""What every speed script starts from: a run's two models in this process, and its prompts."""
from __future__ import annotations

import argparse

from pipeline.config import RunConfig, load_config
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.decoding.decoder import Decoder
from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import Prompt
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.placement import run_stop_rule
from pipeline.runtime.prompting import run_chat, run_template


def speed_arguments(doc: str, examples: int) -> argparse.ArgumentParser:
    """The options every speed script takes: the run config and how many of its examples."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--examples", type=int, default=examples)
    return parser


def speed_config(args: argparse.Namespace, *overrides: str) -> RunConfig:
    """The run config of `args`, limited to its first `--examples` examples."""
    return load_config(args.config, [f"dataset.limit={args.examples}", *overrides])


def in_process_decoder(config: RunConfig, reuse_preamble: bool = True) -> Decoder:
    """Student and teacher `HFEngine`s in this process, with the job's stop rule."""
    student, teacher = load_model(config.student), load_model(config.teacher)
    vocab = shared_vocab_size(model_facts(config.student), model_facts(config.teacher))
    return Decoder(HFEngine(student, vocab, reuse_preamble), HFEngine(teacher, vocab, reuse_preamble),
                   student.tokenizer, run_stop_rule(config))


def encoded_examples(config: RunConfig, decoder: Decoder) -> tuple[list[Example], list[Prompt], PromptTemplate]:
    """The run's examples, their prompts encoded with its template (through the chat template
    where the config asks), and the template."""
    template = run_template(config.prompt, run_chat(config))
    examples = load_examples(config.dataset)
    return examples, [encode_prompt(decoder.tokenizer, template, ex.question) for ex in examples], template
