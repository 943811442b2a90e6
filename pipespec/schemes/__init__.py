"""The scheme table: every scheme the product knows, registered once. `get(name)` is the one dispatch.

To add a scheme: write `pipespec/schemes/NAME.py` with a `Scheme` subclass (see base.py for what the
simulator, the backend and the closed forms ask of it) and add its `SCHEME` to `_REGISTERED` below (or, from
code outside the package, `register(SCHEME)` before the configuration and CLI modules are imported: their
option choices are read from the table then). tests/test_schemes.py adds one that way.
"""

from __future__ import annotations

from . import ar, pipespec, ppsd, sd, specpipe
from .base import Scheme

_REGISTERED: tuple[Scheme, ...] = (ar.SCHEME, sd.SCHEME, pipespec.SCHEME, ppsd.SCHEME, specpipe.SCHEME)
TABLE: dict[str, Scheme] = {scheme.name: scheme for scheme in _REGISTERED}
SCHEMES: tuple[str, ...] = tuple(TABLE)


def register(scheme: Scheme) -> None:
    """Add `scheme` to the table (before `pipespec.sim.config` is imported: `--scheme` lists the table then)."""
    import sys

    global SCHEMES
    if scheme.name in TABLE or {"pipespec.sim.config", "pipespec.backend.runner"} & set(sys.modules):
        raise RuntimeError(f"register({scheme.name!r}): the name is taken, or the configuration modules have "
                           "already read the table")
    TABLE[scheme.name] = scheme
    SCHEMES = tuple(TABLE)


def get(name: str) -> Scheme:
    """The registered scheme called `name` (names are checked where options are parsed: `find`)."""
    return TABLE[name]


def find(name: str) -> Scheme | None:
    """The registered scheme called `name`, or None."""
    return TABLE.get(name)


__all__ = ["SCHEMES", "TABLE", "Scheme", "find", "get", "register"]
