"""How long to wait before trying again: one exponential back-off for every retry loop (the
outbox drainer, the IOC feed's webhooks, notifications)."""

from __future__ import annotations

import random


def backoff(
    attempts: int, *, base: float, cap: float, jitter: bool = False, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `attempts`-th failure: base, 2 x base, 4 x base ... at most `cap`.

    With `jitter`, "equal jitter": half the step is fixed and half random, so the retries of many
    failures spread out (no thundering herd on a receiver that comes back) while each still waits
    at least half its step. The exponent is bounded first: 2.0 ** 1024 overflows, and an attempt
    count has no upper bound."""
    step = min(base * 2.0 ** min(max(attempts - 1, 0), 64), cap)
    if not jitter:
        return step
    return step / 2 + (rng or random).uniform(0, step / 2)
