import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import build_char_tokenizer, save_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """(student_dir, teacher_dir): two different tiny Llamas sharing one tokenizer."""
    root = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer()
    student = save_tiny_llama(root / "student", tok, hidden=32, layers=1, seed=1)
    teacher = save_tiny_llama(root / "teacher", tok, hidden=48, layers=2, seed=2, vocab_pad=7)
    return student, teacher
