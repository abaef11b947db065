"""A/B assignment: which program version answers a request."""

from __future__ import annotations

import hashlib
import random

from qa_core.contracts import CHALLENGER_ALIAS, CHAMPION_ALIAS, Variant


# --8<-- [start:route-variant]
def bucket(salt: str, session_id: str) -> float:
    """A stable number in [0, 1) for a session: the same session lands in the same bucket every time."""
    digest = hashlib.blake2b(f"{salt}:{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_variant(
    session_id: str | None,
    salt: str,
    challenger_share: float,
    has_challenger: bool,
    forced: Variant | None = None,
    rng: random.Random | None = None,
) -> Variant:
    """Forced variant first (tests, the compare page); then a sticky hash of the session; else a coin flip."""
    if forced is not None:
        return forced
    if not has_challenger or challenger_share <= 0.0:
        return CHAMPION_ALIAS
    draw = bucket(salt, session_id) if session_id else (rng or random).random()
    return CHALLENGER_ALIAS if draw < challenger_share else CHAMPION_ALIAS


# --8<-- [end:route-variant]
