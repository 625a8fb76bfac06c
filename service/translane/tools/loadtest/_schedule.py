"""When open-loop requests leave: constant, Poisson or gamma gaps at a mean rate, from a seeded generator."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["arrivals"]


def arrivals(rate_per_s: float, kind: str, burstiness: float = 1.0, seed: int = 0) -> Iterator[float]:
    """Send times in seconds from the start (the first at 0), mean gap 1/rate.

    gamma: shape `burstiness`, scale 1/(rate·burstiness), so the mean rate holds; burstiness 1
    is Poisson, below 1 burstier, above 1 more regular (vLLM's convention).
    """
    if rate_per_s <= 0:
        raise ValueError(f"rate must be > 0, got {rate_per_s}")
    if kind == "constant":
        n = 0
        while True:
            yield n / rate_per_s  # not a running sum: 50 steps of 0.2 s must end at 10.0, not 9.9999
            n += 1
    rng = random.Random(seed)
    t = 0.0
    while True:
        yield t
        if kind == "poisson":
            t += rng.expovariate(rate_per_s)
        elif kind == "gamma":
            t += rng.gammavariate(burstiness, 1.0 / (rate_per_s * burstiness))
        else:
            raise ValueError(f"unknown arrival kind {kind!r}")
