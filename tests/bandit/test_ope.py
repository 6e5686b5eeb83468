"""Off-policy estimators on cases computed by hand, and their input validation as a table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bandit import ope
from bandit.errors import InvalidArrayError

# Three rounds, two actions, one slot.
ONE_SLOT = {
    "reward": np.array([1.0, 0.0, 1.0]),
    "action": np.array([0, 1, 1]),
    "pscore": np.array([0.5, 0.25, 0.5]),
    "action_dist": np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]])[:, :, None],
}
ONE_SLOT_Q = np.array([[0.6, 0.3], [0.2, 0.4], [0.5, 0.7]])[:, :, None]
# Weights 0.8/0.5, 0.5/0.25, 0.9/0.5; model values 0.54, 0.30, 0.68;
# residuals at the logged actions 0.4, -0.4, 0.3.
W1 = [1.6, 2.0, 1.8]
DM1 = [0.8 * 0.6 + 0.2 * 0.3, 0.5 * 0.2 + 0.5 * 0.4, 0.1 * 0.5 + 0.9 * 0.7]
RES1 = [0.4, -0.4, 0.3]

# Two rounds, three actions, two slots; each round is judged at its own slot.
TWO_SLOTS_DIST = np.zeros((2, 3, 2))
TWO_SLOTS_DIST[0, :, 0] = [0.2, 0.3, 0.5]
TWO_SLOTS_DIST[0, :, 1] = [0.6, 0.2, 0.2]
TWO_SLOTS_DIST[1, :, 0] = [1.0, 0.0, 0.0]
TWO_SLOTS_DIST[1, :, 1] = [0.1, 0.1, 0.8]
TWO_SLOTS_Q = np.zeros((2, 3, 2))
TWO_SLOTS_Q[0, :, 0] = [9.0, 9.0, 9.0]  # slot 0 of round 0 is never looked at
TWO_SLOTS_Q[0, :, 1] = [0.5, 0.1, 0.9]
TWO_SLOTS_Q[1, :, 0] = [0.3, 0.7, 1.1]
TWO_SLOTS_Q[1, :, 1] = [-5.0, -5.0, -5.0]  # nor slot 1 of round 1
TWO_SLOTS = {
    "reward": np.array([1.0, 2.0]),
    "action": np.array([0, 2]),
    "pscore": np.array([0.4, 0.5]),
    "action_dist": TWO_SLOTS_DIST,
    "position": np.array([1, 0]),
}
# Weights 0.6/0.4 = 1.5 and 0/0.5 = 0; model values 0.5 and 0.3; residuals 0.5 and 0.9.


def test_one_slot_estimates_by_hand() -> None:
    assert ope.ipw(**ONE_SLOT) == pytest.approx((1.6 * 1 + 0 + 1.8 * 1) / 3, rel=1e-15)
    assert ope.snipw(**ONE_SLOT) == pytest.approx((1.6 + 1.8) / sum(W1), rel=1e-15)
    assert ope.dm(
        action_dist=ONE_SLOT["action_dist"], estimated_rewards=ONE_SLOT_Q
    ) == pytest.approx(sum(DM1) / 3, rel=1e-15)
    dr_rounds = [d + w * r for d, w, r in zip(DM1, W1, RES1, strict=True)]
    assert ope.dr(**ONE_SLOT, estimated_rewards=ONE_SLOT_Q) == pytest.approx(
        sum(dr_rounds) / 3, rel=1e-15
    )
    mean_w = sum(W1) / 3
    sndr_rounds = [d + w * r / mean_w for d, w, r in zip(DM1, W1, RES1, strict=True)]
    assert ope.sndr(**ONE_SLOT, estimated_rewards=ONE_SLOT_Q) == pytest.approx(
        sum(sndr_rounds) / 3, rel=1e-15
    )


def test_two_slot_estimates_with_positions_by_hand() -> None:
    assert ope.ipw(**TWO_SLOTS) == pytest.approx(0.75, rel=1e-15)
    assert ope.snipw(**TWO_SLOTS) == pytest.approx(1.0, rel=1e-15)
    assert ope.dm(**TWO_SLOTS, estimated_rewards=TWO_SLOTS_Q) == pytest.approx(0.4, rel=1e-15)
    assert ope.dr(**TWO_SLOTS, estimated_rewards=TWO_SLOTS_Q) == pytest.approx(
        (0.5 + 1.5 * 0.5 + 0.3 + 0.0) / 2, rel=1e-15
    )
    assert ope.sndr(**TWO_SLOTS, estimated_rewards=TWO_SLOTS_Q) == pytest.approx(
        (0.5 + 1.5 * 0.5 / 0.75 + 0.3 + 0.0) / 2, rel=1e-15
    )


def test_position_defaults_to_the_first_slot() -> None:
    logged = {key: value for key, value in TWO_SLOTS.items() if key != "position"}
    # Slot 0: weights 0.2/0.4 and 0/0.5.
    assert ope.ipw(**logged) == pytest.approx((0.5 * 1.0 + 0.0) / 2, rel=1e-15)
    assert ope.ipw(**logged) == ope.ipw(**logged, position=np.zeros(2, dtype=int))


def loop_estimates(data: dict[str, np.ndarray], q: np.ndarray) -> dict[str, float]:
    """The five estimators written as plain loops over rounds."""
    n = data["reward"].size
    w, dm_round, resid = [], [], []
    for i in range(n):
        a, k = int(data["action"][i]), int(data["position"][i])
        pi = data["action_dist"][i, :, k]
        w.append(pi[a] / data["pscore"][i])
        dm_round.append(sum(pi[b] * q[i, b, k] for b in range(pi.size)) / sum(pi))
        resid.append(data["reward"][i] - q[i, a, k])
    mean_w = sum(w) / n
    return {
        "ipw": sum(wi * r for wi, r in zip(w, data["reward"], strict=True)) / n,
        "snipw": sum(wi * r for wi, r in zip(w, data["reward"], strict=True)) / sum(w),
        "dm": sum(dm_round) / n,
        "dr": sum(d + wi * e for d, wi, e in zip(dm_round, w, resid, strict=True)) / n,
        "sndr": sum(d + wi * e / mean_w for d, wi, e in zip(dm_round, w, resid, strict=True)) / n,
    }


def test_vectorised_estimators_agree_with_loops_on_random_logs() -> None:
    rng = np.random.default_rng(12)
    n, n_actions, len_list = 200, 4, 3
    dist = rng.dirichlet(np.ones(n_actions), size=(n, len_list)).transpose(0, 2, 1)
    data = {
        "reward": rng.binomial(1, 0.3, n).astype(float),
        "action": rng.integers(0, n_actions, n),
        "pscore": rng.uniform(0.05, 1.0, n),
        "action_dist": dist,
        "position": rng.integers(0, len_list, n),
    }
    q = rng.uniform(0, 1, (n, n_actions, len_list))
    want = loop_estimates(data, q)
    got = {
        "ipw": ope.ipw(**data),
        "snipw": ope.snipw(**data),
        "dm": ope.dm(**data, estimated_rewards=q),
        "dr": ope.dr(**data, estimated_rewards=q),
        "sndr": ope.sndr(**data, estimated_rewards=q),
    }
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_all_zero_weights_have_defined_self_normalized_values() -> None:
    logged = dict(ONE_SLOT)
    logged["action_dist"] = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])[:, :, None]
    assert ope.snipw(**logged) == 0.0
    assert ope.sndr(**logged, estimated_rewards=ONE_SLOT_Q) == ope.dm(
        action_dist=logged["action_dist"], estimated_rewards=ONE_SLOT_Q
    )


def with_changes(**changes: object) -> dict[str, object]:
    data: dict[str, object] = dict(ONE_SLOT)
    data["estimated_rewards"] = ONE_SLOT_Q
    data.update(changes)
    return data


BAD_INPUTS = [
    (
        with_changes(action_dist=np.array([[0.5, 0.5]])),
        "action_dist must be a 3-dimensional array of shape (n_rounds, n_actions, len_list), "
        "but an array of shape (1, 2) was given.",
    ),
    (
        with_changes(action_dist=np.zeros((0, 2, 1))),
        "action_dist must have at least one round, action and position, but its shape is (0, 2, 1).",
    ),
    (
        with_changes(action_dist=np.array([[0.5, 0.4], [0.5, 0.5], [0.1, 0.9]])[:, :, None]),
        "action_dist must sum to 1 over actions (axis 1) for every round and position, "
        "but one sum is 0.9.",
    ),
    (
        with_changes(action_dist=np.array([[1.2, -0.2], [0.5, 0.5], [0.1, 0.9]])[:, :, None]),
        "action_dist must be non-negative, but -0.2 was given.",
    ),
    (
        with_changes(action_dist=np.array([[np.nan, 1.0], [0.5, 0.5], [0.1, 0.9]])[:, :, None]),
        "action_dist must be finite, but nan was given.",
    ),
    (
        with_changes(reward=np.array([1.0, 0.0])),
        "reward must be a 1-dimensional array of length n_rounds = 3, but an array of shape (2,) was given.",
    ),
    (
        with_changes(reward=np.array(["a", "b", "c"])),
        "reward must hold real numbers, but an array of dtype <U1 was given.",
    ),
    (
        with_changes(reward=np.array([1.0, np.inf, 0.0])),
        "reward must be finite, but inf was given.",
    ),
    (
        with_changes(action=np.array([0.0, 1.0, 1.0])),
        "action must hold integers, but an array of dtype float64 was given.",
    ),
    (
        with_changes(action=np.array([0, 2, 1])),
        "action must hold integers in [0, n_actions) = [0, 2), but 2 was given.",
    ),
    (
        with_changes(action=np.array([0, -1, 1])),
        "action must hold integers in [0, n_actions) = [0, 2), but -1 was given.",
    ),
    (
        with_changes(pscore=np.array([0.5, 0.0, 0.5])),
        "pscore must be in (0, 1], but 0.0 was given.",
    ),
    (
        with_changes(pscore=np.array([0.5, 1.5, 0.5])),
        "pscore must be in (0, 1], but 1.5 was given.",
    ),
    (
        with_changes(pscore=np.array([[0.5, 0.5, 0.5]])),
        "pscore must be a 1-dimensional array of length n_rounds = 3, but an array of shape (1, 3) was given.",
    ),
    (
        with_changes(position=np.array([0, 1, 0])),
        "position must hold integers in [0, len_list) = [0, 1), but 1 was given.",
    ),
    (
        with_changes(position=np.array([0, 0])),
        "position must be a 1-dimensional array of length n_rounds = 3, but an array of shape (2,) was given.",
    ),
    (
        with_changes(estimated_rewards=np.zeros((3, 2, 2))),
        "estimated_rewards must have the shape of action_dist, (3, 2, 1), but (3, 2, 2) was given.",
    ),
    (
        with_changes(estimated_rewards=np.full((3, 2, 1), np.nan)),
        "estimated_rewards must be finite, but nan was given.",
    ),
]

ESTIMATORS: dict[str, Callable[..., float]] = {
    "ipw": ope.ipw,
    "snipw": ope.snipw,
    "dm": ope.dm,
    "dr": ope.dr,
    "sndr": ope.sndr,
}
USES_MODEL = {"dm", "dr", "sndr"}
CASES = [
    (name, data, message)
    for data, message in BAD_INPUTS
    for name in sorted(ESTIMATORS)
    if name in USES_MODEL or not message.startswith("estimated_rewards")
]


@pytest.mark.parametrize(("name", "data", "message"), CASES)
def test_invalid_inputs_raise_exact_messages(
    name: str, data: dict[str, object], message: str
) -> None:
    kwargs = dict(data)
    if name not in USES_MODEL:
        kwargs.pop("estimated_rewards")
    with pytest.raises(InvalidArrayError) as caught:
        ESTIMATORS[name](**kwargs)
    assert str(caught.value) == message


def test_dm_takes_the_logged_arrays_all_together_or_not_at_all() -> None:
    with pytest.raises(InvalidArrayError) as caught:
        ope.dm(
            action_dist=ONE_SLOT["action_dist"],
            estimated_rewards=ONE_SLOT_Q,
            reward=ONE_SLOT["reward"],
        )
    assert str(caught.value) == "dm takes reward, action and pscore all together or none of them."
