"""Statistics for multi-armed-bandit experiments: pure functions of sufficient statistics.

No I/O, no clock, no global state: every random function takes a
``numpy.random.Generator``. Modules, one concept each:

``stats``          ArmStats (count, sum, sum of squares), bucket discounting
``posterior``      Beta-Bernoulli and normal posteriors
``bayesian``       P(best), expected loss, credible intervals
``allocation``     allocate(): policy configuration + statistics -> weights
``config``         policy configurations and policy_from_dict
``thompson``, ``epsilon_greedy``, ``ucb``, ``canary``   the policies
``frequentist``    z-test, Welch, non-inferiority, intervals, tests against control
``sequential``     mSPRT: always-valid p-values and confidence sequences
``corrections``    Holm
``srm``            sample-ratio mismatch
``ipw``            IPW and AIPW values of arms from bandit-collected data
``ope``            off-policy estimators (ipw, snipw, dm, dr, sndr)
``simulate``       regret of a policy by simulation
``errors``         the exception hierarchy
"""

from __future__ import annotations

from bandit.allocation import Allocation, allocate
from bandit.bayesian import credible_intervals, expected_loss, prob_best
from bandit.canary import ArmHealth
from bandit.config import (
    CanaryConfig,
    EpsilonGreedyConfig,
    FixedConfig,
    PolicyConfig,
    ThompsonConfig,
    Ucb1Config,
    policy_from_dict,
    policy_to_dict,
)
from bandit.errors import BanditError, InvalidInputError
from bandit.ipw import IpwStats
from bandit.simulate import SimulationResult, simulate
from bandit.stats import ArmStats

__all__ = [
    "Allocation",
    "ArmHealth",
    "ArmStats",
    "BanditError",
    "CanaryConfig",
    "EpsilonGreedyConfig",
    "FixedConfig",
    "InvalidInputError",
    "IpwStats",
    "PolicyConfig",
    "SimulationResult",
    "ThompsonConfig",
    "Ucb1Config",
    "allocate",
    "credible_intervals",
    "expected_loss",
    "policy_from_dict",
    "policy_to_dict",
    "prob_best",
    "simulate",
]
