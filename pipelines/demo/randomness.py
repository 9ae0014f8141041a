"""Deterministic, per-purpose random streams.

Every part of the generator draws from its own stream, derived from ``(seed, purpose, day)``
with a cryptographic digest of the purpose name. Adding a new consumer of randomness, or
drawing more numbers in one place, therefore never shifts the numbers another place sees, and
nothing depends on Python's salted ``hash`` or on set ordering.
"""

from __future__ import annotations

import hashlib

import numpy as np

# SeedSequence entropy must be non-negative; days run from -365 (history) upwards.
_DAY_OFFSET = 1_000_000


def stream(seed: int, purpose: str, day: int = 0) -> np.random.Generator:
    """A PCG64 generator for one purpose on one simulated day."""
    key = int.from_bytes(hashlib.sha256(purpose.encode("utf-8")).digest()[:8], "little")
    sequence = np.random.SeedSequence([seed, key, day + _DAY_OFFSET])
    return np.random.Generator(np.random.PCG64(sequence))
