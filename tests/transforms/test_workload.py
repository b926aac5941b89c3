"""Declared questions: a unit's period at the question's grain, and scores that say what share of
what was read the release attributes and at what error (transforms/workload.py)."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.workload import ATTRIBUTED, MIN_CELL, Answers, Question, period_of

LINES = Question(name="lines", ask="lines by store x day", measure="rows", period="day", by={"store": 0})
BUYERS = Question(name="buyers", ask="buyers by country x month", measure="people", period="month", by={"country": 0})


@pytest.mark.parametrize(
    ("label", "grain", "period"),
    [
        ("2026-03-04", "day", "2026-03-04"),
        ("2026-03-04", "week", "2026-03-02"),  # a Wednesday: its ISO week begins on Monday
        ("2026-03-04", "month", "2026-03-01"),
        ("2026-W10", "week", "2026-03-02"),
        ("2026-W10", "day", None),  # a week's rows cannot be told by day
        ("2026-W10", "month", None),  # a week may straddle two months
        ("2026-03", "month", "2026-03-01"),
    ],
)
def test_a_unit_answers_a_period_no_finer_than_itself(label, grain, period):
    assert period_of(label, grain) == period


def _answers(question, units):
    """units: {label: (read values, read people, published values or None, published people)}."""
    answers = Answers([question])
    column = next(iter(question.by))
    for label, (read, read_people, published, published_people) in units.items():
        answers.add(
            question,
            label,
            {column: pa.array(read, pa.string())},
            None if read_people is None else pa.array(read_people, pa.string()),
            None if published is None else {column: np.array(published, object)},
            None if published_people is None else pa.array(published_people, pa.string()),
        )
        answers.close_unit(label)
    return answers.scores()[question.name]


def test_a_release_that_publishes_what_it_read_answers_exactly():
    read = ["A"] * 30 + ["B"] * 25 + ["C"] * 3
    score = _answers(LINES, {"2026-03-01": (read, None, read, None)})
    assert score.answered and score.attributed == 1.0 and score.median_error == 0.0
    assert score.cells == 2  # C: fewer than MIN_CELL read, not scored
    assert score.read == len(read)


def test_a_column_published_coarser_attributes_nothing_and_says_which():
    read = ["A"] * 30
    answers = Answers([LINES])
    answers.coarser["lines"] = "store is published at level 2; the question needs 0"
    answers.add(LINES, "2026-03-01", {"store": pa.array(read)}, None, None, None)
    answers.close_unit("2026-03-01")
    score = answers.scores()["lines"]
    assert not score.answered and score.attributed == 0.0 and "level 2" in score.why and score.median_error == 1.0


def test_people_are_counted_once_per_unit_across_batches_and_a_row_without_one_is_its_own():
    answers = Answers([BUYERS])
    for batch in (["p1", "p2", None], ["p1", "p3", None]):  # p1 in both batches of one unit
        values = pa.array(["CHN"] * 3)
        answers.add(BUYERS, "2026-03-01", {"country": values}, pa.array(batch, pa.string()), None, None)
    answers.close_unit("2026-03-01")
    answers.add(BUYERS, "2026-03-02", {"country": pa.array(["CHN"])}, pa.array(["p1"]), None, None)  # another buyer-day
    answers.close_unit("2026-03-02")
    assert answers.scores()["buyers"].read == 3 + 2 + 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(0, 3)), min_size=1, max_size=300),
    st.floats(0, 1),
)
def test_scores_are_what_the_cells_say(rows, keep):
    """Published = read with a share of rows dropped (suppressed) and some shown as another day's:
    attributed is what is left of what was read; the error is each scored cell's, as a median."""
    read = [store for store, _ in rows]
    cut = int(len(read) * keep)
    published = read[:cut]
    score = _answers(LINES, {"2026-03-01": (read, None, published, None)})
    assert score.read == len(read)
    assert score.attributed == pytest.approx(len(published) / len(read), abs=1e-4)
    counts = {s: read.count(s) for s in set(read)}
    errors = sorted(abs(published.count(s) - n) / n for s, n in counts.items() if n >= MIN_CELL)
    assert score.cells == len(errors)
    if errors:
        assert score.median_error == pytest.approx(float(np.median(errors)), abs=1e-4)
    share = len(published) / len(read)
    assert score.answered == (bool(errors) and share >= ATTRIBUTED and float(np.median(errors)) <= 0.10)
