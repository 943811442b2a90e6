"""The acceptance process between two adjacent stages of a simulated pipeline: its draws and statistics."""

from __future__ import annotations

import numpy as np

from ..acceptance import Acceptance, Draws
from ..metrics import PairStats


class Pair:
    """The acceptance process between stage i-1 (draft) and stage i (verifier). Output position p is
    position offset + p of the acceptance model (a trace replayed from one prompt's sequence)."""

    __slots__ = ("_accepted", "_record", "acceptance", "draws", "name", "offset", "stats")

    def __init__(self, name: str, acceptance: Acceptance, rng: np.random.Generator, offset: int = 0) -> None:
        self.name, self.acceptance, self.offset = name, acceptance, offset
        self.draws = Draws(rng)
        self.stats = PairStats(name)
        # the hot calls' bound methods, held once and read into a local before each call: `self._accepted(...)`
        # would be a generic method lookup (CPython 3.11 specialises calls of the class's own methods, not of a
        # callable held in an attribute)
        self._accepted, self._record = acceptance.accepted, self.stats.record

    def verify(self, position: int, num_drafts: int) -> int:
        """Accepted prefix length of `num_drafts` drafts for positions position…; records the statistics."""
        count, record = self._accepted, self._record  # (see __init__)
        accepted = count(self.offset + position, num_drafts, self.draws)
        record(num_drafts, accepted)
        return accepted

    def proposes(self, position: int) -> bool:
        """Does the draft propose anything at `position`, from the verified prefix?"""
        return self.acceptance.proposes(self.offset + position)

    def agrees(self, position: int) -> bool:
        """Does the draft's own token at `position` match the verifier's (a window of one, unrecorded)?"""
        count = self._accepted  # (see __init__)
        return count(self.offset + position, 1, self.draws) == 1
