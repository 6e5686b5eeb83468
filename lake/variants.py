"""Sufficient statistics per (experiment, variant, role, allocation version), adding with ``+``.

A lake file's rows become one :class:`VariantVersionStats` per key; the running totals are
``total = total + per_file``. :class:`VariantView` sums a variant's versions for the
reallocator and the report, and keeps the versions apart for discounting and AIPW.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from bandit.ipw import IpwStats
from bandit.stats import ArmStats
from lake.health import Health

__all__ = ["ArmKey", "VariantVersionStats", "VariantView"]


@dataclass(frozen=True, slots=True)
class ArmKey:
    experiment: str
    variant: str
    role: str
    version: int


@dataclass(frozen=True, slots=True)
class VariantVersionStats:
    """Rewards, IPW sums and serving health of one variant under one allocation version.

    ``ipw.n_total`` counts the part's own weighted rows; the experiment's total replaces
    it when an estimate is made (:meth:`VariantView.ipw`). A row without a propensity (a
    shadow's 0) has no weight and is left out of ``ipw``.
    """

    rewards: ArmStats = field(default_factory=ArmStats)
    ipw: IpwStats = field(default_factory=IpwStats)
    health: Health = field(default_factory=Health)

    def __add__(self, other: VariantVersionStats) -> VariantVersionStats:
        if not isinstance(other, VariantVersionStats):
            return NotImplemented
        return VariantVersionStats(
            self.rewards + other.rewards, self.ipw + other.ipw, self.health + other.health
        )


@dataclass(frozen=True, slots=True)
class VariantView:
    """One variant's statistics over every allocation version, and per version."""

    name: str
    role: str
    total: VariantVersionStats
    by_version: Mapping[int, VariantVersionStats]

    @classmethod
    def of(cls, name: str, role: str, by_version: Mapping[int, VariantVersionStats]) -> VariantView:
        """The view of ``by_version``'s parts, whose total is their sum."""
        total = sum(by_version.values(), VariantVersionStats())
        return cls(name, role, total, dict(sorted(by_version.items())))

    @property
    def served(self) -> int:
        return self.total.health.served

    @property
    def errors(self) -> int:
        return self.total.health.errors

    @property
    def error_rate(self) -> float:
        return self.total.health.error_rate

    @property
    def health(self) -> Health:
        return self.total.health

    @property
    def rewards(self) -> ArmStats:
        return self.total.rewards

    def p(self, q: float) -> float | None:
        """Latency quantile ``q`` in milliseconds over every version."""
        return self.total.health.p(q)

    def ipw(self, n_total: int) -> IpwStats:
        """The arm's IPW sums among ``n_total`` rewarded requests of the experiment.

        The versions' sums add; each part counts its own rows as its total until the
        experiment's ``n_total`` replaces it. (Shadows have no propensity and so no IPW
        estimate.)
        """
        return dataclasses.replace(self.total.ipw, n_total=n_total)

    def buckets(self) -> list[ArmStats]:
        """Rewards per allocation version, oldest first (for discounting and windows)."""
        return [part.rewards for part in self.by_version.values()]
