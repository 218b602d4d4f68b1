"""Hard constraints on an architecture's cost, checked before it is trained.

`Constraint("macs", "<=", 5e6)` says a trial may only be trained when its cost model
reports at most 5 M MACs. The search loop asks the cost model first (counting is
milliseconds, training is minutes) and records an architecture that breaks a constraint as
"infeasible": not trained, not counted against the trial budget, told to the strategy as a
failed trial — so evolution never breeds from it and the search drifts to feasible archs.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from archsearch.errors import ConfigError

_OPS = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Constraint:
    """`metric op limit`, with op "<=" (a budget) or ">=" (a floor)."""

    metric: str
    op: str
    limit: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"constraint operator must be <= or >=, got {self.op!r}")

    def holds(self, costs: Mapping[str, float]) -> bool:
        if self.metric not in costs:
            raise ConfigError(f"constraint on {self.metric!r}, which the cost model does not "
                              f"report (it reports {', '.join(costs)})")
        return bool(_OPS[self.op](float(costs[self.metric]), self.limit))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"


def violations(constraints: Sequence[Constraint], costs: Mapping[str, float]) -> list[str]:
    """Readable descriptions of the constraints `costs` break (empty: feasible)."""
    return [f"{c.metric} = {float(costs[c.metric]):g} breaks {c}" for c in constraints
            if not c.holds(costs)]
