"""How many times a state is pushed, and how long to wait between pushes."""

from __future__ import annotations

import random
from dataclasses import dataclass

from webcom_status.errors import ConfigError

# The provider's own schedule: immediately, then 1 min, 5 min, 30 min, 2 h.
PROVIDER_SCHEDULE = (0.0, 60.0, 300.0, 1800.0, 7200.0)
DEFAULT_ATTEMPTS = 5
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_delay(text: str) -> float:
    """A delay in seconds: ``0.2``, ``30s``, ``5m``, ``2h``, ``1d`` or ``250ms``."""
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if raw.endswith(u)), "")
    number = raw[: len(raw) - len(unit)] if unit else raw
    try:
        value = float(number) * _UNITS.get(unit, 1.0)
    except ValueError:
        raise ConfigError(f"not a delay: {text!r}; use seconds (0.5) or 30s, 5m, 2h") from None
    if not 0 <= value <= 86400 * 30 or value != value:  # noqa: PLR0124 - NaN check
        raise ConfigError(f"delay {text!r} must be between 0 and 30 days")
    return value


def parse_schedule(text: str) -> tuple[float, ...]:
    """A retry schedule such as ``0,1m,5m,30m,2h`` or ``0,0.2,0.5,1`` (seconds)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("a retry schedule needs at least one delay, e.g. 0,1m,5m")
    return tuple(parse_delay(p) for p in parts)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` pushes per state, waiting ``schedule[n]`` after the n-th failed one.

    ``schedule[0]`` is the provider's "immediately" for the first push (the
    dispatcher pushes a new state as soon as its batch is ready);
    ``schedule[1]`` is the wait after the first failure, and so on. A schedule
    shorter than ``attempts`` repeats its last delay. Each wait is spread by
    ``±jitter`` (a fraction) so that the states of one failed document do not
    all come back at the same instant as the other failed documents'.
    """

    attempts: int = DEFAULT_ATTEMPTS
    schedule: tuple[float, ...] = PROVIDER_SCHEDULE
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("attempts must be at least 1")
        if not self.schedule:
            raise ConfigError("a retry schedule needs at least one delay")
        if not 0 <= self.jitter < 1:
            raise ConfigError("jitter must be a fraction between 0 and 1")

    def delay_after(self, attempts: int, rng: random.Random | None = None) -> float | None:
        """The wait after ``attempts`` failed pushes, or ``None`` when none is left."""
        if attempts >= self.attempts:
            return None
        base = self.schedule[min(attempts, len(self.schedule) - 1)]
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))
