"""The exception types the CLI turns into one-line errors: bad input (exit 2), a failed run (exit 1)."""

import math


class ConfigError(ValueError):
    """Bad user input: the message names the parameter and what is allowed."""


class RunFailed(RuntimeError):
    """A run that could not finish (e.g. a pipeline stage raised or died): the message says which part."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def check_probability(name: str, value: float) -> None:
    """α-like parameters: a number in [0, 1]."""
    require(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value!r}")


MAX_WINDOW = 4096  # drafts one verification may take: beyond any model's useful window, far below a hang


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value: float) -> None:
    """Latencies, rates: finite and strictly positive."""
    require(_finite(value) and value > 0, f"{name} must be > 0 and finite, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    require(_finite(value) and value >= 0, f"{name} must be >= 0 and finite, got {value!r}")


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Integer parameters (γ, k, layers): a whole number >= minimum (and <= maximum, where a larger one would
    exhaust time or memory rather than mean anything)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if maximum is None:
        require(ok, f"{name} must be an integer >= {minimum}, got {value!r}")
    else:
        require(ok and value <= maximum, f"{name} must be an integer in {minimum}..{maximum}, got {value!r}")
