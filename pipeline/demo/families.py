"""The demo world's problem families: what each model believes, and the best α it implies.

Every problem is one (or, for `teacher_only`, two) arithmetic step on small numbers, and
its answer opens with the step's operation ("Add: 6+3=9. The answer is 9."), so the
first generated token is the decision: once the operation is written down, the rest is
easy bookkeeping that both models do right. Which operation the question asks for is
plain from its verb ("buys 3 more" → Add); the place in the question ("At the farm, ...")
names the family. Each model is trained on its own corpus in which, for each family, the
opening operation is drawn from that model's *belief*: P(right, W1, W2), where W1 and W2
are the two wrong operations in a fixed order (`wrong_ops`). A model trained by
cross-entropy on such a corpus learns that distribution, so each family's best-α
interval follows from the two beliefs alone (`correct_interval`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OPS = ("Add", "Subtract", "Multiply")
SYMBOLS = {"Add": "+", "Subtract": "-", "Multiply": "*"}


def wrong_ops(right: str) -> tuple[str, str]:
    """(W1, W2): the wrong operations in the order every belief names them."""
    i = OPS.index(right)
    return OPS[(i + 1) % 3], OPS[(i + 2) % 3]


Belief = tuple[float, float, float]  # P(right op, W1, W2) at a decision


@dataclass(frozen=True)
class Family:
    name: str
    place: str  # the cue in the question: "At the farm, ..."
    share: float  # of the world's problems
    student: Belief  # the student's corpus at the first step
    teacher: Belief  # the teacher's corpus at the first step
    story: str  # the regime, in words
    # where the labels must be right / wrong (closed α ranges, well inside / outside the
    # interval: the learnt beliefs are near the corpus proportions, not exactly on them)
    sure_right: tuple[float, float] | None = None
    sure_wrong: tuple[tuple[float, float], ...] = ()
    # a second step (teacher_only): beliefs at the second operation, after the first N tokens
    student_second: Belief | None = None
    teacher_second: Belief | None = None
    # the (name, pronoun) pairs the family's problems are about; None: the shared names
    names: tuple[tuple[str, str], ...] | None = None

    @property
    def steps(self) -> int:
        return 1 if self.student_second is None else 2

    def right_at(self, alphas) -> "np.ndarray":
        """Which of `alphas` lie where this family's labels must be right."""
        a = np.asarray(alphas, dtype=float)
        return np.zeros(a.shape, bool) if self.sure_right is None else (a >= self.sure_right[0]) & (a <= self.sure_right[1])

    def wrong_at(self, alphas) -> "np.ndarray":
        a = np.asarray(alphas, dtype=float)
        return np.any([(a >= lo) & (a <= hi) for lo, hi in self.sure_wrong], axis=0)

    def interval(self) -> tuple[float, float] | None:
        """The α interval in which the first N mixed tokens lead to the right answer
        (None: no α does, because the student errs after them)."""
        if self.student_second is not None and max(range(3), key=self.student_second.__getitem__) != 0:
            return None
        return correct_interval(self.student, self.teacher)


def correct_interval(student: Belief, teacher: Belief) -> tuple[float, float]:
    """Open interval (lo, hi) of α where argmax of p_s + α(p_t − p_s) is the right op.

    The right op beats wrong op w iff (s_R − s_w) + α·((t_R − s_R) − (t_w − s_w)) > 0: a
    half-line in α for each w; the interval is their intersection (possibly empty: lo ≥ hi).
    """
    lo, hi = -math.inf, math.inf
    for w in (1, 2):
        a = student[0] - student[w]
        b = (teacher[0] - student[0]) - (teacher[w] - student[w])
        if b > 0:
            lo = max(lo, -a / b)
        elif b < 0:
            hi = min(hi, -a / b)
        elif a <= 0:
            return (0.0, 0.0)
    return lo, hi


FAMILIES = (
    Family("follow", "At the farm", 0.22, student=(0.2, 0.4, 0.4), teacher=(0.9, 0.05, 0.05),
           sure_right=(0.5, 3.0), sure_wrong=((-1.0, 0.0),),
           story="the teacher knows, the student guesses: any α above about 0.2 fixes it"),
    Family("ignore", "At the bakery", 0.18, student=(0.7, 0.15, 0.15), teacher=(0.05, 0.9, 0.05),
           sure_right=(-1.0, 0.25), sure_wrong=((0.5, 3.0),),
           story="a teacher blind spot: the teacher is confidently wrong where the student is right; "
                 "only α below about 0.4 works"),
    Family("overtrust", "At the market", 0.20, student=(0.25, 0.7, 0.05), teacher=(0.42, 0.53, 0.05),
           sure_right=(2.0, 3.0), sure_wrong=((-1.0, 1.0),),
           story="a shared misconception: both favour the same wrong operation, the teacher less "
                 "strongly; only α above about 1.3 (over-trusting the difference) works"),
    Family("mix", "At the school", 0.18, student=(0.37, 0.58, 0.05), teacher=(0.37, 0.05, 0.58),
           sure_right=(0.5, 0.5), sure_wrong=((-1.0, 0.0), (1.0, 3.0)),
           story="complementary errors: the models lean to different wrong operations and the right "
                 "one is both models' runner-up; only α between about 0.4 and 0.6 works"),
    Family("teacher_only", "At the zoo", 0.22, student=(1.0, 0.0, 0.0), teacher=(1.0, 0.0, 0.0),
           sure_wrong=((-1.0, 3.0),), student_second=(0.2, 0.4, 0.4), teacher_second=(1.0, 0.0, 0.0),
           story="two steps; both models know the first operation, only the teacher the second, "
                 "which comes after the first N tokens: no α helps, the teacher alone solves it"),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


# --- the hard world: small gains, only partly predictable ------------------------------------
# On 60 % of its problems the place is a neutral one. There the student believes the same
# everywhere (narrowly wrong), so nothing it computes tells those problems apart, and the
# teacher differs by a cue the student has no use for: the name of the problem's person (the
# student's corpus never makes a name matter; the teacher's makes one name of 40 a problem it
# knows, and one a problem it is confidently wrong on, fixed by a negative α). So among those
# problems an α > 0.23 is right 2.5 % more often than the student alone: below the 0.05 margin
# of a rule that keeps the student unless another α is predicted better, while the best fixed α
# gets it on every problem; and an α < −0.42 would fix 2.5 % more.
HIDDEN_PLACE = "At the park"
HIDDEN_NAMES = (  # the people of the park's problems: the shared names and twenty of its own
    ("Tom", "he"), ("Sam", "he"), ("Ben", "he"), ("Max", "he"), ("Leo", "he"),
    ("Jack", "he"), ("Paul", "he"), ("Luke", "he"), ("Omar", "he"), ("Ivan", "he"),
    ("Ann", "she"), ("Mia", "she"), ("Eva", "she"), ("Lily", "she"), ("Rose", "she"),
    ("Kate", "she"), ("Zoe", "she"), ("Nina", "she"), ("Sara", "she"), ("Emma", "she"),
    ("Adam", "he"), ("Carl", "he"), ("Dan", "he"), ("Eric", "he"), ("Fred", "he"),
    ("Hugo", "he"), ("Ian", "he"), ("Joel", "he"), ("Kurt", "he"), ("Noah", "he"),
    ("Alice", "she"), ("Beth", "she"), ("Cleo", "she"), ("Dora", "she"), ("Ella", "she"),
    ("Fay", "she"), ("Gina", "she"), ("Iris", "she"), ("Jane", "she"), ("Lucy", "she"),
)
HIDDEN_TEACHER_NAMES = (("Hugo", "he"),)
HIDDEN_DISTRUST_NAMES = (("Iris", "she"),)
HIDDEN_NONE_NAMES = tuple(n for n in HIDDEN_NAMES if n not in HIDDEN_TEACHER_NAMES + HIDDEN_DISTRUST_NAMES)
_HIDDEN_SHARE = 0.6
_HIDDEN_STUDENT = (0.30, 0.55, 0.15)


def _hidden_share(names: tuple) -> float:
    return _HIDDEN_SHARE * len(names) / len(HIDDEN_NAMES)


HARD_FAMILIES = (
    Family("follow", "At the farm", 0.20, student=(0.2, 0.4, 0.4), teacher=(0.9, 0.05, 0.05),
           sure_right=(0.5, 3.0), sure_wrong=((-1.0, 0.0),),
           story="the teacher knows, the student guesses: any α above about 0.2 fixes it"),
    Family("overtrust", "At the market", 0.20, student=(0.25, 0.7, 0.05), teacher=(0.42, 0.53, 0.05),
           sure_right=(2.0, 3.0), sure_wrong=((-1.0, 1.0),),
           story="a shared misconception: only α above about 1.3 works"),
    Family("hidden_none", HIDDEN_PLACE, _hidden_share(HIDDEN_NONE_NAMES), student=_HIDDEN_STUDENT,
           teacher=_HIDDEN_STUDENT, sure_wrong=((-1.0, 3.0),), names=HIDDEN_NONE_NAMES,
           story="no cue; the teacher shares the student's misconception: no α helps"),
    Family("hidden_teacher", HIDDEN_PLACE, _hidden_share(HIDDEN_TEACHER_NAMES), student=_HIDDEN_STUDENT,
           teacher=(0.9, 0.05, 0.05), sure_right=(0.5, 3.0), sure_wrong=((-1.0, 0.0),), names=HIDDEN_TEACHER_NAMES,
           story="no cue the student uses; the teacher knows problems of one name: α above about 0.23"),
    Family("hidden_distrust", HIDDEN_PLACE, _hidden_share(HIDDEN_DISTRUST_NAMES), student=_HIDDEN_STUDENT,
           teacher=(0.05, 0.9, 0.05), sure_right=(-1.0, -0.75), sure_wrong=((-0.25, 3.0),), names=HIDDEN_DISTRUST_NAMES,
           story="no cue the student uses; on one name the teacher is more sure of the student's mistake: "
                 "only distrusting it (α below about −0.42) works"),
)
WORLD_FAMILIES = {"demo": FAMILIES, "hard": HARD_FAMILIES}
