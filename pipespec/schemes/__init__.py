"""The scheme table: every scheme the product knows, registered once. `get(name)` is the one dispatch.

To add a scheme: write `pipespec/schemes/NAME.py` with a `Scheme` subclass (see base.py for what the
simulator, the backend and the closed forms ask of it) and add its `SCHEME` to `_REGISTERED` below.
"""

from __future__ import annotations

from . import ar, pipespec, ppsd, sd, specpipe
from .base import Scheme

_REGISTERED: tuple[Scheme, ...] = (ar.SCHEME, sd.SCHEME, pipespec.SCHEME, ppsd.SCHEME, specpipe.SCHEME)
TABLE: dict[str, Scheme] = {scheme.name: scheme for scheme in _REGISTERED}
SCHEMES: tuple[str, ...] = tuple(TABLE)


def get(name: str) -> Scheme:
    """The registered scheme called `name` (names are checked where options are parsed: `find`)."""
    return TABLE[name]


def find(name: str) -> Scheme | None:
    """The registered scheme called `name`, or None."""
    return TABLE.get(name)


__all__ = ["SCHEMES", "TABLE", "Scheme", "find", "get"]
