"""The host memory actors declare to Ray (pipeline/runtime/memory.py)."""
from pathlib import Path

from pipeline.config import load_config
from pipeline.models.facts import model_facts
from pipeline.runtime.memory import GIB, actor_bytes, declared_memory

REPO = Path(__file__).resolve().parents[1]


def test_an_actor_declares_its_weights_kv_cache_and_logits():
    config = load_config(str(REPO / "configs/demo.yaml"))
    student, teacher = model_facts(config.student), model_facts(config.teacher)
    assert student.num_parameters == 162_624 and teacher.num_parameters > student.num_parameters  # as world.json records
    cpu = actor_bytes(teacher, "float32", on_gpu=False, rows=8, positions=300)
    more_rows = actor_bytes(teacher, "float32", on_gpu=False, rows=16, positions=300)
    per_row = (more_rows - cpu) / 8 / 1.25
    assert per_row == teacher.kv_values_per_token * 300 * 4 + teacher.output_size * 12  # KV cache and logits of a row
    assert actor_bytes(teacher, "bfloat16", on_gpu=True, rows=8, positions=300) < cpu  # on a GPU the host keeps no cache

    declared = declared_memory(config, student, teacher, longest_prompt=200, cluster_has_gpus=False)
    assert 0 < declared["student"] < declared["teacher"]  # the teacher serves two students' rows
    pinned = load_config(str(REPO / "configs/demo.yaml"), ["ray.student.memory_gb=2", "ray.teacher.memory_gb=0"])
    assert declared_memory(pinned, student, teacher, 200, False) == {"student": 2 * GIB, "teacher": 0}
