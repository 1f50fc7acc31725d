"""Fast checks of the built-in demo world: generator, tokenizer, shipped checkpoints."""
from __future__ import annotations

import re


from pipeline.demo.problems import cot_text, final_answer, generate_problems, split_problems
from pipeline.demo.world import demo_paths
from pipeline.prompts import encode_prompt, load_template

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


def test_tokenizer_round_trip_and_single_digits():
    from pipeline.demo.tokenizer import train_tokenizer

    template = load_template("demo")
    rows = generate_problems(400, seed=2)
    texts = [template.render(r["question"]) + " " + cot_text(r) for r in rows]
    tok = train_tokenizer(texts)
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


def test_chain_of_thought_starts_from_the_asked_quantity():
    """The first number of the CoT is the count of the asked item among three in the inventory."""
    for row in generate_problems(200, seed=5):
        what, who = re.match(r"How many (\w+) does (\w+) have now\?", row["question"]).groups()
        inventory = re.search(rf"{who} has (\d+) (\w+), (\d+) (\w+) and (\d+) (\w+)\.", row["question"]).groups()
        counts = {inventory[i + 1]: int(inventory[i]) for i in (0, 2, 4)}
        assert len(counts) == 3
        first = int(re.match(r"(\d+)", cot_text(row)).group(1))
        assert first == counts[what]
