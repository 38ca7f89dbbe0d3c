"""The settable fields of a run config, as jsonargparse reads them from the dataclasses (RunConfig and its
model, data and train sections): each dotted path's type (the annotation), default and help (the docstring
under the field); and ``typed``, the one way a value from the command line, a --config file, a preset or a
matrix becomes its field's type. jsonargparse does the typing; ``respell`` only maps the spellings the
harness has always taken (none, NAME=VALUE,..., a,b, 1e3 for an int, 0/1) to ones jsonargparse reads.

jsonargparse is imported on first use: `bench --help` stays fast.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from functools import cache, lru_cache

from ...errors import ConfigError, short, short_text
from .yaml_files import load_yaml

CONFIG_HELP = ("a YAML or JSON file of overrides by section (e.g. {train: {lr: 0.002}, model: {activation: gelu}}); "
               "applied where it stands among the --section.field options: later wins")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Field:
    type: object
    default: object
    help: str


@cache
def parser():
    """A jsonargparse parser of every RunConfig field (--scale, --train.lr, ...) and --config FILE."""
    import jsonargparse

    from .schema import RunConfig

    jsonargparse.set_parsing_settings(docstring_parse_attribute_docstrings=True)
    p = jsonargparse.ArgumentParser(prog="bench", exit_on_error=False, default_env=False)
    p.add_argument("--config", action=jsonargparse.ActionConfigFile, help=CONFIG_HELP)
    p.add_class_arguments(RunConfig)
    return p


@cache
def fields() -> dict[str, Field]:
    """Every settable dotted path -> its Field, in the dataclasses' order (top level, model, data, train)."""
    return {a.dest: Field(a._typehint, a.default, " ".join((a.help or "").split()))
            for a in parser()._actions if hasattr(a, "_typehint")}


def all_fields() -> dict[str, tuple[type, object, str]]:
    """Every settable dotted path -> (type, default, help)."""
    return {path: (f.type, f.default, f.help) for path, f in fields().items()}


def _base(typ):
    """The type under an Optional: int for int | None."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(typ) if a is not type(None))
    return typ


def type_name(typ) -> str:
    return getattr(_base(typ), "__name__", str(typ))  # 'int', 'float', 'bool', 'str', 'tuple', 'dict'


def respell(typ, value):
    """A value in a spelling the harness takes as the form jsonargparse reads: a YAML scalar as the text a user
    would type (2 for a str field is '2'), none/null for None, NAME=VALUE,... for a mapping, a,b for a tuple,
    300.0 or 1e3 for an int, 0/1 for a bool."""
    base, origin = _base(typ), typing.get_origin(_base(typ))
    if isinstance(value, (int, float)) and not (base is bool and isinstance(value, bool)):
        value = str(value)
    if origin is dict:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "{}")):
            return {}
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("none", "null") and base is not typ:
        return None
    if base is bool and text in ("0", "1"):
        return text == "1"
    if base is int and NUMBER.fullmatch(text) and float(text).is_integer():
        return str(int(float(text)))
    if origin is tuple and not text.startswith(("[", "(")):
        return [t.strip() for t in text.split(",")]
    if origin is dict and not text.startswith("{"):
        pairs = [p.partition("=") for p in text.split(",") if p.strip()]
        if any(not sep or not k.strip() for k, sep, _ in pairs):
            raise ConfigError(f"expected NAME=VALUE,... or a JSON object, got {short(value)}")
        return {k.strip(): v.strip() for k, _, v in pairs}
    return value


def _parse(path: str, value):
    from jsonargparse import Namespace

    ns = Namespace()
    ns[path] = value
    return parser().parse_object(ns, defaults=False)[path]


@lru_cache(maxsize=65536)
def _parse_cached(path: str, kind: type, value):
    return _parse(path, value)


def typed(path: str, value):
    """``value`` as the field at ``path`` holds it; one line naming the field and its type otherwise."""
    from argparse import ArgumentError

    typ = fields()[path].type
    try:
        spelt = respell(typ, value)
        try:
            return _parse_cached(path, type(spelt), spelt)  # hashable values: typed once per process
        except TypeError:  # a list or mapping
            return _parse(path, spelt)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except ArgumentError:
        raise ConfigError(f"{path}: cannot read {short(value)} as {type_name(typ)}") from None


def config_file(path: str) -> dict:
    """The overrides in a --config file, by dotted path; one line for a bad file or value."""
    from argparse import ArgumentError

    load_yaml(path)  # bounded: a 'billion laughs' or an oversized file is one line before jsonargparse reads it
    try:
        ns = parser().parse_args(["--config", path], defaults=False)
    except ArgumentError as e:
        raise ConfigError(f"--config {path}: {short_text(' '.join(str(e).split()))}") from None
    return {k: ns[k] for k in fields() if k in ns}
