"""The stopping rule: when an experiment has a winner.

The arm with the highest posterior probability of being best (the first of
equal ones) wins when

.. math:: P(\\text{best}) \\ge p^* \\quad\\text{and}\\quad
          \\mathbb{E}[\\max_j \\theta_j - \\theta_k] \\le \\ell^*,

the second condition keeping a near tie from being called on P(best) alone.
With fewer than two arms there is nothing to win. The reallocator may then
promote the winner (``auto_promote``); the report names it either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bandit.errors import InvalidInputError

__all__ = ["StoppingRule"]


@dataclass(frozen=True, kw_only=True)
class StoppingRule:
    """Thresholds :math:`p^*` (``prob_best``) and :math:`\\ell^*` (``expected_loss``)."""

    prob_best: float = 0.95
    expected_loss: float = 0.001
    auto_promote: bool = False

    def __post_init__(self) -> None:
        if not 0.5 < self.prob_best < 1.0:
            msg = f"prob_best must be in (0.5, 1), but {self.prob_best!r} was given."
            raise InvalidInputError(msg)
        if not self.expected_loss >= 0.0:
            msg = f"expected_loss must be non-negative, but {self.expected_loss!r} was given."
            raise InvalidInputError(msg)

    def winner(
        self,
        names: Sequence[str],
        prob_best: Sequence[float],
        expected_loss: Sequence[float],
    ) -> str | None:
        """The winning arm, or ``None`` while the rule is not met.

        Parameters
        ----------
        names : sequence of str, length ``K``
        prob_best, expected_loss : sequence of float, length ``K``
            Each arm's posterior P(best) and expected loss, in the order of ``names``.
        """
        if not len(names) == len(prob_best) == len(expected_loss):
            msg = (
                f"names, prob_best and expected_loss must have one entry per arm, but they "
                f"have {len(names)}, {len(prob_best)} and {len(expected_loss)}."
            )
            raise InvalidInputError(msg)
        if len(names) < 2:
            return None
        best = max(range(len(names)), key=lambda i: prob_best[i])
        if prob_best[best] >= self.prob_best and expected_loss[best] <= self.expected_loss:
            return names[best]
        return None
