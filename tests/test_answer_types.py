"""Answer extraction per answer type: the cases that are easy to get wrong."""
import pytest

from pipeline.config.benchmark_spec import ANSWER_TYPES as CHECKED_NAMES
from pipeline.data.answer_types import ANSWER_TYPES, answer_type, score
from pipeline.data.example import Example
from pipeline.data.latex_answers import boxed, gold_math, normalize_math
from pipeline.errors import UserError


def ex(gold, kind="number", choices=()):
    return Example("b/test/000000", 0, "q", gold, answer_type=kind, choices=tuple(choices))


def test_the_config_layer_checks_the_same_answer_types_the_data_layer_scores():
    assert tuple(ANSWER_TYPES) == CHECKED_NAMES
    with pytest.raises(UserError, match="unknown answer type 'essay' \\(known: number, yes_no, choice, math\\)"):
        answer_type("essay")


# --- number: today's rule, strict then flexible --------------------------------------------


def test_number_strict_beats_a_number_echoed_from_the_question():
    s = score("There are 5 apples and 10 pears. The answer is 15. Check: 5 + 10.", ex("15"))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == ("15", True, True, False)


def test_number_without_a_strict_answer_falls_back_to_the_last_number():
    s = score("She had 3 cats and 12 dogs, so 15 pets.", ex("15"))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == ("15", True, False, True)


def test_a_wrong_strict_answer_is_wrong_even_if_a_later_number_is_right():
    s = score("The answer is 14. Oh wait, 15", ex("15"))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == ("14", False, False, True)


def test_number_formatting_does_not_matter():
    assert score("The answer is $1,000.00.", ex("1000")).correct


# --- yes/no --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, answer, strict", [
    ("So the answer is yes.", "yes", True),
    ("The answer is: No", "no", True),
    ("Caesar died long before. yes.", "yes", False),
    ("Yes, it can. But no one tried it... Actually YES", "yes", False),
])
def test_yes_no(text, answer, strict):
    s = score(text, ex(answer, "yes_no"))
    assert (s.answer, s.correct, s.correct_strict) == (answer, True, strict)


def test_yes_inside_a_word_is_not_an_answer():
    s = score("Yesterday nobody knew; the notion is unknowable.", ex("yes", "yes_no"))
    assert s.answer is None and not s.correct


def test_yes_no_gold_from_booleans_and_text():
    kind = answer_type("yes_no")
    assert [kind.gold(v, ()) for v in (True, False, "Yes", "false")] == ["yes", "no", "yes", "no"]
    with pytest.raises(ValueError):
        kind.gold("maybe", ())


# --- choice letters ------------------------------------------------------------------------

ABCD = "ABCD"


@pytest.mark.parametrize("text, letter, strict", [
    ("The answer is B.", "B", True),
    ("the answer is (b)", "B", True),
    ("Sunlight is light energy. The answer is (B) the Sun.", "B", True),
    ("I pick (B).", "B", False),
    ("B) is right", "B", False),
    ("Looking at option C, it works.", "C", False),
])
def test_choice_forms(text, letter, strict):
    s = score(text, ex(letter, "choice", ABCD))
    assert (s.answer, s.correct, s.correct_strict) == (letter, True, strict)


def test_a_letter_inside_a_word_is_never_a_choice():
    s = score("Because Birds Can fly, Dogs cannot.", ex("B", "choice", ABCD))
    assert s.answer is None and not s.correct_flexible


def test_only_the_questions_letters_count():
    # (E) is not a choice of a four-choice question; "a" is an article, not (A)
    s = score("The answer is E. Hmm, a bird? (C)", ex("C", "choice", ABCD))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == ("C", True, False, True)


def test_choice_gold_maps_arc_numeric_labels_to_letters():
    kind = answer_type("choice")
    assert kind.gold("3", ("1", "2", "3", "4")) == "C"
    assert kind.gold("B", ("A", "B")) == "B"
    with pytest.raises(ValueError, match="not one of the choice labels A, B"):
        kind.gold("C", ("A", "B"))


# --- math ----------------------------------------------------------------------------------


def test_boxed_keeps_nested_braces():
    assert boxed(r"so $\boxed{\frac{1}{\sqrt{2}}}$ and more") == r"\frac{1}{\sqrt{2}}"
    assert boxed(r"\boxed{1} then \boxed{\{2, 3\}}") == r"\{2, 3\}"
    assert boxed(r"unfinished \boxed{\frac{1}{2}") is None


@pytest.mark.parametrize("a, b", [
    (r"\frac{1}{2}", "0.5"), (r"\frac{1}{2}", "1/2"), (r"\dfrac{1}{2}", r"\tfrac12"), (r"-\frac{3}{4}", "-0.75"),
    (r"5\text{ cm}", "5"), (r"\left( 1, 2 \right)", "(1,2)"), ("10.", "10"), (r"x = \frac{1}{3}", "1/3"),
    (r"90^\circ", "90"), (r"\text{Monday}", "Monday"), (r"1,\!000", "1000"), (r"\sqrt2", r"\sqrt{2}"),
])
def test_math_equal_after_normalisation(a, b):
    assert normalize_math(a) == normalize_math(b)


@pytest.mark.parametrize("a, b", [(r"\frac{1}{3}", "0.33"), (r"\sqrt{2}", "2"), ("(1,2)", "(2,1)")])
def test_math_different(a, b):
    assert normalize_math(a) != normalize_math(b)


def test_math_gold_is_the_solutions_last_box():
    assert gold_math(r"First $\boxed{3}$ is wrong; the area is $\boxed{\dfrac{1}{2}}$.") == "0.5"
    assert gold_math(r"\frac{\sqrt{3}}{2}") == r"\frac{\sqrt{3}}{2}"  # an answer field without a box
    with pytest.raises(ValueError):
        gold_math(r"no box closes \boxed{1")


def test_math_strict_and_flexible():
    gold = gold_math(r"$\boxed{\frac{1}{\sqrt{2}}}$")
    s = score(r"So $x = \frac{1}{\sqrt{2}}$. The answer is $\boxed{\frac{1}{\sqrt{2}}}$.", ex(gold, "math"))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == (r"\frac{1}{\sqrt{2}}", True, True, True)
    s = score(r"We get $\boxed{0.5}$", ex(gold_math(r"\boxed{\frac12}"), "math"))
    assert (s.answer, s.correct, s.correct_strict, s.correct_flexible) == ("0.5", True, False, True)
    s = score("The answer is 0.5.", ex("0.5", "math"))
    assert s.correct_strict and not s.correct_flexible  # no box: nothing for the flexible rule
