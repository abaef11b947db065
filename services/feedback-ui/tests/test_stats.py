"""The experiment's statistics against values worked out by hand (the working is in each docstring)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from feedback_ui import stats
from feedback_ui.charts import Bar, bar_chart
from feedback_ui.guardrails import by_variant, histogram_quantile, prometheus_queries, traffic_from_metrics_text


# --8<-- [start:wilson-test]
def test_wilson_interval_of_8_out_of_10() -> None:
    """p = 0.8, z² = 3.8415, n = 10: denominator 1 + z²/n = 1.38415; centre (0.8 + 0.19208) / 1.38415 = 0.71674;
    margin 1.95996 · √(0.016 + 0.0096037) / 1.38415 = 0.22658; interval 0.49016 to 0.94331."""
    interval = stats.wilson_interval(8, 10)
    assert interval.low == pytest.approx(0.49016, abs=1e-4)
    assert interval.high == pytest.approx(0.94331, abs=1e-4)


# --8<-- [end:wilson-test]


def test_wilson_interval_at_the_edges_stays_inside_zero_and_one() -> None:
    """0 of 10: centre = margin = (z²/2n) / (1 + z²/n) = 0.19208 / 1.38415 = 0.13877, so 0 to 0.27753."""
    none = stats.wilson_interval(0, 10)
    assert none.low == pytest.approx(0.0, abs=1e-12)
    assert none.high == pytest.approx(0.27753, abs=1e-4)
    everything = stats.wilson_interval(10, 10)
    assert everything.low == pytest.approx(1 - 0.27753, abs=1e-4)
    assert everything.high == pytest.approx(1.0)
    assert stats.wilson_interval(0, 0) == stats.Interval(0.0, 1.0)
    with pytest.raises(ValueError, match="between 0 and n"):
        stats.wilson_interval(11, 10)


def test_two_proportion_z_test_of_30_of_50_against_20_of_50() -> None:
    """Pooled p = 50/100 = 0.5; se = √(0.25 · (1/50 + 1/50)) = 0.1; z = (0.6 - 0.4) / 0.1 = 2.0;
    two-sided p = 2 · (1 - Φ(2)) = 0.04550; one-sided 0.02275."""
    test = stats.two_proportion_z_test(20, 50, 30, 50)
    assert test is not None
    assert test.z == pytest.approx(2.0)
    assert test.p_two_sided == pytest.approx(0.04550, abs=1e-5)
    assert test.p_one_sided == pytest.approx(0.02275, abs=1e-5)
    assert stats.two_proportion_z_test(0, 0, 3, 4) is None  # no champion data
    assert stats.two_proportion_z_test(5, 5, 7, 7) is None  # no variance at all


# --8<-- [start:beta-test]
def test_probability_the_challenger_is_better_from_one_rating_each() -> None:
    """Challenger 1 good of 1: Beta(2, 1), density 2x. Champion 0 of 1: Beta(1, 2), density 2(1-y).
    P(X > Y) = ∫₀¹ 2x · ∫₀ˣ 2(1-y) dy dx = ∫₀¹ 2x (2x - x²) dx = 4/3 - 1/2 = 5/6."""
    assert stats.prob_b_beats_a(0, 1, 1, 1) == pytest.approx(5 / 6)


# --8<-- [end:beta-test]


def test_probability_the_challenger_is_better_in_other_hand_worked_cases() -> None:
    """Against no data (uniform Y): P(X > Y) = ∫₀¹ 2x · x dx = 2/3. Equal data: 1/2 by symmetry.
    Reversed 5/6 case: 1 - 5/6 = 1/6."""
    assert stats.prob_b_beats_a(0, 0, 1, 1) == pytest.approx(2 / 3)
    assert stats.prob_b_beats_a(7, 10, 7, 10) == pytest.approx(0.5)
    assert stats.prob_b_beats_a(1, 1, 0, 1) == pytest.approx(1 / 6)
    # Many ratings: Beta(61, 41) vs Beta(41, 61); the normal approximation of the difference gives Φ(2.869) = 0.9979.
    assert stats.prob_b_beats_a(40, 100, 60, 100) == pytest.approx(0.9979, abs=1e-3)


def test_pairwise_win_rate_counts_a_tie_as_half_a_win() -> None:
    """6 wins, 2 losses, 2 ties: (6 + 2/2) / 10 = 0.7, with the Wilson interval of 7 out of 10."""
    result = stats.win_rate(6, 2, 2)
    assert result.rate == pytest.approx(0.7)
    assert result.comparisons == 10
    assert result.interval == stats.wilson_interval(7, 10)
    assert stats.win_rate(0, 0, 0).rate is None


# --8<-- [start:quantile-test]
def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    """100 requests: 50 under 0.1 s, 90 under 0.5 s, all under 1 s. The 95th is in (0.5, 1]: it is the 5th of
    that bucket's 10, so 0.5 + 0.5 · 5/10 = 0.75 s."""
    buckets = [(0.1, 50), (0.5, 90), (1.0, 100), (math.inf, 100)]
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    # The 50th falls exactly on the first bound; a quantile past the last finite bound reports that bound.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, [(1.0, 10), (math.inf, 100)]) == 1.0
    assert histogram_quantile(0.95, [(1.0, 0), (math.inf, 0)]) is None


# --8<-- [end:quantile-test]


def test_guardrails_read_qa_apis_metrics_exposition_per_variant() -> None:
    """Metrics with qa-api's names and labels, rendered by prometheus_client itself."""
    registry = CollectorRegistry()
    requests = Counter("qa_requests", "", ["endpoint", "variant", "status"], registry=registry)
    latency = Histogram(
        "qa_request_duration_seconds", "", ["endpoint", "variant"], buckets=(0.1, 0.5, 1), registry=registry
    )
    for _ in range(18):
        requests.labels("answer", "champion", "ok").inc()
        latency.labels("answer", "champion").observe(0.05)
    requests.labels("answer", "champion", "error").inc(2)
    latency.labels("answer", "champion").observe(0.7)
    latency.labels("answer", "champion").observe(0.7)
    requests.labels("batch", "challenger", "ok").inc(4)
    for _ in range(4):
        latency.labels("batch", "challenger").observe(2.0)
    requests.labels("answer", "none", "error").inc()  # a request refused before a variant was chosen
    traffic = traffic_from_metrics_text(generate_latest(registry).decode())
    assert set(traffic) == {"champion", "challenger"}
    champion = traffic["champion"]
    assert (champion.requests, champion.errors, champion.error_rate) == (20, 2, 0.1)
    # 20 observations: 18 under 0.1, 20 under 1. The 19th is in (0.5, 1]: 0.5 + 0.5 · (19 - 18) / 2 = 0.75.
    assert champion.p95_s == pytest.approx(0.75)
    assert traffic["challenger"].error_rate == 0
    assert traffic["challenger"].p95_s == 1.0  # all past the last finite bucket: its bound is all we know


def test_prometheus_query_results_become_values_per_variant() -> None:
    """The documented instant-vector response shape; a NaN (no traffic in the window) is no data, not zero."""
    response = json.loads(
        '{"status": "success", "data": {"resultType": "vector", "result": ['
        '{"metric": {"variant": "champion"}, "value": [1732579200, "0.42"]},'
        '{"metric": {"variant": "challenger"}, "value": [1732579200, "NaN"]}]}}'
    )
    assert by_variant(response) == {"champion": 0.42}
    with pytest.raises(ValueError, match="bad_data"):
        by_variant({"status": "error", "error": "bad_data"})
    assert 'status!="ok"' in prometheus_queries("1h")["errors"]


def test_the_chart_draws_each_rate_and_its_interval_to_scale() -> None:
    svg = bar_chart(
        [
            Bar("champion v1", "8/10", 0.8, stats.wilson_interval(8, 10), "#000"),
            Bar("challenger <v2>", "0/0", None, stats.wilson_interval(0, 0), "#111"),
        ],
        "Rated good",
        width=640,
        height=280,
    )
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    bars = root.findall("svg:rect", ns)
    assert len(bars) == 1  # no bar without data
    plot_height = 280 - 48 - 64
    assert float(bars[0].get("height")) == pytest.approx(0.8 * plot_height, abs=0.1)
    texts = [t.text for t in root.findall("svg:text", ns)]
    assert "challenger <v2>" in texts  # escaped in the markup, intact when parsed
    assert "no data yet" in texts
    assert "80%" in texts
