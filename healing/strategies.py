"""The seed's four fallback strategies (2.2), shipped as the default catalogue's strategy
files (``healing/shipped/strategies/``).

Two deliberate departures from the seed's text, both for safety, explained in the files:

* ``pharmaguard``: the seed's static tier answers ``{warning: ...}``, which fails the seed's
  own integrity check (``result.interactions !== undefined``), and an answer without
  interactions could be read as "no interactions". Drug-interaction checking therefore fails
  explicitly when its alternative provider fails, carrying the seed's warning as guidance.
* ``xray_analysis``: the seed gives it no integrity check, but it serves diagnostic
  requests and rule 3 requires one; it accepts confident findings or an explicit
  "queued for manual review" answer, which is what its degraded tier returns.
"""

from __future__ import annotations

import functools
import pathlib

from .fallback import FallbackStrategy
from .strategy_files import load_strategies

__all__ = ["MANUAL_REVIEW_STATUS", "SHIPPED_STRATEGIES", "default_strategies"]

MANUAL_REVIEW_STATUS = "queued_for_manual_review"
SHIPPED_STRATEGIES = pathlib.Path(__file__).with_name("shipped") / "strategies"


@functools.cache
def _shipped() -> tuple[FallbackStrategy, ...]:
    return tuple(load_strategies(SHIPPED_STRATEGIES))


def default_strategies() -> list[FallbackStrategy]:
    """The shipped strategies. Strategies are frozen, so sharing the parsed files is safe;
    the list is the caller's."""
    return list(_shipped())
