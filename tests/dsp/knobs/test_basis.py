"""Spline bases over the knobs: partition of unity, smoothness, derivatives, additivity."""
from __future__ import annotations

import numpy as np
import pytest

from dsp.knobs.basis import KnobBasis, SplineBasis, second_difference_penalty

GRID = np.linspace(30.0, 110.0, 801)   # beyond both ends of 40..100


@pytest.mark.parametrize("size", range(1, 9))
def test_partition_of_unity_and_nonnegative(size):
    b = SplineBasis(40.0, 100.0, size).design(GRID)
    assert b.shape == (GRID.size, size)
    assert np.all(b >= 0)
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-12)


def test_degree_follows_size():
    assert [SplineBasis(0.0, 1.0, n).degree for n in range(1, 7)] == [0, 1, 2, 3, 3, 3]
    assert SplineBasis(0.0, 1.0, 6).knots().size == 6 + 3 + 1


def test_end_values_are_held_outside_the_interval():
    s = SplineBasis(40.0, 100.0, 6)
    np.testing.assert_array_equal(s.design([20.0, 40.0]), s.design([40.0, 40.0]))
    np.testing.assert_array_equal(s.design([100.0, 130.0]), s.design([100.0, 100.0]))
    assert np.all(s.design([20.0, 130.0], derivative=1) == 0)


def test_cubic_reproduces_cubics_exactly():
    """Clamped cubic splines span every cubic polynomial on the interval."""
    s = SplineBasis(40.0, 100.0, 6)
    x = np.linspace(40.0, 100.0, 31)
    y = 0.002 * (x - 70) ** 3 - 0.1 * (x - 60) ** 2 + x - 5
    b = s.design(x)
    c, *_ = np.linalg.lstsq(b, y, rcond=None)
    np.testing.assert_allclose(b @ c, y, atol=1e-9)
    xs = np.linspace(40.0, 100.0, 7)
    dy = 0.006 * (xs - 70) ** 2 - 0.2 * (xs - 60) + 1
    np.testing.assert_allclose(s.design(xs, derivative=1) @ c, dy, atol=1e-9)


def test_cubic_is_twice_continuously_differentiable_at_the_knots():
    s = SplineBasis(40.0, 100.0, 7)
    interior = s.knots()[4:-4]
    assert interior.size == 3
    eps = 1e-7
    rng = np.random.default_rng(0)
    c = rng.standard_normal(7)
    for t in interior:
        for order in (0, 1, 2):
            left = s.design([t - eps], order) @ c
            right = s.design([t + eps], order) @ c
            assert abs(float(left[0] - right[0])) < 1e-4 * (1 + abs(float(left[0])))
        # the third derivative does jump there (otherwise the knot would be pointless)
        jump = s.design([t + 1e-3], 3) @ c - s.design([t - 1e-3], 3) @ c
        assert abs(float(jump[0])) > 1e-8


def test_derivative_matches_finite_differences():
    s = SplineBasis(40.0, 100.0, 5)
    x = np.array([43.0, 57.5, 71.2, 96.0])
    h = 1e-5
    fd = (s.design(x + h) - s.design(x - h)) / (2 * h)
    np.testing.assert_allclose(s.design(x, 1), fd, atol=1e-8)


def test_second_difference_penalty_annihilates_straight_lines():
    p = second_difference_penalty(6)
    assert np.allclose(p @ np.ones(6), 0) and np.allclose(p @ np.arange(6.0), 0)
    assert np.all(np.linalg.eigvalsh(p) > -1e-12)
    assert np.linalg.matrix_rank(p) == 4
    assert np.all(second_difference_penalty(2) == 0)


def test_single_knob_basis_is_the_spline():
    kb = KnobBasis.uniform(("peak_reduction",), np.array([[40.0], [70.0], [100.0], [55.0], [85.0]]), 4)
    assert kb.size == 4
    np.testing.assert_array_equal(kb.design(GRID), SplineBasis(40.0, 100.0, 4).design(GRID))
    np.testing.assert_array_equal(kb.penalty(), second_difference_penalty(4))


def test_uniform_never_has_more_functions_than_distinct_values():
    kb = KnobBasis.uniform(("a", "b"), np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 3.0]]), 5)
    assert [s.size for s in kb.splines] == [3, 2]


def test_additive_basis_over_two_knobs():
    kb = KnobBasis(("threshold", "ratio"), (SplineBasis(-40.0, 0.0, 5), SplineBasis(1.0, 10.0, 4)))
    assert kb.size == 5 + 3
    rng = np.random.default_rng(3)
    k = np.column_stack([rng.uniform(-40, 0, 50), rng.uniform(1, 10, 50)])
    b = kb.design(k)
    assert b.shape == (50, 8)
    # an additive function: f(a, b) = fa(a) + fb(b), with fb(low) = 0 pinning the constant
    c = rng.standard_normal(8)
    fa = kb.splines[0].design(k[:, 0]) @ c[:5]
    fb = kb.splines[1].design(k[:, 1])[:, 1:] @ c[5:]
    np.testing.assert_allclose(b @ c, fa + fb, atol=1e-12)
    assert np.allclose(kb.splines[1].design([1.0])[:, 1:], 0)
    # derivatives: in one knob only that knob's term moves; a mixed derivative is zero
    np.testing.assert_allclose(kb.design(k, (1, 0))[:, 5:], 0)
    np.testing.assert_allclose(kb.design(k, (0, 1))[:, :5], 0)
    assert np.all(kb.design(k, (1, 1)) == 0)
    # full column rank on scattered data: the additive model is identifiable
    assert np.linalg.matrix_rank(b) == 8
    p = kb.penalty()
    assert p.shape == (8, 8) and np.allclose(p, p.T) and np.all(np.linalg.eigvalsh(p) > -1e-12)
    assert np.allclose(p[:5, 5:], 0)


def test_knob_count_is_checked():
    kb = KnobBasis(("a", "b"), (SplineBasis(0.0, 1.0, 3), SplineBasis(0.0, 1.0, 3)))
    with pytest.raises(ValueError, match="2 knobs"):
        kb.design(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="duplicate"):
        KnobBasis(("a", "a"), kb.splines)
    with pytest.raises(ValueError):
        SplineBasis(1.0, 1.0, 3)


def test_record_round_trip():
    kb = KnobBasis(("a", "b"), (SplineBasis(-40.0, 0.0, 5), SplineBasis(1.0, 10.0, 4)))
    again = KnobBasis.from_record(kb.to_record())
    assert again == kb
    with pytest.raises(ValueError, match="unknown basis"):
        KnobBasis.from_record({"kind": "fourier"})


def test_first_differences_of_an_additive_basis():
    b = KnobBasis.uniform(("a", "b"), np.array([[40.0, 1], [50, 2], [60, 3], [100, 1]]), 3)
    # knob a keeps its 3 functions; knob b drops its first (an implicit 0 before its 2)
    np.testing.assert_array_equal(b.first_differences(), [[-1, 1, 0, 0, 0], [0, -1, 1, 0, 0],
                                                          [0, 0, 0, 1, 0], [0, 0, 0, -1, 1]])
