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
    by_name = {f.name: f for f in dataclasses.fields(cls)}
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

    scalar, is_tuple, optional = _element_type(typing.get_type_hints(cls)[name])
    parse = {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("parse")
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
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata:
            continue
        scalar, is_tuple, _ = _element_type(hints[field.name])
        default = field.default
        kwargs: dict[str, Any] = {"dest": field.name, "default": default}
        shown = field_text(field, default)
        shown = " ".join(map(str, shown)) if is_tuple else shown
        suffix = "" if default is None else f" (default: {shown})"
        kwargs["help"] = field.metadata["help"] + suffix
        if field.metadata.get("choices"):
            kwargs["choices"] = field.metadata["choices"]
        if field.metadata.get("metavar"):
            kwargs["metavar"] = field.metadata["metavar"]
        if scalar is bool and not is_tuple:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            kwargs["help"] = field.metadata["help"]
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
    return cls(**values)


def given_values(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields of `cls` present in `namespace` (with only_given: those typed on the command line), spec text
    parsed."""
    return {f.name: parsed_value(f, tuple(v) if isinstance(v := getattr(namespace, f.name), list) else v, _flag(f))
            for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}


def mapping_values(cls: type, mapping: dict[str, Any], where: str) -> dict[str, Any]:
    """Field values from a config-file mapping (lists become tuples); unknown keys are an error."""
    from .errors import ConfigError

    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = set(by_name)
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in mapping.items():
        scalar, is_tuple, optional = _element_type(hints[key])
        if is_tuple and not isinstance(value, list | tuple):
            value = (value,)
        items = value if is_tuple else (value,)
        spec = by_name[key].metadata.get("parse") is not None
        for item in items:
            _check_type(f"{where}: {key}", item, str if spec else scalar, optional and not is_tuple)
        if spec or hints[key] == tuple[str, ...]:
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

