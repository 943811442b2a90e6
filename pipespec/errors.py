"""The exception types the CLI turns into one-line errors: bad input (exit 2), a failed run (exit 1)."""


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


def check_positive(name: str, value: float) -> None:
    """Latencies, rates: strictly positive."""
    require(value > 0, f"{name} must be > 0, got {value!r}")


def check_nonnegative(name: str, value: float) -> None:
    require(value >= 0, f"{name} must be >= 0, got {value!r}")


def check_int(name: str, value: object, minimum: int) -> None:
    """Integer parameters (γ, k, layers): a whole number >= minimum."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, f"{name} must be an integer >= {minimum}, got {value!r}")
