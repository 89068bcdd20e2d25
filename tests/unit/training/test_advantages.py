"""Group-normalised advantages (reference §7.1): unbiased std, eps, zero-variance groups."""

from __future__ import annotations

import math

import pytest

from mmzero_runtime.training.advantages import group_advantages
from mmzero_runtime.training.errors import TrainingError


@pytest.mark.parametrize(
    ("rewards", "groups", "expected"),
    [
        # mean 0.5, unbiased std sqrt(((0.5)^2 * 2) / 1) = 0.7071: +-0.5 / 0.7071 = +-0.7071
        pytest.param([1.0, 0.0], ["g", "g"], [0.7071, -0.7071], id="pair"),
        # mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1: (r - 2) / 1
        pytest.param([1.0, 2.0, 3.0], ["g"] * 3, [-1.0, 0.0, 1.0], id="triple"),
        # two groups interleaved: each normalised on its own
        pytest.param(
            [0.0, 10.0, 1.0, 30.0],
            ["a", "b", "a", "b"],
            [-0.7071, -0.7071, 0.7071, 0.7071],
            id="interleaved",
        ),
        # mean 0.25, std sqrt((0.5625 + 3 x 0.0625) / 3) = 0.5: (1 - 0.25)/0.5 = 1.5, -0.5 x3
        pytest.param([1.0, 0.0, 0.0, 0.0], ["g"] * 4, [1.5, -0.5, -0.5, -0.5], id="one-correct"),
    ],
)
def test_group_advantages_normalise_within_group(
    rewards: list[float], groups: list[str], expected: list[float]
) -> None:
    result = group_advantages(rewards, groups, eps=1e-6, zero_variance="keep")
    assert result.values.tolist() == pytest.approx(expected, abs=1e-4)
    assert result.included.all()
    assert result.groups == len(set(groups))
    assert result.zero_variance_groups == 0


def test_group_advantages_eps_is_added_to_std() -> None:
    # std 0.7071 + eps 1 = 1.7071: 0.5 / 1.7071 = 0.2929
    result = group_advantages([1.0, 0.0], ["g", "g"], eps=1.0, zero_variance="keep")
    assert result.values.tolist() == pytest.approx([0.5 / (math.sqrt(0.5) + 1), -0.2929], abs=1e-4)


@pytest.mark.parametrize(
    ("mode", "included"),
    [
        pytest.param("keep", [True] * 5, id="keep-advantage-zero"),  # reference behaviour
        pytest.param("drop", [False, False, False, True, True], id="drop-from-loss"),
    ],
)
def test_group_advantages_zero_variance_group_counted_either_way(
    mode: str, included: list[bool]
) -> None:
    result = group_advantages(
        [0.1, 0.1, 0.1, 1.0, 0.0], ["z", "z", "z", "v", "v"], eps=1e-6, zero_variance=mode
    )
    assert result.zero_variance_groups == 1
    assert result.groups == 2
    assert result.values[:3].tolist() == [0.0, 0.0, 0.0]  # exact 0, not rounding noise / eps
    assert result.included.tolist() == included


@pytest.mark.parametrize(
    ("rewards", "groups", "message"),
    [
        pytest.param([1.0], ["g"], "at least 2", id="singleton-group"),
        pytest.param([1.0, math.nan], ["g", "g"], "not finite", id="nan-reward"),
        pytest.param([1.0, 2.0], ["g"], "group id per reward", id="length-mismatch"),
    ],
)
def test_group_advantages_bad_input_raises(
    rewards: list[float], groups: list[str], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        group_advantages(rewards, groups, eps=1e-6, zero_variance="keep")
