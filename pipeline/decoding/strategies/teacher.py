"""The teacher decodes alone, inside its own engine: the ceiling limited supervision aims at."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.decoding.generation import Generation
from pipeline.decoding.strategies.base import Strategy, strategy
from pipeline.engine.interface import Prompt

if TYPE_CHECKING:
    from pipeline.decoding.decoder import Decoder


@strategy("teacher")
class Teacher(Strategy):
    alone = True

    def decode_alone(self, decoder: Decoder, prompts: list[Prompt]) -> list[Generation]:
        """The whole batch in the teacher's engine: one call (inside its actor, when remote)."""
        gens = []
        for c in decoder.teacher.generate(prompts, decoder.stop):
            n = len(c.token_ids)
            gen = Generation(token_ids=c.token_ids, finish_reason=c.finish_reason, teacher_tokens=n,
                             teacher_positions=list(range(n)))
            gen.read_by_teacher(c.tokens_processed)
            gen.text = decoder.finish_text(gen)
            gens.append(gen)
        return gens
