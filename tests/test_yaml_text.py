"""Strict YAML for settings (pipeline/config/yaml_text.py): what is refused, what still reads."""
import pytest

from pipeline.config.yaml_text import parse_yaml
from pipeline.errors import UserError


def test_merge_keys_and_aliases_read_as_yaml_says():
    text = "base: &b {num_cpus: 1, num_gpus: 0}\nstudent:\n  <<: *b\n  num_cpus: 2\nteacher: *b\n"
    assert parse_yaml(text, "config") == {"base": {"num_cpus": 1, "num_gpus": 0}, "student": {"num_cpus": 2, "num_gpus": 0},
                                          "teacher": {"num_cpus": 1, "num_gpus": 0}}


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: 2\na: 3\n", r"duplicate key 'a' \(line 3\)"),
    ("a: &x [1, *x]\n", "alias refers to the value that contains it"),
    ("a: " + "[" * 40 + "]" * 40 + "\n", "nested more than 32 levels"),
])
def test_what_yaml_would_take_silently_is_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_yaml(text, "config")
