"""Fast checks of the built-in demo world: generator, tokenizer, shipped checkpoints."""
from __future__ import annotations

import functools
import re

from pipeline.demo.problems import cot_text, final_answer, generate_problems, split_problems
from pipeline.demo.world import demo_paths
from pipeline.data.prompts import encode_prompt, load_template

_EQ = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+)$")


def _eval(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def test_generator_is_deterministic():
    assert generate_problems(50, seed=3) == generate_problems(50, seed=3)
    assert generate_problems(50, seed=3) != generate_problems(50, seed=4)


def test_format_and_arithmetic():
    for row in generate_problems(300, seed=1):
        assert set(row) == {"question", "answer"}
        body, tail = row["answer"].rsplit("\n#### ", 1)
        n = int(tail)
        assert re.fullmatch(r"\d+", tail) and final_answer(row) == n
        lines = body.split("\n")
        assert 2 <= len(lines) <= 4
        item, lines[0] = lines[0].split(" ", 1)  # the first line names the asked item
        assert item.isalpha()
        value = None
        for line in lines:
            a, op, b, r = _EQ.match(line).groups()
            assert _eval(int(a), op, int(b)) == int(r)
            if op == "/":
                assert int(a) % int(b) == 0
            value = int(r)
        assert value == n  # the last equation yields the answer
        cot = cot_text(row)
        assert cot.endswith(f"The answer is {n}.")
        assert re.search(r"The answer is (-?[0-9.,$]+)", cot).group(1).rstrip(".") == str(n)
        assert "\n" not in cot


def test_train_test_disjoint():
    train, test = split_problems(2000, 300, seed=0)
    assert len(train) == 2000 and len(test) == 300
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert split_problems(2000, 300, seed=0) == (train, test)


@functools.cache
def _small_tokenizer():
    """(training texts, tokenizer) of a small world: prompt plus answer, as the models see them."""
    from pipeline.demo.tokenizer import train_tokenizer

    template = load_template("demo")
    texts = [template.render(r["question"]) + " " + cot_text(r) for r in generate_problems(400, seed=2)]
    return texts, train_tokenizer(texts)


def test_tokenizer_round_trip_and_single_digits():
    texts, tok = _small_tokenizer()
    for text in texts + ["Q: 1234567890 + -7 = $3,000.50?\n\nA: x"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    for token in tok.get_vocab():
        assert sum(ch.isdigit() for ch in token) <= 1, token
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.eos_token_id != tok.pad_token_id


def _shipped():
    paths = demo_paths()
    assert (paths.student / "model.safetensors").is_file(), "the demo world ships in demo_world/ (python -m jobs.build_demo)"
    return paths


def test_shipped_data():
    from pipeline.demo.problems import read_jsonl

    paths = _shipped()
    train, test = read_jsonl(paths.train), read_jsonl(paths.test)
    assert len(test) >= 500 and len(train) > len(test)
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert all(r["answer"].rsplit("\n#### ", 1)[1].isdigit() for r in test)


def test_shipped_checkpoints_load_and_share_vocabulary():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = _shipped()
    toks = [AutoTokenizer.from_pretrained(str(p)) for p in (paths.student, paths.teacher, paths.tokenizer)]
    assert toks[0].get_vocab() == toks[1].get_vocab() == toks[2].get_vocab()
    tok = toks[0]
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    sizes = {}
    question = "Tom has 7 pens. He buys 5 bags of 3 pens. He gives away 4. How many pens does Tom have?"
    pre, suf = encode_prompt(tok, load_template("demo"), question)
    for name in ("student", "teacher"):
        model = AutoModelForCausalLM.from_pretrained(str(getattr(paths, name))).eval()
        assert model.config.vocab_size == len(tok)
        sizes[name] = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            logits = model(torch.tensor([pre + suf])).logits
        assert logits.shape == (1, len(pre) + len(suf), len(tok))
        assert torch.isfinite(logits).all()
    assert sizes["teacher"] > 2 * sizes["student"]
    text = tok.decode(tok.encode(" 5*3=15. The answer is 15.", add_special_tokens=False))
    assert text == " 5*3=15. The answer is 15."


def test_chain_of_thought_names_the_asked_item_then_its_count():
    """The CoT opens with the asked item, then its count among three in the inventory."""
    for row in generate_problems(200, seed=5):
        what, who = re.match(r"How many (\w+) does (\w+) have now\?", row["question"]).groups()
        inventory = re.search(rf"{who} has (\w+) (\d+), (\w+) (\d+) and (\w+) (\d+)\.", row["question"]).groups()
        counts = {inventory[i]: int(inventory[i + 1]) for i in (0, 2, 4)}
        assert len(counts) == 3
        item, first = re.match(r"(\w+) (\d+)", cot_text(row)).groups()
        assert item == what and int(first) == counts[what]


def test_item_and_count_are_adjacent_tokens():
    """The lookup is learnable only when the count token directly follows its item token."""
    _, tok = _small_tokenizer()
    for text in ("Tom has stamps 7, candies 6 and marbles 5.", " marbles 5+3=8."):
        pieces = tok.convert_ids_to_tokens(tok.encode(text, add_special_tokens=False))
        at = pieces.index("Ġmarbles")
        assert pieces[at + 1] == "Ġ5", pieces
    assert tok.convert_ids_to_tokens(tok.encode(" 16", add_special_tokens=False)) == ["Ġ1", "6"]


def test_recall_drill_supervises_only_the_counts():
    import random

    from pipeline.demo.drill import IGNORE, drill_sequence

    _, tok = _small_tokenizer()
    ids, labels = drill_sequence(random.Random(4), tok, n_inventories=2, n_queries=5)
    assert (ids, labels) == drill_sequence(random.Random(4), tok, n_inventories=2, n_queries=5)
    supervised = [(i, t) for i, t in enumerate(labels) if t != IGNORE]
    assert len(supervised) == 10 and all(ids[i] == t for i, t in supervised)
    text = tok.decode(ids)
    inventory = dict(re.findall(r"(\w+) (\d)", text.split(".")[0]))
    for item, count in re.findall(r" (\w+) (\d)", text.split(".")[1]):
        assert inventory[item] == count  # every query is answered by the inventory


def test_shipped_teacher_tokens_fix_the_students_lookup():
    """The phenomenon the demo exists for: the injected teacher tokens that carry the
    asked item's count lift the student towards the teacher."""
    from pipeline.data.answers import answers_match, extract_answer, gold_from_gsm8k
    from pipeline.decoding.decoder import Decoder
    from pipeline.engine.stop import StopRule
    from pipeline.demo.problems import read_jsonl
    from pipeline.config import ModelSpec
    from pipeline.models.facts import model_facts, shared_vocab_size
    from pipeline.models.loading import eos_token_ids, load_model
    from pipeline.engine.hf import HFEngine
    from pipeline.decoding.strategies import FixedAlpha, Student, Teacher

    paths = _shipped()
    s, t = ModelSpec(str(paths.student)), ModelSpec(str(paths.teacher))
    student, teacher = load_model(s), load_model(t)
    vocab = shared_vocab_size(model_facts(s), model_facts(t))
    template = load_template("demo")
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer,
                      StopRule(frozenset(eos_token_ids(student)), tuple(template.stop_strings), 64))
    rows = read_jsonl(paths.test)[:200]
    prompts = [encode_prompt(student.tokenizer, template, r["question"]) for r in rows]

    def accuracy(strategy) -> float:
        gens = decoder.generate(strategy, prompts)
        return sum(answers_match(extract_answer(g.text), gold_from_gsm8k(r["answer"]))
                   for g, r in zip(gens, rows)) / len(rows)

    alone, injected, teacher_acc = accuracy(Student()), accuracy(FixedAlpha(1.0, 2)), accuracy(Teacher())
    assert teacher_acc >= alone + 0.2, (alone, teacher_acc)
    assert injected >= alone + 0.1, (alone, injected)
