"""The settings schemas: strict YAML scalars, numbers kept as written, and one line naming the
field, also inside nested sections."""
import pytest

from pipeline.config import parse_config
from pipeline.config.sections import LabelSettings
from pipeline.errors import UserError

MODELS = {"student": {"path": "s"}, "teacher": {"path": "t"}}


@pytest.mark.parametrize("raw, message", [
    ({"ray": {"num_students": "4"}}, "config: 'ray.num_students' must be an integer, got '4'"),
    ({"ray": {"num_students": True}}, "config: 'ray.num_students' must be an integer, got True"),
    ({"ray": {"student": {"gpus": 1}}}, "config: 'ray.student': unknown field 'gpus' (known: num_gpus, num_cpus, accelerator_type, resources, memory_gb)"),
    ({"ray": {"student": {"num_gpus": -1}}}, "config: 'ray.student.num_gpus' must be ≥ 0, got -1"),
    ({"signals": {"ta": {"path": "x", "dtype": "int4"}}}, "config: 'signals.ta.dtype' must be one of 'auto', 'float32', 'bfloat16' or 'float16', got 'int4'"),
    ({"signals": {"temperature": "hot"}}, "config: 'signals.temperature' must be a finite number, got 'hot'"),
    ({"signals": {"temperature": float("nan")}}, "config: 'signals.temperature' must be a finite number, got nan"),
    ({"export": {"sources": []}}, "config: 'export.sources' must not be empty, got []"),
    ({"labels": {"alpha_grid": [1, 1.0]}}, "alpha grid has duplicate values [1]"),
    ({"decoding": {"stop_token_ids": [3, -1]}}, "config: 'decoding.stop_token_ids.1' must be ≥ 0, got -1"),
    ({"student": {"path": "s", "backend": 3}}, "config: 'student.backend' must be a string, got 3"),
])
def test_a_bad_value_is_one_line_naming_the_field(raw, message):
    with pytest.raises(UserError) as err:
        parse_config({**MODELS, **raw}, needs=())
    assert str(err.value) == message


def test_numbers_stay_as_written_and_alpha_grids_are_floats():
    config = parse_config({**MODELS, "signals": {"temperature": 1}, "export": {"uncertainty_floor": 0}}, needs=())
    assert (type(config.signals.temperature), type(config.export.uncertainty_floor)) == (int, int)  # hashes as before
    assert LabelSettings(alpha_grid=[0, 1]).alpha_grid == (0.0, 1.0)
