"""The student decodes greedily alone: the baseline every strategy is compared with."""
from pipeline.decoding.strategies.base import Strategy, strategy


@strategy("student")
class Student(Strategy):
    pass
