"""The teacher decodes alone, inside its own engine: the ceiling limited supervision aims at."""
from pipeline.decoding.strategies.base import Strategy, strategy


@strategy("teacher")
class Teacher(Strategy):
    generator = "teacher"
