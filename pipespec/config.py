"""Command-line options generated from frozen config dataclasses.

Each field's default and help text exist once, in the dataclass: `option(...)` stores the help
(and CLI hints) in the field metadata, `add_arguments` turns the fields into argparse options and
`from_args` builds the validated dataclass back from the parsed namespace. A field whose values are
typed models given as spec text (`option(..., parse=parse_latency, text=spec_text)`) is parsed here, at
the edge, the same way from flags, config files and sweep grids; the dataclass holds the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any, help: str, *, flag: str | None = None, choices: Sequence[Any] | None = None,
           metavar: str | None = None, parse: Callable[[str, str], Any] | None = None,
           text: Callable[[Any], str] | None = None) -> Any:
    """A dataclass field carrying its CLI help text; tuples become multi-value options. `parse(text, where)`
    turns one value's text into the field's type (one-line ConfigError naming `where`); `text` turns it back
    (for help and results)."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "parse": parse, "text": text}
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples for multi-value defaults (config dataclasses are frozen)")
    return dataclasses.field(default=default, metadata=meta)


def _flag(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


class FlatOption(typing.NamedTuple):
    """One option a config class takes as a flat key (a flag, a config-file key, a sweep axis)."""

    field: dataclasses.Field
    hint: Any  # its type annotation
    owners: tuple[str, ...]  # the schemes whose options hold it; () for the class's own fields
    helps: tuple[str, ...]  # its help text, as each owner's options class gives it


@functools.cache
def option_fields(cls: type) -> dict[str, FlatOption]:
    """name -> FlatOption of every option `cls` takes as a flat key: its own fields, then (for a class with a
    `nested_options()` classmethod, owner -> options dataclass, e.g. each scheme's) its nested options' fields,
    one entry per name with the owners that declare it. The class builds itself from such keys with
    `from_flat(values)`. (Cached: the scheme table is fixed before the configurations are imported.)"""
    out = {f.name: FlatOption(f, hint, (), (f.metadata.get("help", ""),))
           for f, hint in _fields_with_hints(cls) if "help" in f.metadata}
    nested: dict[str, type] = cls.nested_options() if hasattr(cls, "nested_options") else {}
    for owner, options in nested.items():
        for f, hint in _fields_with_hints(options):
            known = out.get(f.name)
            if known is None:
                out[f.name] = FlatOption(f, hint, (owner,), (f.metadata["help"],))
                continue
            if known.hint != hint or not known.owners:
                raise TypeError(f"{owner}: option {f.name} is declared with another type (or is {cls.__name__}'s)")
            out[f.name] = known._replace(owners=(*known.owners, owner), helps=(*known.helps, f.metadata["help"]))
    return out


def _owned_help(owners: tuple[str, ...], helps: tuple[str, ...]) -> str:
    """An option's help, each text led by the schemes that give it ("sd, pipespec: ..."; none for a shared one)."""
    if not owners:
        return helps[0]
    by_text: dict[str, list[str]] = {}
    for owner, text in zip(owners, helps, strict=True):
        by_text.setdefault(text, []).append(owner)
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in by_text.items())


def _fields_with_hints(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def check_choices(config: Any) -> None:
    """Every field of the dataclass `config` that lists its choices holds one of them (a one-line ConfigError)."""
    from .errors import require

    for f in dataclasses.fields(config):
        allowed, value = f.metadata.get("choices"), getattr(config, f.name)
        require(not allowed or value in allowed,
                f"{_flag(f)} must be one of {', '.join(allowed or ())}, got {value!r}")


def build(cls: type[T], values: dict[str, Any]) -> T:
    """`cls` from flat option values (typed): `cls.from_flat` where it nests options, else the constructor."""
    from_flat = getattr(cls, "from_flat", None)
    return from_flat(values) if from_flat is not None else cls(**values)


def parsed_value(field: dataclasses.Field, value: Any, where: str) -> Any:
    """A spec field's value with every text item parsed (`where[i]` names a bad item of a tuple); other fields'
    values, and items already typed, as they are."""
    parse = field.metadata.get("parse")
    if parse is None:
        return value
    if isinstance(value, tuple | list):
        return tuple(parse(v, f"{where}[{i}]") if isinstance(v, str) else v for i, v in enumerate(value))
    return parse(value, where) if isinstance(value, str) else value


def parsed_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` for `cls` with every spec field's text parsed, each named by its flag (a name that is not a field
    is left for the dataclass to refuse)."""
    by_name = {name: option.field for name, option in option_fields(cls).items()}
    return {k: parsed_value(by_name[k], v, _flag(by_name[k])) if k in by_name else v for k, v in values.items()}


def field_text(field: dataclasses.Field, value: Any) -> Any:
    """A field's value as text goes into results and config files: spec fields as their spec text."""
    text = field.metadata.get("text")
    if text is None:
        return value
    return tuple(text(v) for v in value) if isinstance(value, tuple) else text(value)


def _element_type(annotation: Any) -> tuple[type, bool, bool]:
    """(scalar type, is_tuple, is_optional) of a field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    optional = False
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return args[0], True, optional
    return annotation, False, optional


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_value(cls: type, name: str, text: str, where: str) -> Any:
    """A field's value from text, typed as the CLI types it (a tuple field gets a one-element tuple)."""
    import math

    from .errors import ConfigError

    option = option_fields(cls)[name]
    scalar, is_tuple, optional = _element_type(option.hint)
    parse = option.field.metadata.get("parse")
    if parse is not None:
        return (parse(text, where),) if is_tuple else parse(text, where)
    if optional and text.strip().lower() == "none":
        return None
    try:
        value = _parse_bool(text) if scalar is bool else scalar(text)
    except (ValueError, argparse.ArgumentTypeError):
        kind = {int: "integers", float: "numbers", bool: "true or false"}.get(scalar, scalar.__name__)
        raise ConfigError(f"{where}: expected {kind}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected finite numbers, got {text!r}")
    return (value,) if is_tuple else value


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                  only_given: bool = False) -> None:
    """Add one option per field of the dataclass `cls` to `parser`.

    only_given: options left off the command line stay out of the namespace (so they can be layered
    over a preset or a config file); the help still shows the dataclass default.
    """
    group = parser.add_argument_group(title) if title else parser
    for field, hint, owners, helps in option_fields(cls).values():
        scalar, is_tuple, _ = _element_type(hint)
        default = field.default
        kwargs: dict[str, Any] = {"dest": field.name, "default": default}
        shown = field_text(field, default)
        shown = " ".join(map(str, shown)) if is_tuple else shown
        suffix = "" if default is None else f" (default: {shown})"
        kwargs["help"] = _owned_help(owners, helps) + suffix
        if field.metadata.get("choices"):
            kwargs["choices"] = field.metadata["choices"]
        if field.metadata.get("metavar"):
            kwargs["metavar"] = field.metadata["metavar"]
        if scalar is bool and not is_tuple:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            kwargs["help"] = kwargs["help"].removesuffix(suffix)
        else:
            if not field.metadata.get("parse"):  # (spec text is parsed by from_args/given_values: their errors)
                kwargs["type"] = _parse_bool if scalar is bool else scalar
            if is_tuple:
                kwargs["nargs"] = "+"
        if only_given:
            kwargs["default"] = argparse.SUPPRESS
        group.add_argument(_flag(field), **kwargs)


def from_args(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """Build (and so validate) `cls` from the parsed options it declared."""
    values = given_values(cls, namespace)
    values.update(overrides)
    return build(cls, values)


def given_values(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields of `cls` present in `namespace` (with only_given: those typed on the command line), spec text
    parsed."""
    return {f.name: parsed_value(f, tuple(v) if isinstance(v := getattr(namespace, f.name), list) else v, _flag(f))
            for f, *_ in option_fields(cls).values() if hasattr(namespace, f.name)}


def mapping_values(cls: type, mapping: dict[str, Any], where: str) -> dict[str, Any]:
    """Field values from a config-file mapping (lists become tuples); unknown keys are an error."""
    from .errors import ConfigError

    options = option_fields(cls)
    by_name = {name: option.field for name, option in options.items()}
    names = set(by_name)
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    values = {}
    for key, value in mapping.items():
        hint = options[key].hint
        scalar, is_tuple, optional = _element_type(hint)
        if is_tuple and not isinstance(value, list | tuple):
            value = (value,)
        items = value if is_tuple else (value,)
        spec = by_name[key].metadata.get("parse") is not None
        for item in items:
            _check_type(f"{where}: {key}", item, str if spec else scalar, optional and not is_tuple)
        if spec or hint == tuple[str, ...]:
            value = tuple(str(v) for v in value) if is_tuple else str(value)
        values[key] = parsed_value(by_name[key], tuple(value) if is_tuple else value, f"{where}: {key}")
    return values


def _check_type(where: str, value: Any, scalar: type, optional: bool) -> None:
    """A config-file value is of its field's type (YAML's "maybe" is not a bool, 1.5 is not an int)."""
    from .errors import ConfigError

    if value is None and optional:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
          float: number, str: isinstance(value, str) or number}.get(scalar, True)
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[scalar]
        raise ConfigError(f"{where} must be {kind}, got {value!r}")


def load_config_file(path: str) -> dict[str, Any]:
    """A TOML (.toml) or YAML (.yaml/.yml) mapping; one-line errors for missing or malformed files."""
    import tomllib
    from pathlib import Path

    import yaml

    from .errors import ConfigError

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config: {path!r} does not exist")
    from .io import read_user_text

    text = read_user_text(file, "--config")
    try:
        if file.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif file.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"--config: expected a .toml, .yaml or .yml file, got {path!r}")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--config: {path!r} is malformed: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path!r} must hold a mapping of option names to values")
    return data

