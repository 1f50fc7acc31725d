"""Strategy entries of a config: a name and its parameters, as the YAML gives them.

The parameters are checked by the strategy's own class (`pipeline.decoding.strategies`:
its fields are its schema) when a job builds its run, before any model loads; this layer
stays free of torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StrategySpec:
    """A strategy as the config names it; `label` is its unique id in results."""

    name: str
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Unique, readable id, e.g. `fixed_alpha(alpha=1.0,n_tokens=5)`."""
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})" if inner else self.name
