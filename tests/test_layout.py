"""The house has one direction of imports and no circles; light jobs stay light."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "hub": {"errors"},
    "plugins": {"errors"},
    "config": {"errors"},
    "stats": set(),
    "data": {"config", "hub", "errors"},
    "models": {"config", "hub", "errors"},
    "engine": {"models", "config", "plugins", "errors"},
    "decoding": {"engine", "models", "config", "plugins", "errors"},
    "store": {"config", "errors"},
    "runtime": {"store", "decoding", "engine", "models", "data", "config", "errors"},
    "predictor": {"stats", "store", "decoding", "engine", "config", "errors"},
    "tasks": {"stats", "predictor", "runtime", "store", "decoding", "engine", "models", "data", "config", "errors"},
    "report": {"stats", "predictor", "store", "config", "errors"},
    "demo": {"data", "config", "errors", "package"},
    "cli": {"config", "errors"},
    "jobs": {"cli", "tasks", "report", "demo", "predictor", "decoding", "store", "config", "errors"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("predictor", "jobs"):
        return parts[0]
    return parts[1] if len(parts) > 1 else "package"


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import nodes under `if TYPE_CHECKING:`: read by type checkers, never run."""
    return {inner for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body for inner in ast.walk(stmt)}


def imports(path: Path, runtime_only: bool = False) -> set[str]:
    """Every package module `path` imports, at module level or inside functions (`runtime_only`:
    not those only type checkers read)."""
    found = set()
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree) if runtime_only else set()
    for node in (n for n in ast.walk(tree) if n not in skip):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in ("pipeline", "predictor", "jobs")}


def graph(runtime_only: bool = False) -> dict[str, set[str]]:
    files = [p for d in ("pipeline", "predictor", "jobs") for p in (REPO / d).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    return {m: {i for i in imports(p, runtime_only) if i in modules and i != m} for m, p in modules.items()}


def test_imports_run_one_way_between_layers():
    wrong = [
        f"{m} ({layer(m)}) imports {i} ({layer(i)})"
        for m, deps in graph().items() for i in deps
        if layer(i) != layer(m) and layer(i) not in ALLOWED.get(layer(m), set())
    ]
    assert not wrong, "\n".join(wrong)


def test_no_task_imports_another_task_and_nothing_imports_a_job():
    g = graph()
    wrong = [f"{m} imports {i}" for m, deps in g.items() for i in deps
             if (layer(m) == layer(i) == "tasks" and m != i) or (layer(i) == "jobs" and layer(m) != "jobs")]
    assert not wrong, wrong


def test_no_import_circles():
    g = graph()  # type-only imports too: a module that names its caller's type still depends on it
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for i in g[m]:
            if state.get(i) == 1:
                raise AssertionError(" -> ".join(path + [m, i]))
            if i not in state:
                visit(i, path + [m])
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m, [])


def test_pyarrow_only_jobs_do_not_import_torch_or_sklearn():
    code = ("import sys, jobs.export_distill, jobs.report, pipeline.config;"
            "heavy = sorted(m for m in ('torch', 'sklearn', 'ray') if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    for job in ("jobs.export_distill", "jobs.report"):
        help_run = subprocess.run([sys.executable, "-m", job, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert help_run.returncode == 0 and "usage" in help_run.stdout


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2 and "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text().splitlines()


def test_the_configuration_reference_is_generated_from_the_schemas():
    """docs/configuration.md is `python -m jobs.config_reference`'s output: a field, strategy or
    description changed in the code and not regenerated fails here."""
    from jobs.config_reference import reference
    from pipeline.decoding.strategies import STRATEGIES

    text = reference()
    assert (REPO / "docs" / "configuration.md").read_text() == text, "regenerate: python -m jobs.config_reference > docs/configuration.md"
    assert all(f"### `{name}`" in text for name, cls in STRATEGIES.items() if cls.__module__.startswith("pipeline."))
    assert "| `teacher_top_k` |" in text and "| `memory_gb` |" in text and "| `teacher_token_cost` |" in text


