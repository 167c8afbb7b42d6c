"""Learning-rate schedules: a multiplier on an optimizer's base rate, by update count.

A schedule is a pure function of how many updates the optimizer has already made, so a run
resumed from a checkpoint (which restores that count) follows the same rates as one that
never stopped.

>>> from xpnet.optimizers import Adam
>>> from xpnet.schedules import StepDecay
>>> opt = Adam(lr=1e-3, schedule=StepDecay(at_step=1000, factor=0.1))
>>> [StepDecay(2, 0.1).factor(t) for t in range(4)]
[1.0, 1.0, 0.1, 0.1]
"""

from __future__ import annotations

import math
from typing import Any

from .validation import check_non_negative_int, check_number

__all__ = ["SCHEDULES", "CosineDecay", "LRSchedule", "StepDecay", "schedule_from_config"]


class LRSchedule:
    """Base class: :meth:`factor` maps the number of updates already made to a multiplier."""

    name = "constant"

    def factor(self, step: int) -> float:
        return 1.0

    def config(self) -> dict[str, Any]:
        """The constructor arguments, plus ``"name"`` (JSON-serialisable)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _non_negative_int(name: str, value: Any) -> int:
    return check_non_negative_int(f"schedule {name}", value)


def _unit_factor(value: Any) -> float:
    return check_number("schedule factor", value, low=0.0, high=1.0)


class StepDecay(LRSchedule):
    """The full rate for the first ``at_step`` updates, then ``factor`` times it.

    A final low-rate phase settles weights that a constant Adam rate keeps shaking; on MNIST
    it is what makes ``xpnet train``'s defaults reliably pass 98% (see :mod:`xpnet.recipe`).
    """

    name = "step"

    def __init__(self, at_step: int, factor: float = 0.1) -> None:
        self.at_step = _non_negative_int("at_step", at_step)
        self.factor_after = _unit_factor(factor)

    def factor(self, step: int) -> float:
        return self.factor_after if step >= self.at_step else 1.0

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "at_step": self.at_step, "factor": self.factor_after}


class CosineDecay(LRSchedule):
    """Half a cosine from the full rate down to ``final_factor`` times it over ``total_steps``
    updates, then constant."""

    name = "cosine"

    def __init__(self, total_steps: int, final_factor: float = 0.0) -> None:
        self.total_steps = _non_negative_int("total_steps", total_steps)
        self.final_factor = _unit_factor(final_factor)

    def factor(self, step: int) -> float:
        if self.total_steps == 0 or step >= self.total_steps:
            return self.final_factor
        cos = 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))
        return self.final_factor + (1.0 - self.final_factor) * cos

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_steps": self.total_steps,
            "final_factor": self.final_factor,
        }


SCHEDULES: dict[str, type[LRSchedule]] = {
    "constant": LRSchedule,
    "step": StepDecay,
    "cosine": CosineDecay,
}


def schedule_from_config(config: dict[str, Any]) -> LRSchedule:
    """Rebuild a schedule from :meth:`LRSchedule.config`."""
    if not isinstance(config, dict) or config.get("name") not in SCHEDULES:
        raise ValueError(
            f"xpnet: unknown schedule {config!r}; valid names are: {', '.join(SCHEDULES)}"
        )
    args = {k: v for k, v in config.items() if k != "name"}
    return SCHEDULES[config["name"]](**args)
