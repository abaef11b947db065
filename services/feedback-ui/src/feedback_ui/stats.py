"""The statistics of the A/B experiment, in plain Python so every number can be checked by hand.

- Each variant's positive rate gets a 95% Wilson score interval (honest at small n and near 0 or 1,
  where the textbook p ± 1.96·√(p(1-p)/n) interval collapses or leaves [0, 1]).
- "Is the challenger better?" is answered as a probability: with a uniform Beta(1, 1) prior, each
  variant's rate has a Beta posterior, and P(p_challenger > p_champion) has an exact closed form.
  The two-proportion z-test is reported next to it for readers who think in p-values.
- Pairwise preferences give a win rate: wins plus half the ties, over all comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


# --8<-- [start:wilson]
def wilson_interval(successes: float, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval for a proportion; (0, 1) when there is no data."""
    if n <= 0:
        return Interval(0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, center - margin), min(1.0, center + margin))


# --8<-- [end:wilson]


@dataclass(frozen=True)
class ZTest:
    z: float
    p_two_sided: float
    p_one_sided: float  # H1: the challenger's rate is higher


# --8<-- [start:z-test]
def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> ZTest | None:
    """Pooled two-proportion z-test of b (challenger) against a (champion); None when it is undefined."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None  # everyone agreed in both groups: there is no variance to test
    z = (successes_b / n_b - successes_a / n_a) / se
    normal = NormalDist()
    return ZTest(z=z, p_two_sided=2 * (1 - normal.cdf(abs(z))), p_one_sided=1 - normal.cdf(z))


# --8<-- [end:z-test]


# --8<-- [start:beta]
def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_b_beats_a(successes_a: int, n_a: int, successes_b: int, n_b: int, prior: tuple[int, int] = (1, 1)) -> float:
    """P(p_b > p_a) for Beta posteriors Beta(prior + successes, prior + failures), exactly.

    The closed form (Evan Miller, "Formulas for Bayesian A/B testing") needs b's first parameter to be
    an integer, which it is with an integer prior:
        P = Σ_{i=0}^{α_b - 1} B(α_a + i, β_a + β_b) / ((β_b + i) · B(1 + i, β_b) · B(α_a, β_a))
    """
    alpha_a, beta_a = prior[0] + successes_a, prior[1] + n_a - successes_a
    alpha_b, beta_b = prior[0] + successes_b, prior[1] + n_b - successes_b
    total = 0.0
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - _log_beta(alpha_a, beta_a)
        )
    return min(1.0, max(0.0, total))


# --8<-- [end:beta]


@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int
    rate: float | None
    interval: Interval

    @property
    def comparisons(self) -> int:
        return self.wins + self.losses + self.ties


# --8<-- [start:win-rate]
def win_rate(wins: int, losses: int, ties: int) -> WinRate:
    """Wins plus half the ties, over all comparisons, with a Wilson interval on that share."""
    n = wins + losses + ties
    score = wins + ties / 2
    return WinRate(wins, losses, ties, score / n if n else None, wilson_interval(score, n))


# --8<-- [end:win-rate]
