"""Chat prompts for instruct models: the tokens are exactly `apply_chat_template`'s, the exemplar
turns are one preamble every question shares, the end-of-turn id joins the stop rule, and the
two models must agree on the template. The checkpoints are real (Llama) chat models built
here, two with a Qwen-style template and one with a Llama-3-style template."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import torch
import pytest
import yaml
from transformers import AutoTokenizer

from pipeline.config import parse_config
from pipeline.config.prompt_style import PromptStyle
from pipeline.data.chat import chat_format, chat_messages
from pipeline.data.prompts import Exemplar, PromptTemplate, encode_prompt, prompt_hash
from pipeline.errors import UserError
from pipeline.runtime.placement import run_stop_rule
from tiny_models import build_word_tokenizer, save_chain_model

REPO = Path(__file__).resolve().parents[1]
QWEN_STYLE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA_STYLE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
               "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
WORDS = ["Q:", " What", " is", " 9", " 2", " plus", " 9?", " 2?", "\n", "\n\n", "A:", " The", "The", " answer", " 18.",
         " 4.", "Human:", " more", "user", "assistant", "system", " Be", " brief."]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<s>"]
TEMPLATE = PromptTemplate(name="chat", exemplars=(Exemplar("What is 2 plus 2?", "The answer is 4."),),
                          instruction="Be brief.", question_prefix="Q: ", answer_prefix="\nA:", stop_strings=("\nQ:",))


def _tokenizer(template: str):
    tok = build_word_tokenizer(WORDS, SPECIAL, eos="<|endoftext|>")
    tok.chat_template = template
    return tok


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Student and teacher with the Qwen-style template; greedy after the generation
    prompt (and after a raw prompt's "A:"): 'The answer is 18.' then <|im_end|>, which neither generation_config lists (only
    <|endoftext|>), then babble. A Llama with a Llama-3-style template over the same vocabulary."""
    root = tmp_path_factory.mktemp("chat")
    chain = {"\n": "The", "The": " answer", "A:": " The", " The": " answer", " answer": " is", " is": " 18.",
             " 18.": "<|im_end|>", "<|im_end|>": "Human:", "Human:": " more", " more": " more"}
    tok = _tokenizer(QWEN_STYLE)
    student = save_chain_model(root / "student", tok, chain)
    teacher = save_chain_model(root / "teacher", tok, chain)
    llama = save_chain_model(root / "llama", _tokenizer(LLAMA_STYLE), chain)
    return student, teacher, llama


@pytest.mark.parametrize("multiturn", [True, False], ids=["multiturn", "one_turn"])
@pytest.mark.parametrize("system", [None, "Be brief."], ids=["no_system", "system"])
@pytest.mark.parametrize("style", ["qwen", "llama"])
def test_tokens_equal_apply_chat_template_and_share_one_preamble(models, multiturn, system, style):
    tok = AutoTokenizer.from_pretrained(str(models[0] if style == "qwen" else models[2]))
    fmt = chat_format(PromptStyle(chat=True, system=system, fewshot_as_multiturn=multiturn), tok, tok, ("s", "t"))
    template = replace(TEMPLATE, chat=fmt)
    preambles = set()
    for question in ["What is 9 plus 9?", "What is 2 plus 2?", "9 plus 9?", "plus 2?"]:
        preamble, suffix = encode_prompt(tok, template, question)
        expected = tok.apply_chat_template(chat_messages(template, question, fmt), add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
        assert preamble + suffix == list(expected)
        preambles.add(tuple(preamble))
    assert len(preambles) == 1
    [preamble] = preambles
    text = tok.decode(list(preamble))
    if multiturn:  # the exemplar's turns are cached: its answer is in the preamble
        assert "The answer is 4." in text
    assert (tok.decode(list(encode_prompt(tok, template, "What is 9 plus 9?")[1]))
            .endswith("<|im_start|>assistant\n" if style == "qwen" else "<|start_header_id|>assistant<|end_header_id|>\n\n"))
    assert fmt.end_ids == (tok.convert_tokens_to_ids("<|im_end|>" if style == "qwen" else "<|eot_id|>"),)


def test_messages_put_exemplars_in_turns_and_the_instruction_in_the_system_turn():
    tok = _tokenizer(QWEN_STYLE)
    fmt = chat_format(PromptStyle(chat=True, system="You are a tutor."), tok, None, ("s", ""))
    assert chat_messages(TEMPLATE, "What is 9 plus 9?", fmt) == [
        {"role": "system", "content": "You are a tutor.\n\nBe brief."},
        {"role": "user", "content": "Q: What is 2 plus 2?\nA:"}, {"role": "assistant", "content": "The answer is 4."},
        {"role": "user", "content": "Q: What is 9 plus 9?\nA:"}]
    one_turn = replace(fmt, fewshot_as_multiturn=False)
    assert chat_messages(TEMPLATE, "What is 9 plus 9?", one_turn) == [
        {"role": "system", "content": "You are a tutor."}, {"role": "user", "content": TEMPLATE.render("What is 9 plus 9?")}]
    hashes = {prompt_hash(TEMPLATE, "x"), prompt_hash(replace(TEMPLATE, chat=fmt), "x", tok), prompt_hash(replace(TEMPLATE, chat=one_turn), "x", tok)}
    assert len(hashes) == 3


def test_the_models_must_agree_on_the_template_unless_the_config_names_one(models, tmp_path):
    qwen, llama = _tokenizer(QWEN_STYLE), _tokenizer(LLAMA_STYLE)
    with pytest.raises(UserError, match="chat templates differ.*set prompt.chat_template to student, teacher or a Jinja file"):
        chat_format(PromptStyle(chat=True), qwen, llama, ("s", "t"))
    assert chat_format(PromptStyle(chat=True, chat_template="teacher"), qwen, llama, ("s", "t")).template == LLAMA_STYLE
    (tmp_path / "t.jinja").write_text(LLAMA_STYLE)
    assert chat_format(PromptStyle(chat=True, chat_template=str(tmp_path / "t.jinja")), qwen, qwen, ("s", "t")).template == LLAMA_STYLE
    # written differently, rendered alike (Qwen2.5's sizes differ only in their tool-use text): accepted
    assert chat_format(PromptStyle(chat=True), qwen, _tokenizer(QWEN_STYLE + "{% if tools %}{{ '{{' }}{% endif %}"), ("s", "t"))
    bare = build_word_tokenizer(WORDS, SPECIAL, eos="<|endoftext|>")
    with pytest.raises(UserError, match="the student 's' has no chat template"):
        chat_format(PromptStyle(chat=True), bare, bare, ("s", "t"))
    with pytest.raises(UserError, match="must be student, teacher, a Jinja file or Jinja text"):
        chat_format(PromptStyle(chat=True, chat_template="mine"), qwen, qwen, ("s", "t"))


def test_a_template_that_does_not_put_the_question_is_refused(tmp_path):
    """A template whose prompt is the same for two questions (it never reads `messages`, or is
    not a chat template at all) would give every row one answer: refused in one line."""
    constant = "{{ bos_token }}<|im_start|>assistant\n"
    with pytest.raises(UserError, match="^the models' own chat template renders every question alike"):
        chat_format(PromptStyle(chat=True), _tokenizer(constant), _tokenizer(constant), ("s", "t"))
    only_system = "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(UserError, match="^prompt.chat_template \\(.*\\) renders every question alike"):
        chat_format(PromptStyle(chat=True, system="Be brief.", chat_template=only_system), _tokenizer(QWEN_STYLE), None, ("s", ""))
    (tmp_path / "hostname").write_text("build-host-7\n")
    with pytest.raises(UserError, match=f"^prompt.chat_template \\({re.escape(str(tmp_path / 'hostname'))}\\) renders every question alike"):
        chat_format(PromptStyle(chat=True, chat_template=str(tmp_path / "hostname")), _tokenizer(QWEN_STYLE), None, ("s", ""))
    (tmp_path / "cp1252.jinja").write_bytes(QWEN_STYLE.replace("assistant", "assistant \u2013").encode("cp1252"))
    with pytest.raises(UserError, match="cp1252.jinja: not UTF-8 text"):
        chat_format(PromptStyle(chat=True, chat_template=str(tmp_path / "cp1252.jinja")), _tokenizer(QWEN_STYLE), None, ("s", ""))


def test_prompt_section_is_validated_and_raw_runs_keep_their_config_hash():
    base = {"dataset": {"source": "openai/gsm8k", "config": "main"}}
    plain = parse_config({**base, "prompt": "gsm8k_cot_8shot"}, ("dataset",))
    assert "prompt_style" not in plain.to_dict()
    chat = parse_config({**base, "prompt": {"template": "gsm8k_cot_8shot", "chat": True, "system": "Hi"}}, ("dataset",))
    assert (chat.prompt, chat.prompt_style.chat, chat.to_dict()["prompt_style"]["system"]) == ("gsm8k_cot_8shot", True, "Hi")
    for bad, message in [({"chat": "yes"}, "'prompt.chat' must be true or false, got 'yes'"), ({"system": "Hi"}, "set prompt.chat: true"),
                         ({"fewshot_as_multiturn": False}, "apply to chat prompts"),
                         ({"chat": True, "colour": 1}, "unknown field 'colour' \\(known: chat, system, fewshot_as_multiturn, chat_template\\)"), (3, "'prompt' must name a template")]:
        with pytest.raises(UserError, match=message):
            parse_config({**base, "prompt": bad}, ("dataset",))


@pytest.mark.ray  # runs a job on Ray
def test_the_job_runs_chat_prompts_and_stops_at_the_end_of_turn(models, tmp_path):
    """Through jobs.evaluate on Ray: <|im_end|> ends the rows although neither model lists it."""
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "What is 9 plus 9?", "answer": "#### 18"}) + "\n")
    (tmp_path / "tpl.yaml").write_text(yaml.safe_dump({"name": "chat", "question_prefix": "Q: ", "answer_prefix": "\nA:",
                                                        "stop_strings": ["\nQ:"], "exemplars": [
                                                            {"question": "What is 2 plus 2?", "answer": "The answer is 4."}]}))

    def run(name: str, prompt) -> tuple[list[dict], str]:
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "student": {"path": str(models[0])}, "teacher": {"path": str(models[1])},
            "dataset": {"source": str(data), "name": "q", "split": "test"}, "prompt": prompt,
            "decoding": {"max_new_tokens": 8, "batch_size": 1},
            "strategies": [{"name": "student"}, {"name": "teacher"}, {"name": "fixed_alpha", "alpha": 1.0, "n_tokens": 2}],
            "ray": {"student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}}}))
        done = subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(config), "--out", str(tmp_path / name)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return pq.read_table(tmp_path / name / "results").to_pylist(), done.stdout + done.stderr

    rows, out = run("chat", {"template": str(tmp_path / "tpl.yaml"), "chat": True})
    assert {(r["strategy"], r["generated_text"], r["finish_reason"], r["correct"]) for r in rows} == {
        (s, "The answer is 18.", "eos", True) for s in ("student", "teacher", "fixed_alpha(alpha=1.0,n_tokens=2)")}
    assert "note:" not in out

    # raw prompts: the same models run on past <|im_end|> to the budget, and the run says so, once per model
    rows, out = run("raw", str(tmp_path / "tpl.yaml"))
    assert {r["finish_reason"] for r in rows} == {"length"}
    im_end = AutoTokenizer.from_pretrained(str(models[0])).convert_tokens_to_ids("<|im_end|>")
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, out
    assert {("which the teacher generated" in n, "which the student generated" in n) for n in notes} == {(True, False), (False, True)}
    assert all(f"'<|im_end|>' (id {im_end})" in n and n.endswith(f"--set decoding.stop_token_ids=[{im_end}]") for n in notes)


def test_the_stop_rule_holds_the_end_of_turn_id(models):
    config = parse_config({"student": {"path": str(models[0])}, "teacher": {"path": str(models[1])},
                           "dataset": {"source": "openai/gsm8k", "config": "main"}, "prompt": {"chat": True},
                           "strategies": [{"name": "student"}]})
    im_end = AutoTokenizer.from_pretrained(str(models[0])).convert_tokens_to_ids("<|im_end|>")
    assert im_end in run_stop_rule(config).eos_ids
    assert im_end not in run_stop_rule(replace(config, prompt_style=PromptStyle())).eos_ids


def test_the_exemplar_turns_are_the_cached_preamble(models):
    """Questions encoded with the chat template share one preamble, whose KV cache the engine
    computes once: a second batch is fed only its suffixes, and its logits equal a full prefill."""
    from pipeline.config import ModelSpec
    from pipeline.engine.hf import HFEngine
    from pipeline.models.loading import load_model

    lm = load_model(ModelSpec(str(models[0]), dtype="float32"))
    fmt = chat_format(PromptStyle(chat=True, system="Be brief."), lm.tokenizer, None, ("s", ""))
    template = replace(TEMPLATE, chat=fmt)
    cached, full = HFEngine(lm, reuse_preamble=True), HFEngine(lm, reuse_preamble=False)
    cached.prefill("warm", [encode_prompt(lm.tokenizer, template, "What is 2 plus 2?")])
    prompts = [encode_prompt(lm.tokenizer, template, q) for q in ("What is 9 plus 9?", "9 plus 9?")]
    assert len({tuple(p) for p, _ in prompts}) == 1 and len(prompts[0][0]) > 20  # system and exemplar turns
    before = cached.tokens_processed
    out = cached.prefill("a", prompts)
    assert cached.tokens_processed - before == sum(len(s) for _, s in prompts)  # the preamble was not fed again
    torch.testing.assert_close(out.logits, full.prefill("b", prompts).logits, rtol=0, atol=1e-4)
