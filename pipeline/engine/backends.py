"""Model backends by name: what `student.backend` / `teacher.backend` pick in the actors.

A backend is a factory `(spec, vocab_size, reuse_preamble) -> engine`. The engine serves the
mixed prefix as a `StepEngine` and plain continuation as a `Generator`
(`pipeline.engine.interface`). `hf`, the default, is transformers in process with its KV
cache kept per session. `MODULE:NAME` imports MODULE first, which registers NAME with
`register_backend` (a backend kept in a package of one's own; ARCHITECTURE.md says what a
vLLM backend would implement)."""
from __future__ import annotations

from collections.abc import Callable

from pipeline.config.sections import ModelSpec
from pipeline.engine.hf import HFEngine
from pipeline.errors import UserError
from pipeline.models.loading import load_model
from pipeline.plugins import registered

Factory = Callable[[ModelSpec, int, bool], object]
BACKENDS: dict[str, Factory] = {}


def register_backend(name: str, factory: Factory) -> None:
    held = BACKENDS.get(name)
    if held is not None and held.__module__ != factory.__module__:
        raise UserError(f"backend '{name}' is registered already (by {held.__module__}): pick another name")
    BACKENDS[name] = factory


def backend_factory(name: str, where: str = "backend") -> Factory:
    """The factory `name` registers; `MODULE:NAME` imports MODULE first. `where` names the
    config field in errors."""
    return registered(name, BACKENDS, "backend", where)


def build_engine(spec: ModelSpec, vocab_size: int, reuse_preamble: bool = True):
    """The engine of `spec.backend` over `spec`'s checkpoint."""
    return backend_factory(spec.backend)(spec, vocab_size, reuse_preamble)


register_backend("hf", lambda spec, vocab_size, reuse_preamble: HFEngine(load_model(spec), vocab_size, reuse_preamble))
