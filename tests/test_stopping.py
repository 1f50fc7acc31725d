"""Stopping as real chat and base checkpoints need it: either model's end ids, extra stop
ids from the config, stop strings that are special tokens, and nothing after the end in
the text. The models are real Llama and Qwen2 checkpoints with crafted weights (each
token's successor is fixed), saved and loaded with from_pretrained."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import ModelSpec
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Student, Teacher
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import stop_rule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import cpu_has_bf16, load_model
from tiny_models import build_word_tokenizer, save_chain_model

REPO = Path(__file__).resolve().parents[1]
WORDS = ["Q:", " What", " is", " 9", " plus", " 9?", "\n", "A:", " The", " answer", " 18.", "Human:", " more"]
SPECIAL = ["<|im_end|>", "<|endoftext|>", "</s>"]
ANSWER = {"A:": " The", " The": " answer", " answer": " is", " is": " 18."}
TEMPLATE = PromptTemplate(name="chat", question_prefix="Q: ", answer_prefix="\nA:", stop_strings=("</s>",))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A Llama student ending with '</s>' (a special token that is not its end id) and a Qwen2
    teacher ending with '<|endoftext|>', its generation_config's second end id; the
    tokenizer's own end token is '<|im_end|>'. Both would babble on ('Human: more more ...')."""
    root = tmp_path_factory.mktemp("stop")
    tok = build_word_tokenizer(WORDS, SPECIAL, eos="<|im_end|>")
    ids = tok.convert_tokens_to_ids
    after = {"Human:": " more", " more": " more"}
    student = save_chain_model(root / "student", tok, {**ANSWER, " 18.": "</s>", "</s>": "Human:", **after})
    teacher = save_chain_model(root / "teacher", tok, {**ANSWER, " 18.": "<|endoftext|>", "<|endoftext|>": "Human:", **after},
                               arch="qwen2", eos_ids=[ids("<|im_end|>"), ids("<|endoftext|>")])
    return student, teacher


def _decoder(pair, stop_ids=(), budget=12):
    s, t = ModelSpec(str(pair[0])), ModelSpec(str(pair[1]))
    fs, ft = model_facts(s), model_facts(t)
    student, teacher = load_model(s), load_model(t)
    vocab = shared_vocab_size(fs, ft)
    stop = stop_rule(fs.eos_ids + ft.eos_ids, stop_ids, TEMPLATE.stop_strings, budget)
    return Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop), student.tokenizer


def test_the_teacher_stops_at_its_second_end_id_with_nothing_after_it(pair):
    decoder, tok = _decoder(pair)
    assert tok.convert_tokens_to_ids("<|endoftext|>") in decoder.stop.eos_ids  # from the teacher's generation_config
    [gen] = generate(decoder, Teacher(), [encode_prompt(tok, TEMPLATE, "What is 9 plus 9?")])
    assert gen.finish_reason == "eos" and gen.text == " The answer is 18."
    assert len(gen.token_ids) == 5  # four words and the end id: not run to the budget


def test_a_special_token_stop_string_matches_and_is_cut(pair):
    decoder, tok = _decoder(pair)
    [gen] = generate(decoder, Student(), [encode_prompt(tok, TEMPLATE, "What is 9 plus 9?")])
    assert gen.finish_reason == "stop" and gen.text == " The answer is 18."
    assert tok.convert_ids_to_tokens(gen.token_ids[-1]) == "</s>"


def tok_id(pair, token: str) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(pair[0])).convert_tokens_to_ids(token)


def test_config_stop_ids_end_rows_and_a_runaway_row_says_length(pair):
    decoder, tok = _decoder(pair, stop_ids=[tok_id(pair, " is")])
    [gen] = generate(decoder, Teacher(), [encode_prompt(tok, TEMPLATE, "What is 9 plus 9?")])
    assert gen.finish_reason == "eos" and gen.text == " The answer"
    short, tok = _decoder(pair, budget=3)
    [gen] = generate(short, Teacher(), [encode_prompt(tok, TEMPLATE, "What is 9 plus 9?")])
    assert gen.finish_reason == "length" and gen.text == " The answer is"


@pytest.mark.ray  # runs a job on Ray
def test_the_job_stops_each_model_at_its_end(pair, tmp_path):
    """Through jobs.evaluate on Ray: the driver's stop rule reaches the workers and the teacher actor."""
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "What is 9 plus 9?", "answer": "#### 18"}) + "\n")
    template = tmp_path / "chat.yaml"
    template.write_text(yaml.safe_dump({"name": "chat", "question_prefix": "Q: ", "answer_prefix": "\nA:",
                                        "instruction": "", "stop_strings": ["</s>"]}))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "student": {"path": str(pair[0])}, "teacher": {"path": str(pair[1])},
        "dataset": {"source": str(data), "name": "q", "split": "test"}, "prompt": str(template),
        "decoding": {"max_new_tokens": 12, "batch_size": 1},
        "strategies": [{"name": "student"}, {"name": "teacher"}],
        "ray": {"student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}}}))
    done = subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(config), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["strategy"]: r for r in pq.read_table(tmp_path / "out" / "results").to_pylist()}
    assert rows["teacher"]["finish_reason"] == "eos" and rows["student"]["finish_reason"] == "stop"
    for row in rows.values():
        assert row["generated_text"] == " The answer is 18." and row["correct"]
    assert rows["teacher"]["teacher_tokens"] == 5
    out = done.stdout + done.stderr
    assert "teacher: accuracy 1.000 on 1 examples" in out  # a line per finished strategy

    # dtype auto resolved per actor and recorded; a no-op rerun keeps the first run's timing
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    want = "bfloat16" if cpu_has_bf16() else "float32"
    assert {a["role"] for a in manifest["actors"]} == {"student", "teacher"} and {a["dtype"] for a in manifest["actors"]} == {want}
    again = subprocess.run([sys.executable, "-m", "jobs.evaluate", "--config", str(config), "--out", str(tmp_path / "out")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert rerun["finished_at"] == manifest["finished_at"] and rerun["wall_s"] == manifest["wall_s"]
    # one unit: both strategies of the one batch
    assert [s["units_run"] for s in rerun["sessions"]] == [1, 0] and rerun["actors"] == manifest["actors"]
