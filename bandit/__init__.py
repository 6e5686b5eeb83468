"""Statistics for multi-armed-bandit experiments: pure functions of sufficient statistics.

No I/O, no clock, no global state: every random function takes a
``numpy.random.Generator``. Modules, one concept each:

``stats``          ArmStats (count, sum, sum of squares), bucket discounting
``posterior``      Beta-Bernoulli and normal posteriors
``bayesian``       P(best), expected loss, credible intervals
``allocation``     allocate(): policy configuration + statistics -> weights
``policy``         what a policy is: PolicyConfig, Evidence, Proposal, Policy
``registry``       the policies by kind; register_policy() adds one
``parameters``     policy parameters parsed by their type annotations
``config``         policy_from_dict / policy_to_dict over the registry
``thompson``, ``epsilon_greedy``, ``ucb``, ``fixed``, ``canary``   the policies,
                   each its configuration and its decide function
``guardrails``     ArmHealth, Guardrails and check_guardrails (canary and service)
``stopping``       StoppingRule: when an experiment has a winner
``frequentist``    z-test, Welch, non-inferiority, intervals, tests against control
``sequential``     mSPRT: always-valid p-values and confidence sequences
``corrections``    Holm
``srm``            sample-ratio mismatch
``ipw``            IPW and AIPW values of arms from bandit-collected data
``adaptive``       intervals valid on adaptively collected data (adaptive_intervals)
``ope``            off-policy estimators (ipw, snipw, dm, dr, sndr)
``contextual``     LinTS and LinUCB: LinearStats, fit_linear, decide with propensities
``segmented``      segmented Thompson sampling, pooled posterior for small segments
``replay``         contextual policies replayed on full-information data (regret)
``simulate``       regret of a policy by simulation
``errors``         the exception hierarchy
"""

from __future__ import annotations

from bandit.adaptive import adaptive_intervals
from bandit.allocation import Allocation, allocate
from bandit.bayesian import credible_intervals, expected_loss, prob_best
from bandit.canary import CanaryConfig
from bandit.config import policy_from_dict, policy_to_dict
from bandit.contextual import (
    LinearConfig,
    LinearModel,
    LinearStats,
    Standardizer,
    decide,
    decide_batch,
    fit_linear,
)
from bandit.epsilon_greedy import EpsilonGreedyConfig
from bandit.errors import BanditError, InvalidInputError
from bandit.fixed import FixedConfig
from bandit.guardrails import ArmHealth, GuardrailCheck, Guardrails, check_guardrails
from bandit.ipw import IpwStats
from bandit.policy import Evidence, Policy, PolicyConfig, Proposal
from bandit.registry import get_policy, policy_kinds, register_policy, unregister_policy
from bandit.replay import ReplayResult, replay
from bandit.segmented import SegmentedConfig, SegmentedModel, fit_segmented
from bandit.simulate import SimulationResult, simulate
from bandit.stats import ArmStats
from bandit.stopping import StoppingRule
from bandit.thompson import ThompsonConfig
from bandit.ucb import Ucb1Config

__all__ = [
    "Allocation",
    "ArmHealth",
    "ArmStats",
    "BanditError",
    "CanaryConfig",
    "EpsilonGreedyConfig",
    "Evidence",
    "FixedConfig",
    "GuardrailCheck",
    "Guardrails",
    "InvalidInputError",
    "IpwStats",
    "LinearConfig",
    "LinearModel",
    "LinearStats",
    "Policy",
    "PolicyConfig",
    "Proposal",
    "ReplayResult",
    "SegmentedConfig",
    "SegmentedModel",
    "SimulationResult",
    "Standardizer",
    "StoppingRule",
    "ThompsonConfig",
    "Ucb1Config",
    "adaptive_intervals",
    "allocate",
    "check_guardrails",
    "credible_intervals",
    "decide",
    "decide_batch",
    "expected_loss",
    "fit_linear",
    "fit_segmented",
    "get_policy",
    "policy_from_dict",
    "policy_kinds",
    "policy_to_dict",
    "prob_best",
    "register_policy",
    "replay",
    "simulate",
    "unregister_policy",
]
