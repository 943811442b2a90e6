"""A configuration of one scheme: the options every scheme shares as its own fields, the scheme's own options as
one dataclass in its `options` field (the scheme's `Scheme.options` for the simulator, `Scheme.run_options` for
the backend).

Flags, config files and sweep axes name both kinds as flat keys (`--gamma`, `num_layers = 80`): `from_flat` sorts
them into the two, and `flat`/`to_dict` give them back flat, as results record them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar, Self

from ..config import field_text, option_fields
from ..errors import ConfigError, require
from . import SCHEMES, TABLE, Scheme, find


class SchemeConfig:
    """Mixin of a frozen dataclass with a `scheme` field and an `options` field (default None: the scheme's
    defaults), which calls `_check_options()` once its scheme is known to be registered."""

    scheme_options: ClassVar[str]  # the `Scheme` attribute naming the scheme's options dataclass
    scheme: str
    options: Any

    @classmethod
    def nested_options(cls) -> dict[str, type]:
        """scheme -> its options dataclass (their fields are flat keys beside the configuration's own)."""
        return {name: getattr(scheme, cls.scheme_options) for name, scheme in TABLE.items()}

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> Self:
        """A configuration from flat, typed option values: the scheme's own go into its options dataclass.
        A value for another scheme's option is an error (`--gamma applies to sd, not pipespec`) unless it is that
        option's default, as a recorded configuration or an earlier version's result holds it."""
        name = values.get("scheme", cls.scheme)  # (the field's default)
        own, known = {f.name for f in fields(cls._options_of(name))}, option_fields(cls)
        shared, options, foreign = {}, {}, []
        for key, value in values.items():
            flat = known.get(key)
            if flat is None:
                raise TypeError(f"{cls.__name__} has no option {key!r}")
            if not flat.owners:
                shared[key] = value
            elif key in own:
                options[key] = value
            elif value != flat.field.default:
                foreign.append(f"--{key.replace('_', '-')} applies to {' and '.join(flat.owners)}, not {name}")
        require(not foreign, "; ".join(foreign))
        return cls(**shared, options=cls._options_of(name)(**options))  # type: ignore[call-arg]

    def with_values(self, **values: Any) -> Self:
        """This configuration with flat, typed `values` replaced. Given another scheme, it keeps the options the
        two schemes share and leaves the old scheme's own behind."""
        kept = self.flat()
        name = values.get("scheme", self.scheme)
        if name != self.scheme:
            own = {f.name for f in fields(self._options_of(name))}
            kept = {k: v for k, v in kept.items() if k in own or not option_fields(type(self))[k].owners}
        return type(self).from_flat({**kept, **values})

    def flat(self) -> dict[str, Any]:
        """Every option, shared and the scheme's own, by its flat key (typed)."""
        shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}  # type: ignore[arg-type]
        return shared | {f.name: getattr(self.options, f.name) for f in fields(self.options)}

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as results record it: flat keys, spec fields as the text they were given
        as (it builds the same configuration back through `mapping_values` and `from_flat`)."""
        known = option_fields(type(self))
        return {key: field_text(known[key].field, value) for key, value in self.flat().items()}

    @property
    def scheme_info(self) -> Scheme:
        """The scheme's entry in the scheme table."""
        return TABLE[self.scheme]

    def _check_options(self) -> None:
        """Fill in the scheme's default options, or check that the given ones are its dataclass."""
        expected = self._options_of(self.scheme)
        if self.options is None:
            object.__setattr__(self, "options", expected())
        if type(self.options) is not expected:
            raise TypeError(f"{type(self).__name__}.options: scheme {self.scheme} takes {expected.__name__}, got "
                            f"{type(self.options).__name__}")

    @classmethod
    def _options_of(cls, name: Any) -> type:
        """The options dataclass of the registered scheme `name` (a one-line error naming the choices)."""
        scheme = find(name) if isinstance(name, str) else None
        if scheme is None:
            raise ConfigError(f"--scheme must be one of {', '.join(SCHEMES)}, got {name!r}")
        return getattr(scheme, cls.scheme_options)
