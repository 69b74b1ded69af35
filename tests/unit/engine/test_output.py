"""The output rules, on fixed noisy values: what each measurement becomes in the released
table, which groups are suppressed (on the noisy count, at the threshold exactly), and how
error bounds are rounded (up, never down)."""

from __future__ import annotations

import pytest

from safesetting.engine.output import Noisy, present, ratio, round_up, unit_value
from safesetting.engine.parse import parse_query
from safesetting.engine.plan import Aggregate

SEN = "SELECT sen_provision, COUNT(*) AS n FROM census GROUP BY 1"  # groups N, K, E


def plan(sql):
    return parse_query(sql)


def test_counts_are_floored_at_zero_and_carry_their_half_width():
    p = plan(SEN)
    out = present(p, [Noisy(p.aggregates[0], [25, -3, 0], 6.4)], min_cell_count=0, bound=1)
    assert out.rows == [["N", 25], ["K", 0], ["E", 0]]
    assert out.errors == [[None, 6.4]] * 3
    assert (out.columns, out.suppressed, out.bound, out.notes) == (["sen_provision", "n"], 0, 1, [])


@pytest.mark.parametrize(("noisy", "shown"), [(9, None), (10, 10), (11, 11)])
def test_suppression_is_decided_on_the_noisy_count_at_the_threshold(noisy, shown):
    p = plan(SEN)
    out = present(p, [Noisy(p.aggregates[0], [noisy, 50, 50], 3.0)], min_cell_count=10, bound=6)
    assert out.rows[0] == ["N", shown]
    assert out.errors[0] == [None, None if shown is None else 3.0]
    assert out.suppressed == (shown is None)
    assert out.notes == (["1 group(s) with a noisy count under 10 suppressed"] if shown is None
                         else [])  # fmt: skip
    assert out.bound == 6


def test_every_aggregate_of_a_suppressed_group_is_hidden_and_the_first_count_decides():
    p = plan(
        "SELECT sen_provision, SUM(nc_year) AS s, COUNT(*) AS n, AVG(nc_year) AS a"
        " FROM census GROUP BY 1"
    )
    measured = [
        Noisy(p.aggregates[0], [70, 2, 30], 12.0),
        Noisy(p.aggregates[1], [20, 4, 1], 3.0),  # the first count: K and E are small
        Noisy(p.aggregates[2], [70, 2, 30], 12.0, [20, 4, 100], 3.0),
    ]
    out = present(p, measured, min_cell_count=10, bound=1)
    assert [r[1:] for r in out.rows] == [[70, 20, 3.5], [None] * 3, [None] * 3]
    assert out.suppressed == 2


def test_an_averages_noisy_count_decides_suppression_when_there_is_no_count():
    p = plan("SELECT sen_provision, AVG(nc_year) AS a FROM census GROUP BY 1")
    noisy = Noisy(p.aggregates[0], [60, 60, 60], 3.0, [12, 9, -4], 3.0)
    out = present(p, [noisy], min_cell_count=10, bound=1)
    assert [r[1] for r in out.rows] == [5.0, None, None]


def test_a_sum_alone_is_not_suppressed_and_real_sums_return_to_their_units():
    p = plan("SELECT SUM(attainment8) AS s FROM ks4")
    out = present(p, [Noisy(p.aggregates[0], [4_600_123], 1842.13)], min_cell_count=10, bound=1)
    assert out.rows == [[46001.23]]
    assert out.errors == [[18.5]]  # 1842.13 hundredths = 18.4213, rounded up


def test_quantiles_are_released_with_their_rank_note():
    p = plan("SELECT QUANTILE_CONT(read_score, 0.9) AS q FROM ks2")
    out = present(p, [Noisy(p.aggregates[0], [113.0], None, rank_error=16, candidates=41)], 10, 1)
    assert out.rows == [[113.0]]
    assert out.errors == [[None]]
    assert out.notes == [
        "q: chosen by OpenDP's exponential mechanism among 41 catalogue candidates; 95 % of "
        "the time its rank is within about ±16 pupils of the true quantile's (a rank bound: "
        "the value error depends on the data, so none is shown)"
    ]


def test_keys_come_back_in_select_order():
    p = plan("SELECT COUNT(*) AS n, fsm_eligible FROM census GROUP BY fsm_eligible")
    out = present(p, [Noisy(p.aggregates[0], [30, 40], 1.5)], min_cell_count=0, bound=1)
    assert out.columns == ["n", "fsm_eligible"]
    assert out.rows == [[30, False], [40, True]]
    assert out.errors == [[1.5, None], [1.5, None]]


@pytest.mark.parametrize(
    ("s", "s_half", "c", "c_half", "expected"),
    [
        (1000.0, 50.0, 10, 5.0, (100.0, 100.0)),
        (1000.0, 50.0, 100, 5.0, (10.0, 1.06)),  # lo = 950/105, hi = 1050/95 = 11.05
        (50.0, 0.0, 100, 0.0, (0.5, 0.0)),
        (1000.0, 50.0, 0, 5.0, (None, None)),
        (1000.0, 50.0, -3, 5.0, (None, None)),
        (100_000.0, 50.0, 10, 5.0, (200.0, 0.0)),  # held within the bounds
        (-500.0, 10.0, 10, 1.0, (0.0, 0.0)),
        (1000.0, 50.0, 10, 20.0, (100.0, 100.0)),  # count minus its error below 0: upper bound
    ],
)
def test_an_average_is_noisy_sum_over_noisy_count_with_a_worst_case_half_width(
    s, s_half, c, c_half, expected
):
    agg = Aggregate("avg", "a", None, 0, 200)
    assert ratio(s, s_half, c, c_half, agg) == expected


@pytest.mark.parametrize(
    ("x", "up"),
    [(18.4213, 18.5), (0.026101, 0.0262), (123456.0, 124000.0), (1.0, 1.0), (0.0, 0.0),
     (-2.0, 0.0), (999.1, 1000.0)],
)  # fmt: skip
def test_error_bounds_round_up_to_three_significant_figures(x, up):
    assert round_up(x) == up


@pytest.mark.parametrize(
    ("units", "resolution", "value"),
    [(4_600_123, 0.01, 46001.23), (-5, 0.01, -0.05), (17, 1.0, 17), (-17, 1.0, -17),
     (3, 0.5, 1.5)],
)  # fmt: skip
def test_sums_return_to_the_columns_units(units, resolution, value):
    assert unit_value(units, resolution) == value


def test_only_the_first_count_decides_suppression():
    p = plan("SELECT sen_provision, COUNT(*) AS a, COUNT(*) AS b FROM census GROUP BY 1")
    measured = [Noisy(p.aggregates[0], [50, 2, 50], 3.0), Noisy(p.aggregates[1], [2, 50, 50], 3.0)]
    out = present(p, measured, min_cell_count=10, bound=1)
    assert [r[1:] for r in out.rows] == [[50, 2], [None, None], [50, 50]]


def test_an_average_of_a_real_column_is_back_in_its_units():
    p = plan("SELECT AVG(attainment8) AS a FROM ks4")
    out = present(p, [Noisy(p.aggregates[0], [460_000], 150.0, [100], 2.0)], 0, 1)
    assert out.rows == [[46.0]]  # 460,000 hundredths over 100 pupils
    assert out.errors == [[0.955]]  # (4600 + 1.5) / 98 - 46 = 0.954..., rounded up


def test_an_averages_count_of_zero_is_a_small_cell():
    p = plan("SELECT AVG(nc_year) AS a FROM census")
    out = present(p, [Noisy(p.aggregates[0], [0], 3.0, [0], 3.0)], min_cell_count=1, bound=1)
    assert out.rows == [[None]]
    assert out.suppressed == 1


@pytest.mark.parametrize(
    ("s", "c", "c_half", "expected"),
    [
        (7.0, 1, 0.5, (7.0, 7.0)),  # one pupil is still a count: 7 / 0.5 = 14 at worst
        (10.0, 5, 5.0, (2.0, 198.0)),  # count minus its error is 0: the upper bound
        (10.0, 6, 5.0, (1.6667, 8.34)),  # count minus its error is 1
        (1.0, 3, 0.0, (0.3333, 0.0)),  # four decimals
    ],
)
def test_averages_at_their_edges(s, c, c_half, expected):
    assert ratio(s, 0.0, c, c_half, Aggregate("avg", "a", None, 0, 200)) == expected
