"""Release: OpenDP noise calibrated to the contribution bound, honest error bounds, output rules.

Statistical tests use fixed sample sizes and wide tolerances; noise is never seeded.
"""

from __future__ import annotations

import numpy as np
import pytest

from safesetting.engine import mechanisms as mech
from safesetting.engine import noise
from safesetting.engine.compile import compile_plan
from safesetting.engine.measures import TRUE_LIMIT, Quantile
from safesetting.engine.noise import (
    epsilon_share,
    expected_errors,
    mechanism_count,
    release,
)
from safesetting.engine.parse import parse_query
from safesetting.errors import UsageError

SEN = "SELECT sen_provision, COUNT(*) AS n FROM census WHERE academic_year = 2023 GROUP BY 1"


def prepared(sql):
    plan = parse_query(sql)
    return plan, compile_plan(plan)


def test_epsilon_shares_never_exceed_the_charge():
    plan, _ = prepared("SELECT COUNT(*), AVG(read_score), SUM(maths_score) FROM ks2")
    assert mechanism_count(plan) == 4
    assert epsilon_share(plan, 1_000_001) * 4 <= 1.000001
    assert epsilon_share(plan, 3) == 0.0  # three micro-ε cannot be split four ways


def test_every_group_of_the_domain_is_released_even_empty_ones():
    plan, compiled = prepared(SEN)
    out = release(plan, compiled, [("N", 5000)], 1_000_000, min_cell_count=0)
    assert [r[0] for r in out.rows] == ["N", "K", "E"]
    assert out.columns == ["sen_provision", "n"]
    assert out.errors[0][0] is None
    assert out.errors[0][1] > 0


def test_values_outside_the_domain_are_never_released():
    plan, compiled = prepared(SEN)
    out = release(plan, compiled, [("N", 5000), (None, 7), ("Z", 9)], 1_000_000, 0)
    assert [r[0] for r in out.rows] == ["N", "K", "E"]


def test_small_noisy_counts_are_suppressed_and_shown_as_null():
    plan, compiled = prepared(SEN)
    out = release(plan, compiled, [("N", 100_000), ("K", 20_000)], 5_000_000, min_cell_count=10)
    assert out.rows[2] == ["E", None]
    assert out.errors[2] == [None, None]
    assert out.suppressed == 1
    assert any("suppressed" in n for n in out.notes)


def test_error_bound_matches_opendp_accuracy_at_the_bound():
    plan, compiled = prepared("SELECT COUNT(*) FROM exclusions")  # truncated to 20 rows a pupil
    assert compiled.bound.rows == 20
    [exp] = expected_errors(plan, compiled, 1_000_000)
    assert exp.scale == pytest.approx(mech.laplace_scale(20, 1.0))
    assert 55 < exp.half_width < 65  # ≈ 60 at ε = 1, d_in = 20 (±3 at d_in = 1, x20)


@pytest.mark.slow
def test_counts_are_unbiased_and_95_percent_bounds_cover():
    plan, compiled = prepared(SEN)
    truth = {"N": 10_000, "K": 1_400, "E": 500}
    rows = list(truth.items())
    draws, covered, n = {k: [] for k in truth}, 0, 0
    for _ in range(400):
        out = release(plan, compiled, rows, 200_000, min_cell_count=0)  # ε = 0.2
        for (key, value), (_k, err) in zip(out.rows, out.errors, strict=True):
            draws[key].append(value)
            covered += abs(value - truth[key]) <= err
            n += 1
    for key, values in draws.items():
        # sd of the discrete Laplace at scale 5 is ≈ 7: the mean of 400 draws is within ±2.
        assert abs(np.mean(values) - truth[key]) < 2.5
    assert 0.92 <= covered / n <= 0.99


@pytest.mark.slow
def test_average_bounds_cover_the_true_mean():
    plan, compiled = prepared("SELECT writing_ta, AVG(read_score) FROM ks2 GROUP BY writing_ta")
    true_rows = [("EXS", 104 * 2000, 2000), ("GDS", 112 * 300, 300), ("WTS", 95 * 40, 40)]
    covered = n = 0
    for _ in range(300):
        out = release(plan, compiled, true_rows, 500_000, min_cell_count=0)
        for row, err in zip(out.rows[:3], out.errors[:3], strict=True):
            truth = {"EXS": 104, "GDS": 112, "WTS": 95}.get(row[0])
            if truth is None or row[1] is None:
                continue
            covered += abs(row[1] - truth) <= err[1]
            n += 1
            assert 80 <= row[1] <= 120  # post-processing keeps averages inside the bounds
    assert n > 500
    assert covered / n >= 0.95


def test_real_valued_sums_are_released_in_hundredths():
    plan, compiled = prepared("SELECT SUM(attainment8) AS a8 FROM ks4")
    out = release(plan, compiled, [(4_600_000,)], 1_000_000, 0)  # 46,000.00 in hundredths
    value = out.rows[0][0]
    assert value == round(value, 2)
    assert abs(value - 46_000) < 50 * out.errors[0][0]


def test_median_comes_from_the_exponential_mechanism():
    plan, compiled = prepared("SELECT MEDIAN(read_score) AS m FROM ks2")
    values = list(np.clip(np.random.default_rng().normal(104, 6, 5000).round(), 80, 120))
    out = release(plan, compiled, [(values,)], 1_000_000, 0)
    assert 98 <= out.rows[0][0] <= 110


# -- calibration: each vector's noise at its own sensitivity, on tables whose bound is > 1 ---
PINNED = (
    "SELECT reason, COUNT(*) AS n, COUNT(DISTINCT pupil_id) AS p, SUM(sessions) AS s,"
    " AVG(sessions) AS a, MEDIAN(sessions) AS m FROM exclusions WHERE academic_year = 2020"
    " GROUP BY reason"
)


def test_release_calibrates_every_measurement_at_its_sensitivity(monkeypatch):
    """Bound 6 (six exclusions a year), 16 reasons: COUNT at 6, COUNT DISTINCT at
    min(6, 16) = 6, SUM and AVG's sum at 6 x 90, AVG's count at 6, MEDIAN at 6."""
    plan, compiled = prepared(PINNED)
    assert compiled.bound.rows == 6
    laplace_calls, quantile_calls = [], []
    real_laplace, real_quantile = mech.laplace, mech.quantile_meas

    def laplace(values, d_in, eps):
        laplace_calls.append(d_in)
        return real_laplace(values, d_in, eps)

    def quantile(cands, q, d_in, eps):
        quantile_calls.append(d_in)
        return real_quantile(cands, q, d_in, eps)

    monkeypatch.setattr(mech, "laplace", laplace)
    monkeypatch.setattr(mech, "quantile_meas", quantile)
    rows = [("PD", 500, 300, 9000, 9000, 500, [3.0] * 500)]
    noise.release(plan, compiled, rows, 6_000_000, min_cell_count=0)
    assert laplace_calls == [6, 6, 540, 540, 6]
    assert quantile_calls == [6]


def test_the_privacy_map_is_checked_for_real_not_by_assert(monkeypatch):
    with pytest.raises(noise.PrivacyError):
        noise.check_map(1.0000001, 1.0)
    noise.check_map(1.0, 1.0)
    plan, compiled = prepared(SEN)
    monkeypatch.setattr(mech, "laplace_scale", lambda d_in, eps: 0.01)  # far too little noise
    with pytest.raises(noise.PrivacyError):
        noise.release(plan, compiled, [("N", 5)], 1_000_000, min_cell_count=0)


def test_quantile_losses_add_up_across_groups_within_the_share():
    """A pupil whose k_g rows fall in group g (sum of k_g <= bound) loses at most the share:
    the exponential mechanism's privacy map is linear in the symmetric distance."""
    meas, _scale = mech.quantile_meas(tuple(float(x) for x in range(91)), 0.5, 6, 0.3)
    share = 0.3
    assert meas.map(6) <= share
    for k in range(1, 7):
        assert meas.map(k) * 6 / k <= meas.map(6) * (1 + 1e-12)
    assert sum(meas.map(k) for k in (1, 2, 3)) <= share


@pytest.mark.slow
@pytest.mark.parametrize("true_count", [8, 9, 10, 11])
def test_suppression_follows_the_noisy_count_not_the_true_one(true_count):
    """Near the threshold the noisy and true counts disagree: a released cell is one whose
    *noisy* count reached the threshold, so both outcomes occur for each true count."""
    plan, compiled = prepared(SEN)
    outcomes = set()
    for _ in range(200):
        out = noise.release(plan, compiled, [("N", true_count)], 1_000_000, min_cell_count=10)
        value = out.rows[0][1]
        outcomes.add(value is None)
        assert value is None or value >= 10
    assert outcomes == {True, False}


def test_gather_keeps_the_domain_drops_nulls_and_holds_sums_within_int64():
    plan, compiled = prepared(
        "SELECT sen_provision, SUM(nc_year), MEDIAN(nc_year) FROM census GROUP BY 1"
    )
    rows = [("N", 2**80, [1, None, 3]), (None, 7, [5]), ("Z", 9, [6])]
    vectors = noise.gather(plan, compiled, rows)
    assert vectors[(0, "value")] == [TRUE_LIMIT, 0, 0]
    assert [v.tolist() for v in vectors[(1, "values")]] == [[1.0, 3.0], [], []]


def test_an_epsilon_too_small_to_share_is_unusable_input():
    plan, compiled = prepared("SELECT AVG(read_score), MEDIAN(read_score) FROM ks2")
    with pytest.raises(UsageError, match="at least 0.000003"):
        noise.expected_errors(plan, compiled, 2)
    assert len(noise.expected_errors(plan, compiled, 3)) == 2


def test_the_privacy_check_says_what_failed():
    with pytest.raises(noise.PrivacyError, match="privacy loss exceeds its share of epsilon"):
        noise.check_map(0.5000001, 0.5)


def test_quantile_candidates_are_the_public_grid_and_at_most_201():
    agg = parse_query("SELECT MEDIAN(attainment8) FROM ks4").aggregates[0]
    cands = cands_of(agg)
    assert len(cands) == 181
    assert cands[:3] == [0.0, 0.5, 1.0]
    assert cands[-1] == 90.0
    wide = parse_query("SELECT MEDIAN(sessions_possible * 3) FROM absence").aggregates[0]
    cands = cands_of(wide)
    assert len(cands) == 201
    assert (cands[0], cands[-1]) == (0.0, 1200.0)
    assert cands_of(parse_query("SELECT MEDIAN(read_score) FROM ks2").aggregates[0]) \
        == [float(x) for x in range(80, 121)]  # fmt: skip


def test_a_quantile_is_calibrated_for_its_own_alpha(monkeypatch):
    """QUANTILE_CONT(x, 0.9) is a 90th percentile, not a median."""
    plan, compiled = prepared("SELECT QUANTILE_CONT(read_score, 0.9) AS q FROM ks2")
    alphas = []
    real = mech.quantile_meas

    def spy(cands, q, d_in, eps):
        alphas.append(q)
        return real(cands, q, d_in, eps)

    monkeypatch.setattr(mech, "quantile_meas", spy)
    noise.expected_errors(plan, compiled, 1_000_000)
    out = noise.release(plan, compiled, [([float(x) for x in range(80, 121)] * 50,)], 10**9, 0)
    assert alphas == [0.9, 0.9]
    assert 114 <= out.rows[0][0] <= 118  # 90th percentile of 80..120 is 116


# (query, bound, groups) -> per aggregate: (mechanism, sensitivity fed to the scale, half?)
EXPECTED = [
    ("SELECT COUNT(*) FROM ks2", [("discrete Laplace", 1, True)]),
    ("SELECT COUNT(*) FROM exclusions WHERE academic_year = 2020", [("discrete Laplace", 6, True)]),
    ("SELECT reason, COUNT(DISTINCT pupil_id) FROM exclusions WHERE academic_year = 2020"
     " GROUP BY reason", [("discrete Laplace", 6, True)]),
    ("SELECT category, COUNT(DISTINCT pupil_id) FROM exclusions WHERE academic_year = 2020"
     " GROUP BY category", [("discrete Laplace", 2, True)]),
    ("SELECT SUM(read_score) FROM ks2", [("discrete Laplace", 120, True)]),
    ("SELECT AVG(sessions) FROM exclusions WHERE academic_year = 2020",
     [("discrete Laplace", 540, False)]),
    ("SELECT SUM(attainment8) FROM ks4", [("discrete Laplace", 9000, True)]),
    ("SELECT MEDIAN(read_score) FROM ks2", [("exponential (quantile)", 1, False)]),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "expected"), EXPECTED)
def test_a_dry_run_reports_the_calibration_the_release_will_use(sql, expected):
    plan, compiled = prepared(sql)
    eps = 1_000_000
    share = noise.epsilon_share(plan, eps)
    got = noise.expected_errors(plan, compiled, eps)
    assert [e.label for e in got] == [a.label for a in plan.aggregates]
    for e, agg, (mechanism, d_in, has_half) in zip(got, plan.aggregates, expected, strict=True):
        assert e.mechanism == mechanism
        if mechanism == "discrete Laplace":
            scale = mech.laplace_scale(d_in, share)
            assert e.scale == pytest.approx(scale * agg.resolution)
            half = dp_accuracy(scale) * agg.resolution
            assert e.half_width == (pytest.approx(half) if has_half else None)
        else:
            cands = tuple(cands_of(agg))
            assert e.scale == mech.quantile_meas(cands, agg.quantile, d_in, share)[1]
            assert e.half_width is None


def dp_accuracy(scale):
    import opendp.prelude as dp

    return dp.discrete_laplacian_scale_to_accuracy(scale, mech.ALPHA)


def test_the_privacy_check_message_is_exact():
    with pytest.raises(noise.PrivacyError) as info:
        noise.check_map(2.0, 1.0)
    assert str(info.value) == "a measurement's privacy loss exceeds its share of epsilon"


def test_only_quantiles_have_an_alpha():
    with pytest.raises(ValueError, match="^n is not a quantile$"):
        Quantile.alpha(parse_query("SELECT COUNT(*) AS n FROM ks2").aggregates[0])


def test_a_quantile_before_other_aggregates_keeps_them_all():
    plan, compiled = prepared("SELECT MEDIAN(read_score) AS m, COUNT(*) AS n FROM ks2")
    assert [e.label for e in noise.expected_errors(plan, compiled, 1_000_000)] == ["m", "n"]
    out = noise.release(plan, compiled, [([100.0] * 50, 50)], 1_000_000, 0)
    assert out.columns == ["m", "n"]
    assert out.bound == compiled.bound.rows == 1
    assert isinstance(out.rows[0][1], int)
    [note] = out.notes
    cands = len(cands_of(plan.aggregates[0]))
    scale = mech.quantile_meas(tuple(cands_of(plan.aggregates[0])), 0.5, 1, 0.5)[1]
    assert f"among {cands} catalogue candidates" in note
    assert f"within about ±{noise.quantile_rank_error(scale, cands)} pupils" in note


def test_an_epsilon_too_small_to_calibrate_is_unusable_input():
    """A share of one micro-epsilon cannot calibrate a sum whose sensitivity is in the
    billions (20 rows x 800 million units): refused before anything is charged."""
    plan, compiled = prepared("SELECT SUM(sessions_possible * 2000000) FROM absence")
    with pytest.raises(UsageError) as info:
        noise.expected_errors(plan, compiled, 1)
    assert info.value.message == (
        "epsilon 0.000001 is too small to calibrate this query's noise: ask for more"
    )


def test_gather_reads_every_row_past_a_dropped_one():
    plan, compiled = prepared(
        "SELECT sen_provision, SUM(nc_year), MEDIAN(nc_year) FROM census GROUP BY 1"
    )
    rows = [(None, 7, [5]), ("N", None, [1]), ("K", 3, [2, None])]
    vectors = noise.gather(plan, compiled, rows)
    assert vectors[(0, "value")] == [0, 3, 0]
    assert [v.tolist() for v in vectors[(1, "values")]] == [[1.0], [2.0], []]


def cands_of(agg):
    return mech.candidates(agg.lower, agg.upper, agg.resolution)


def test_a_sum_of_values_never_negative_is_never_released_negative():
    """Post-processing: the noisy sum is clamped to the sign its bounds imply."""
    from safesetting.engine.output import Noisy

    agg = parse_query("SELECT academic_year, SUM(sessions_possible) FROM absence GROUP BY 1")
    total = agg.aggregates[0]
    assert total.lower >= 0
    shown = total.measure.present(Noisy(total, [-3915, 120], 10800.0), 2)
    assert shown.values == [0, 120]
    assert shown.errors == [10800, 10800]
