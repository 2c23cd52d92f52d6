"""The platform's stable hash: a uniform draw in [0, 1) per key that any run, process or auditor recomputes.

Randomized decisions (a campaign's holdout arm) hash instead of drawing from a random
stream, so re-running a day changes nothing and an assignment is checked from its
inputs alone. The built-in world (``simulator``) imports nothing of the platform and
keeps its own copy of the same splitmix64 for its hidden traits.
"""

from __future__ import annotations

import hashlib

import numpy as np


def text_seed(text: str, seed: int) -> int:
    """A 63-bit seed from any string and a seed (SHA-256 of ``"<seed>:<text>"``)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big") >> 1


def hashed_uniform(seed: int, keys: np.ndarray, salt: int = 0) -> np.ndarray:
    """A uniform in [0, 1) per key from a splitmix64 hash of (seed, salt, key): stable, vectorized, auditable."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.uint64) + np.uint64((seed * 0x9E3779B1 + salt * 0x85EBCA77) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
