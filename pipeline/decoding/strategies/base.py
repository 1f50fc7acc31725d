"""What a decoding strategy is: a frozen value whose fields are its parameters (a pydantic
schema, so a config entry is checked by the class that runs it), a teacher plan, and the
per-row choices the shared loop asks of it. Strategies hold no I/O."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from pydantic.dataclasses import dataclass as schema_dataclass

from pipeline.config.schema import STRICT
from pipeline.decoding.distributions import entropy
from pipeline.decoding.teacher_next import TeacherNext, mixed_argmax
from pipeline.engine.interface import FeatureRequest, Prompt
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pipeline.decoding.decoder import Decoder
    from pipeline.decoding.generation import Generation


class AlphaPolicy(Protocol):
    """An α-predictor artifact as a strategy sees it (`predictor.online` loads one)."""

    source: str  # where it came from (an artifact directory), recorded in result rows
    student: str  # identity of the student it was built for
    n_tokens: int
    feature_request: FeatureRequest
    needs_teacher: bool  # reads the teacher's first-token distribution too
    decision: dict  # the artifact's policy: kind (learned | fixed), default_alpha, threshold, reason
    gate: dict  # its calibrated entropy gate: alpha, lo, hi
    budget: dict | None  # its calibrated budget (from position labels): signal, threshold, k, alpha

    def alphas(self, features: torch.Tensor, p_first: torch.Tensor, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """[B] mixing weights from hidden features [B, D] and the first-token probabilities
        [B, V] of the student (and of the teacher, when `needs_teacher`)."""


LoadArtifact = Callable[[str], AlphaPolicy]


@dataclass(frozen=True)
class TeacherPlan:
    """What a strategy asks of the teacher, known before decoding starts. Which rows consult
    it and with which α is decided per batch (`Strategy.row_alphas`); which token each
    consulted step takes, by `Strategy.pick`."""

    steps: int | None = 0  # mixed steps from the first token; None: every step; 0: never asked
    every_row: bool = False  # every row consults, whatever the student's prefill says
    reads_first: bool = False  # α is chosen from the teacher's first distribution of every row
    full_rows: bool = False  # each step reads whole distributions, not only the top-k
    full_rows_dtype: str | None = None  # the precision full rows cross at (None: float32, exactly)
    budget: int | None = None  # teacher-decided tokens a row may take; it leaves the teacher once they are spent
    # the teacher is read only at the steps `Strategy.consults` picks, catching up on what the
    # row wrote since (not stepped along); every row stays with it, whatever its first α
    on_demand: bool = False

    @property
    def prefills_every_row(self) -> bool:
        """The teacher's prefill of every row can start with the student's own."""
        return self.steps != 0 and (self.every_row or self.reads_first)


STRATEGIES: dict[str, type[Strategy]] = {}


def strategy(name: str):
    """Class decorator: a frozen strategy whose fields are validated as its schema,
    registered under its config `name`."""
    def register(cls):
        held = STRATEGIES.get(name)
        if held is not None and (held.__module__, held.__qualname__) != (cls.__module__, cls.__qualname__):
            raise UserError(f"strategy '{name}' is registered already (by {held.__module__}): pick another name")
        cls = schema_dataclass(frozen=True, config=STRICT)(cls)
        cls.name = name
        STRATEGIES[name] = cls
        return cls
    return register


@schema_dataclass(frozen=True, config=STRICT)
class Strategy:
    """Base: the student decodes greedily alone."""

    name: ClassVar[str] = ""
    # decoded on its own (`decode_alone`: the teacher alone, CoT-decoding's branches), not in the
    # student's step loop that a batch's other strategies share
    alone: ClassVar[bool] = False
    # fields set when the run is built, never by a config entry
    runtime_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def config_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in cls.runtime_fields]

    @property
    def plan(self) -> TeacherPlan:
        return TeacherPlan()

    def params(self) -> dict:
        """The parameters the strategy really runs with (after resolving any artifact): what
        its result rows record in `params`."""
        return {name: getattr(self, name) for name in self.config_fields()}

    @property
    def feature_request(self) -> FeatureRequest | None:
        """Student hidden states this strategy needs at prefill, if any."""
        return None

    def resolved(self, load_artifact: LoadArtifact | None) -> Strategy:
        """The strategy with the artifact it names loaded (strategies that name none: itself)."""
        return self

    def with_answer_span(self, find: Callable[[str], tuple[int, int] | None]) -> Strategy:
        """The strategy as it decodes one benchmark, whose answers `find` locates in a text."""
        return self

    def check_student(self, identity: str) -> None:
        """Refuse a student this strategy was not built for (before any decoding)."""

    def note(self) -> str | None:
        """One line for the console about how this strategy will run, if it needs saying."""
        return None

    def row_alphas(self, p_first: torch.Tensor, features: torch.Tensor | None = None, p_teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row mixing weight; rows with α = 0 leave the teacher (or never call it)."""
        return torch.zeros(p_first.shape[0], device=p_first.device)

    def alphas_at(self, t: int, alphas: torch.Tensor) -> torch.Tensor:
        """The α of each consulting row at step t, from the rows' `row_alphas`."""
        return alphas

    def consults(self, t: int, p_student: torch.Tensor, alphas: torch.Tensor, spent: torch.Tensor | None) -> torch.Tensor:
        """On demand: which rows (bool [R]) ask the teacher at step t, from the student's
        distribution; the teacher catches up on those rows only."""
        return torch.ones(p_student.shape[0], dtype=torch.bool, device=p_student.device)

    def uncertainty(self, p_student: torch.Tensor) -> torch.Tensor:
        """The student's uncertainty per row as this strategy measures it (recorded with each
        consultation): its entropy, nats."""
        return entropy(p_student)

    def decode_alone(self, decoder: Decoder, prompts: list[Prompt]) -> list[Generation]:
        """The rows of a strategy that decodes on its own (`alone`), with the decoder's engines."""
        raise NotImplementedError(f"{self.name} decodes in the shared loop")

    def pick(self, t: int, p_student: torch.Tensor, teacher: TeacherNext, alphas: torch.Tensor,
             spent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens for the rows that consult the teacher at step t, and which of them the
        teacher decided (`spent`: how many tokens it decided in each row so far)."""
        tokens = mixed_argmax(p_student, teacher, alphas)
        return tokens, torch.ones_like(tokens, dtype=torch.bool)


def runtime_field(default: Any = None) -> Any:
    """A field the run sets (a loaded artifact, a benchmark's answer finder): not compared,
    not printed, not a config parameter."""
    return dataclasses.field(default=default, compare=False, repr=False)
