"""The speculation window per verifying level, shared by the simulator and the real engines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Window:
    """γ: fixed, or Hugging Face assisted generation's heuristic (+2 after a full acceptance, -1 otherwise,
    never below 1)."""

    gamma: int
    dynamic: bool = False

    def update(self, fully_accepted: bool) -> None:
        if self.dynamic:
            self.gamma = self.gamma + 2 if fully_accepted else max(1, self.gamma - 1)
