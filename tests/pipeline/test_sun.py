import pytest

from tasks.pipeline.sun import FunnelStage, funnel_rate, funnel_table


def test_paper_example_reproduces_the_notation() -> None:
    # SymADiT-like funnel: 12 of 100 DFT-checked stable
    stages = [
        FunnelStage("valid", 9650, 10000),
        FunnelStage("unique", 9300, 9650),
        FunnelStage("novel", 477, 1000),
        FunnelStage("stable", 12, 100),
    ]
    estimate = funnel_rate("S.U.N.", stages, seed=1)
    expected = 0.965 * (9300 / 9650) * 0.477 * 0.12 * 100
    assert estimate.percent == pytest.approx(expected)
    assert estimate.paper_notation() == f"{expected:.2f} (12)"
    assert estimate.low < estimate.percent < estimate.high
    # the stability stage (12 of 100) dominates the uncertainty: a wide interval
    assert estimate.high - estimate.low > 0.4 * estimate.percent


def test_interval_shrinks_with_more_checks_and_is_seeded() -> None:
    small = funnel_rate("x", [FunnelStage("stable", 5, 50)], seed=3)
    large = funnel_rate("x", [FunnelStage("stable", 500, 5000)], seed=3)
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert funnel_rate("x", [FunnelStage("stable", 5, 50)], seed=3) == small


def test_zero_counts_and_bad_stages() -> None:
    none_stable = funnel_rate("x", [FunnelStage("stable", 0, 20)])
    assert none_stable.percent == 0 and none_stable.low == 0 and none_stable.high > 0
    with pytest.raises(ValueError):
        FunnelStage("bad", 3, 2)
    assert "| stable | 0 | 20 | 0.00% |" in funnel_table([FunnelStage("stable", 0, 20)])
