"""Presets: matrix settings -> a resolved RunConfig. Pure: it reads the two preset files
(configs/scales.yaml, configs/recipes.yaml) and nothing else, never a corpus, tokenizer or object
store; what needs data is decided and checked in bench.run.config.data_checks.

Resolution order for every cell, later wins:
dataclass defaults < scale preset < recipe preset < matrix ``fixed`` < matrix axis values
< command-line overrides. A matrix of many cells resolves each preset pair once and parses each
distinct value once, so expanding 10^4 cells takes seconds.
"""

from __future__ import annotations

import typing
from functools import cache, lru_cache

import yaml

from models import SCHEMES, TransformerConfig, check_choice

from ...errors import ConfigError, short
from .schema import SECTIONS, DataConfig, RunConfig, TrainConfig
from .fields import fields, typed
from ...resources import configs_dir
from .precision import FP8

ALIASES = {"activation": "model.activation"}
PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine") + FP8
EVAL_RESERVED = ("train", "val", "ood")  # datamodules' split names (a test holds them equal)


def norm_names() -> list[str]:
    """Every scheme with and without GPAS, in registry order."""
    return [n for s in SCHEMES for n in (s, s + "+gpas")]


def check_norm(name: str) -> str:
    check_choice("norm scheme", name, norm_names())
    return name


def split_norm(name) -> dict:
    """'pre', 'pre+gpas', ... -> {model.scheme, model.gpas}."""
    scheme, _, suffix = str(name).partition("+")
    if suffix not in ("", "gpas"):
        raise ConfigError(f"bad norm scheme {short(name)}: the only suffix is '+gpas' (e.g. 'pre+gpas')")
    return {"model.scheme": check_choice("norm scheme", scheme, norm_names()), "model.gpas": suffix == "gpas"}


def setting(key: str, value, where: str = "") -> dict:
    """One matrix/CLI setting (a dotted path or the 'norm' / 'activation' shorthand) as parsed fields."""
    key = ALIASES.get(key, key)
    if key == "norm":
        return split_norm(value)
    if key not in fields():
        check_choice(f"config field{' in ' + where if where else ''}", key, list(fields()) + ["norm", "activation"])
    parsed = typed(key, value)  # jsonargparse, from the field's annotation
    return {key: dict(parsed) if isinstance(parsed, dict) else parsed}


def apply(cfg: RunConfig, settings: dict, where: str = "") -> None:
    """Set dotted fields (and the 'norm' / 'activation' shorthands) on cfg, in order."""
    for key, value in settings.items():
        for path, parsed in setting(key, value, where).items():
            section, _, name = path.rpartition(".")
            setattr(getattr(cfg, section) if section else cfg, name, parsed)


def set_norm(cfg: RunConfig, name: str) -> None:
    apply(cfg, {"norm": name})


# ---- preset files ------------------------------------------------------------------------------

MAX_YAML_BYTES = 1 << 20  # a matrix or config file is a screenful; more is a mistake or an attack
MAX_YAML_VALUES = 20_000  # values once aliases are expanded: a matrix of 10^4 axis values is already absurd


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts a document's values with every alias expanded, on the composed node
    graph before anything is built, and refuses more than MAX_YAML_VALUES: a 'billion laughs' (aliases
    of aliases) fails at once instead of filling memory."""

    def construct_document(self, node):
        _expanded(node)
        return super().construct_document(node)


class _TooLarge(Exception):
    pass


def _expanded(root) -> int:
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge("an alias refers to itself")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        active.discard(key)
        if n > MAX_YAML_VALUES:
            raise _TooLarge(f"its aliases expand to more than {MAX_YAML_VALUES:,} values")
        sizes[key] = n
        return n

    return size(root)


def load_yaml(path) -> dict:
    """A YAML file's content, cached until the file changes; one line for a missing, non-UTF-8,
    malformed or oversized file (bounded in bytes and in values with aliases expanded)."""
    from pathlib import Path

    try:
        st = Path(path).stat()
    except OSError:
        raise ConfigError(f"file not found: {path}") from None
    if st.st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path} is {st.st_size:,} bytes, more than the {MAX_YAML_BYTES:,} a matrix or config "
                          "file may hold")
    return _load_yaml(Path(path), st.st_mtime_ns)


@cache
def _load_yaml(path, stamp: int) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_BoundedLoader) or {}  # noqa: S506 - a SafeLoader
    except _TooLarge as e:
        raise ConfigError(f"{path}: {e}; refused (write the values out, or use fewer aliases)") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML at {where}: {getattr(e, 'problem', e)}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def _presets(name: str) -> dict[str, dict]:
    path = configs_dir() / f"{name}.yaml"
    raw = load_yaml(path)
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{path}: a mapping of preset name -> mapping of settings")
    return raw


def scales() -> dict[str, dict]:
    return _presets("scales")


def recipes() -> dict[str, dict]:
    return _presets("recipes")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in SECTIONS:
            out.update(flatten(v, f"{k}."))
        elif k != "description":
            out[prefix + k] = v
    return out


# ---- resolve -----------------------------------------------------------------------------------

@cache
def _routes() -> dict[str, tuple[str, str]]:
    """Dotted path -> (section, field); '' for the top-level fields."""
    return {path: (path.partition(".")[0], path.partition(".")[2]) if "." in path else ("", path)
            for path in fields()}


@cache
def _mutable() -> tuple[tuple[str, str], ...]:
    """The fields whose values are mappings or lists: copied for every config."""
    return tuple(_routes()[p] for p, f in fields().items()
                 if typing.get_origin(f.type) in (dict, list) or f.type in (dict, list))


def _put(parts: dict, fields: dict) -> None:
    routes = _routes()
    for path, value in fields.items():
        section, name = routes[path]
        parts[section][name] = value


@lru_cache(maxsize=256)
def _preset_parts(scale: str, recipe: str, scales_id: int, recipes_id: int) -> dict[str, dict]:
    """Defaults < scale preset < recipe preset, parsed, by section ('' = top level); cached while
    the preset files are unchanged."""
    parts: dict[str, dict] = {"": {}, **{s: {} for s in SECTIONS}}
    _put(parts, {path: f.default for path, f in fields().items()})
    _put(parts, {"scale": scale, "recipe": recipe})
    for kind, name, table in (("scale", scale, scales()), ("recipe", recipe, recipes())):
        for key, value in flatten(table[name]).items():
            _put(parts, setting(key, value, f"{kind} {short(name)}"))
    return parts


def build(parts: dict[str, dict]) -> RunConfig:
    """A RunConfig from every field's value by section; each config gets its own mutable values."""
    for section, name in _mutable():
        value = parts[section][name]
        parts[section][name] = dict(value) if isinstance(value, dict) else list(value)
    try:
        model = TransformerConfig(**parts["model"])  # validates itself
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return RunConfig(**parts[""], model=model, data=DataConfig(**parts["data"]), train=TrainConfig(**parts["train"]))


def resolve(settings: dict, overrides: dict | None = None) -> RunConfig:
    """A fully resolved RunConfig from matrix settings (+ CLI overrides), presets applied first. Pure:
    a vocabulary or data check that needs a file is bench.run.config.data_checks.check's."""
    merged = {**settings, **(overrides or {})}
    scale = str(merged.get("scale", RunConfig.scale))
    recipe = str(merged.get("recipe", RunConfig.recipe))
    table_s, table_r = scales(), recipes()
    check_choice("scale", scale, table_s)
    check_choice("recipe", recipe, table_r)
    parts = {k: dict(v) for k, v in _preset_parts(scale, recipe, id(table_s), id(table_r)).items()}
    for key, value in merged.items():
        if key not in ("scale", "recipe"):
            _put(parts, setting(key, value))
    parts["model"]["vocab_size"] = pure_vocab_size(parts)
    cfg = build(parts)
    validate(cfg)
    return cfg


def pure_vocab_size(parts: dict[str, dict]) -> int:
    """The vocabulary the config alone decides: bytes 256, a BPE its size; a tokenizer file or a
    prepared dataset's tokenizer is read by bench.run.config.data_checks."""
    tokenizer = parts["data"]["tokenizer"]
    if tokenizer == "bytes":
        return 256
    if tokenizer == "bpe":
        return parts["data"]["bpe_vocab_size"]
    return parts["model"]["vocab_size"]


def validate(cfg: RunConfig) -> None:
    """The settings a run cannot start with that the config alone shows, each as one clear line."""
    t, d = cfg.train, cfg.data
    check_choice("optimizer", t.optimizer, ["adamw", "adam"])
    check_choice("precision", t.precision, PRECISIONS)
    for name, choices in (("compile", ["auto", "true", "false", "regional", "whole"]),
                          ("fused_loss", ["auto", "true", "false"])):  # YAML/CLI booleans arrive as 'True'/'False'
        setattr(t, name, check_choice(f"train.{name}", str(getattr(t, name)).lower(), choices))
    for name in ("max_steps", "batch_size", "grad_accum", "val_every", "val_tokens", "log_every", "nan_check_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be a positive integer, got {getattr(t, name)}")
    for name in ("warmup_steps", "throughput_warmup", "probe_every"):
        if getattr(t, name) < 0:
            raise ConfigError(f"train.{name} must be >= 0, got {getattr(t, name)}")
    if not t.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if not 0 <= t.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {t.min_lr_ratio}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {t.betas}")
    if not 0 < d.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must lie in (0, 1), got {d.val_fraction}")
    if d.tokenizer == "bpe" and d.bpe_vocab_size < 257:
        raise ConfigError(f"data.bpe_vocab_size must be at least 257 (the 256 bytes + merges), got {d.bpe_vocab_size}")
    for name in d.eval:
        if name in EVAL_RESERVED or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"data.eval name {short(name)} must be letters, digits, '_' or '-' and not one of "
                              f"{', '.join(EVAL_RESERVED)}")
