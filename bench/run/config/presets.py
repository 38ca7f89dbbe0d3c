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


from models import SCHEMES, TransformerConfig, check_choice

from ...errors import ConfigError, short
from .schema import SECTIONS, DataConfig, RunConfig, TrainConfig
from .fields import fields, typed
from ...resources import configs_dir
from .precision import FP8
from .yaml_files import load_yaml

ALIASES = {"activation": "model.activation"}
PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine") + FP8
EVAL_RESERVED = ("train", "val", "ood")
MAX_SEED = 2**32 - 1  # datamodules' split names (a test holds them equal)


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


# ---- preset files ------------------------------------------------------------------------------

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
    parts["model"]["vocab_size"] = config_vocab_size(parts["data"]["tokenizer"], parts["data"]["bpe_vocab_size"],
                                                     parts["model"]["vocab_size"])
    cfg = build(parts)
    validate(cfg)
    return cfg


def config_vocab_size(tokenizer: str, bpe_vocab_size: int, configured: int) -> int:
    """The vocabulary the config alone decides: bytes 256, a BPE its size; else ``configured`` until a
    tokenizer file or a prepared dataset's tokenizer is read (bench.run.config.data_checks)."""
    if tokenizer == "bytes":
        return 256
    if tokenizer == "bpe":
        return bpe_vocab_size
    return configured


def validate(cfg: RunConfig) -> None:
    """The settings a run cannot start with that the config alone shows, each as one clear line."""
    t, d = cfg.train, cfg.data
    if not 0 <= cfg.seed <= MAX_SEED:  # what the random generators take (numpy, Lightning's seed_everything)
        raise ConfigError(f"seed must lie in [0, {MAX_SEED}], got {cfg.seed}")
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
