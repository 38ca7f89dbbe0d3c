"""RunConfig: the one config type of a run, nested by concern (model, data, train).

Resolution order for every cell, later wins:
dataclass defaults < scale preset (configs/scales.yaml) < recipe preset (configs/recipes.yaml)
< matrix ``fixed`` < matrix axis values < command-line overrides.

Each field's docstring (the string under it) is its ``--help`` text.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import textwrap
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from models import GPAS_EXTENSIONS, SCHEMES, TransformerConfig, check_choice, plugin_parts

from ..errors import ConfigError
from .precision import FP8

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@dataclass
class DataConfig:
    corpus: str = "bundled"
    """Training text: 'bundled' (Shakespeare, shipped), 'kjv', local .txt/.jsonl/.parquet files or
    folders (comma-separated; .gz/.xz accepted for txt and jsonl), or a dataset written by `bench data
    prepare`: its folder or a URI (s3://bucket/path, gs://...), streamed with litdata."""
    ood_corpus: str | None = "kjv"
    """Second, different-domain validation text reported as out-of-domain PPL ('kjv' = bundled King
    James Bible); None to skip."""
    tokenizer: str = "bytes"
    """'bytes' (no files), 'bpe' (trained locally, cached by corpus fingerprint), a path to a
    tokenizer.json or tiktoken file, or 'dataset' (the one a prepared corpus was tokenized with)."""
    bpe_vocab_size: int = 4096
    """Vocabulary size when tokenizer='bpe'."""
    packing: bool = True
    """Pack documents into full sequences (True) or truncate/pad each document (the GPAS recipe)."""
    val_fraction: float = 0.05
    """Fraction of documents held out for validation (fixed, deterministic split by document)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    cache_dir: str = ".cache"
    """Where tokenized litdata chunks and trained tokenizers are cached (safe to delete)."""
    eval: dict[str, str] = field(default_factory=dict)
    """More evaluation domains, NAME=CORPUS,... or a YAML mapping, each reported as NAME_loss and NAME_ppl:
    a corpus spec (all its documents) or a prepared dataset (its validation split)."""
    storage_options: dict[str, str] = field(default_factory=dict)
    """Object-storage options for s3:// (gs://...) corpora, passed to litdata (boto3 client arguments), e.g.
    endpoint_url=http://127.0.0.1:9000 for MinIO; keep credentials in the environment (AWS_ACCESS_KEY_ID...)."""
    max_cache_size: str = "50GB"
    """Local cache cap for chunks streamed from object storage (litdata evicts beyond it)."""


@dataclass
class TrainConfig:
    optimizer: str = "adamw"
    """'adamw' or 'adam' (GPAS uses Adam without weight decay)."""
    lr: float = 3e-3
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay; never applied to norm gains, biases, polynomial coefficients, GPAS gates."""
    warmup_steps: int = 30
    """Linear warmup steps."""
    max_steps: int = 300
    """Optimizer steps per cell."""
    min_lr_ratio: float = 0.1
    """Cosine schedule ends at min_lr_ratio * lr."""
    batch_size: int = 16
    """Sequences per micro-batch per device."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 = off)."""
    gpas_grad_clip: float = 0.0
    """Joint gradient-norm clip over all GPAS gates after the global clip (0 = off; paper: 0.01)."""
    precision: str = "32-true"
    """Lightning precision: 32-true (CPU), bf16-mixed (GPU), bf16-true (pure bf16, as GPAS), or fp8 /
    fp8-tensorwise / fp8-rowwise / fp8-rowwise_with_gw_hp (torchao float8 training over bf16-mixed; CUDA with
    compute capability >= 8.9 only; see docs/precision.md)."""
    compile: str = "auto"
    """torch.compile (bench/run/compiling.py): 'regional' or 'true' compiles each transformer block once
    for all identical blocks (compile time independent of depth); 'whole' compiles the whole module the
    Lightning way (torch.compile(module) before fit); 'auto' is regional on CUDA and off on CPU, where
    compiling costs more than it saves in short runs; 'false' is eager."""
    fused_loss: str = "auto"
    """LM head + cross-entropy as one chunked function with exact gradients and no full fp32 logits
    tensor (models/kernels/linear_ce.py): 'auto' (on for CUDA, off for CPU, so CPU numerics stay
    bitwise the reference's), 'true' or 'false'."""
    nan_check_every: int = 50
    """Read the device-side non-finite-loss flag back to the host every this many optimizer steps (and
    at each validation and the end). The recorded diverged_step is exact whatever this is; a smaller
    value stops a diverged cell sooner, at one device synchronization per check."""
    deterministic: bool = False
    """Lightning's deterministic mode (torch.use_deterministic_algorithms): bitwise-repeatable GPU runs,
    slower; CPU runs are bitwise repeatable without it."""
    val_every: int = 100
    """Validate every this many optimizer steps (and always at the end)."""
    val_tokens: int = 65536
    """Validation tokens per evaluation (per split)."""
    log_every: int = 10
    """Log train loss every this many steps."""
    throughput_warmup: int = 10
    """Steps excluded from the steady-state tokens/s."""
    probe_every: int = 50
    """Sample the training probes (per-layer activation variance, gradient/weight norms, GPAS gates,
    FFN outliers) every this many steps; 0 turns all probes, end-of-training analyses included, off."""
    accelerator: str = "auto"
    """Lightning accelerator: auto, cpu, gpu."""
    devices: str = "1"
    """Lightning devices (a count, 'auto', or a list like '0,1')."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, fsdp, ..."""
    num_nodes: int = 1
    """Lightning number of nodes."""


@dataclass
class RunConfig:
    scale: str = "micro"
    """Scale preset from configs/scales.yaml (sets model shape and its training defaults)."""
    recipe: str = "cpu"
    """Recipe preset from configs/recipes.yaml (optimizer, schedule, precision)."""
    seed: int = 0
    """Random seed (model init and data order)."""
    model: TransformerConfig = field(default_factory=TransformerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def norm(self) -> str:
        """The scheme as a matrix/CLI name: 'pre' or 'pre+gpas'."""
        return self.model.scheme + ("+gpas" if self.model.gpas else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """Hash of every field that can change what is measured (NON_SEMANTIC ones left out), and of
        the source of every plugin part the model uses (built-in parts add nothing: ids stay)."""
        d = self.to_dict()
        for path in NON_SEMANTIC:
            section, name = path.split(".")
            d[section].pop(name)
        if d["model"]["ffn"] == "dense":  # MoE options build nothing then: dense hashes (and cell ids) stay as before
            for name in [k for k in d["model"] if k == "ffn" or k.startswith("moe_")]:
                d["model"].pop(name)
        for path, default in LATER_FIELDS.items():  # at their default, newer fields leave old ids as they were
            section, name = path.split(".")
            if d[section].get(name) == default:
                d[section].pop(name)
        if d["train"]["compile"] == "auto":  # like accelerator 'auto', the device's choice: hashed as the old default
            d["train"]["compile"] = False
        parts = plugin_parts(self.model)
        if parts:  # changing a plugin's code makes a new cell
            d["plugins"] = {kind: p["sha256"] for kind, p in parts.items()}
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


# Where caches live and how often to log or probe: they change no trained weight or final metric.
NON_SEMANTIC = ("data.cache_dir", "data.storage_options", "data.max_cache_size", "train.log_every",
                "train.probe_every", "train.nan_check_every")
# Fields added after cells were first recorded, with the default that changes nothing a cell measures
# on CPU ('auto' picks by device, as train.accelerator does, which is not part of a cell's identity either).
LATER_FIELDS = {"model.kernels": "auto", "train.fused_loss": "auto", "data.eval": {}}
SECTIONS = {"model": TransformerConfig, "data": DataConfig, "train": TrainConfig}
TOP_FIELDS = ("scale", "recipe", "seed")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field, read from the source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def all_fields() -> dict[str, tuple[type, object, str]]:
    """Every settable dotted path -> (type, default, help)."""
    out = {}
    hints = typing.get_type_hints(RunConfig)
    defaults = RunConfig()
    for name in TOP_FIELDS:
        out[name] = (hints[name], getattr(defaults, name), field_docs(RunConfig)[name])
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        obj = getattr(defaults, section)
        for f in dataclasses.fields(cls):
            out[f"{section}.{f.name}"] = (hints[f.name], getattr(obj, f.name), docs.get(f.name, ""))
    return out


ALIASES = {"activation": "model.activation"}


def parse_value(path: str, value, typ):
    """Coerce a YAML/CLI value to the field's type; clear error otherwise."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin is dict:
        return parse_mapping(path, value)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in typing.get_args(typ):
            return None
        raise ConfigError(f"{path} cannot be None")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return parse_value(path, value, args[0])
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(parse_value(path, v, args[0]) for v in items)
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) else int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: cannot read {value!r} as {getattr(typ, '__name__', typ)}") from None
    return value


def parse_mapping(path: str, value) -> dict[str, str]:
    """A YAML mapping, JSON object, or 'k=v,k2=v2' string -> {str: str} (None/'' -> {})."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "{}")):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ConfigError(f"{path}: cannot read {value!r} as a JSON object") from None
        else:
            pairs = [p.partition("=") for p in text.split(",") if p.strip()]
            if any(not sep or not k.strip() for k, sep, _ in pairs):
                raise ConfigError(f"{path}: expected NAME=VALUE,... or a JSON object, got {value!r}")
            value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def apply(cfg: RunConfig, settings: dict, where: str = "") -> None:
    """Set dotted fields (and the 'norm' / 'activation' shorthands) on cfg, in order."""
    fields = all_fields()
    for key, value in settings.items():
        key = ALIASES.get(key, key)
        if key == "norm":
            set_norm(cfg, value)
            continue
        if key not in fields:
            check_choice(f"config field{' in ' + where if where else ''}", key, list(fields) + ["norm", "activation"])
        typ = fields[key][0]
        value = parse_value(key, value, typ)
        if "." in key:
            section, name = key.split(".", 1)
            setattr(getattr(cfg, section), name, value)
        else:
            setattr(cfg, key, value)


def set_norm(cfg: RunConfig, name: str) -> None:
    """'pre', 'pre+gpas', ... -> model.scheme and model.gpas."""
    scheme, _, suffix = str(name).partition("+")
    if suffix not in ("", "gpas"):
        raise ConfigError(f"bad norm scheme {name!r}: the only suffix is '+gpas' (e.g. 'pre+gpas')")
    cfg.model.scheme = check_choice("norm scheme", scheme, norm_names())  # accepts bare names
    cfg.model.gpas = suffix == "gpas"


def norm_names() -> list[str]:
    """Every scheme with and without GPAS, in registry order."""
    return [n for s in SCHEMES for n in (s, s + "+gpas")]


def check_norm(name: str) -> str:
    check_choice("norm scheme", name, norm_names())
    return name


def load_yaml(path: Path) -> dict:
    """A YAML file's content, cached until the file changes."""
    try:
        stamp = Path(path).stat().st_mtime_ns
    except OSError:
        raise ConfigError(f"file not found: {path}") from None
    return _load_yaml(Path(path), stamp)


@cache
def _load_yaml(path: Path, stamp: int) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML at {where}: {getattr(e, 'problem', e)}") from None


def scales() -> dict[str, dict]:
    return load_yaml(CONFIGS / "scales.yaml")


def recipes() -> dict[str, dict]:
    return load_yaml(CONFIGS / "recipes.yaml")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in SECTIONS:
            out.update(flatten(v, f"{k}."))
        elif k != "description":
            out[prefix + k] = v
    return out


def resolve(settings: dict, overrides: dict | None = None) -> RunConfig:
    """A fully resolved RunConfig from matrix settings (+ CLI overrides), presets applied first."""
    merged = {**settings, **(overrides or {})}
    cfg = RunConfig()
    scale = str(merged.get("scale", cfg.scale))
    recipe = str(merged.get("recipe", cfg.recipe))
    check_choice("scale", scale, scales())
    check_choice("recipe", recipe, recipes())
    cfg.scale, cfg.recipe = scale, recipe
    apply(cfg, flatten(scales()[scale]), f"scale {scale!r}")
    apply(cfg, flatten(recipes()[recipe]), f"recipe {recipe!r}")
    apply(cfg, {k: v for k, v in merged.items() if k not in ("scale", "recipe")})
    cfg.model.vocab_size = vocab_size(cfg.data, cfg.model.vocab_size)
    try:
        cfg.model.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    validate_run(cfg)
    return cfg


PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine") + FP8


def validate_run(cfg: RunConfig) -> None:
    """The data and train settings a run cannot start with, each as one clear line."""
    from datamodules import CorpusError, check_data

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
    if d.tokenizer not in ("bytes", "bpe", "dataset") and not Path(d.tokenizer).expanduser().is_file():
        raise ConfigError(f"tokenizer file not found: {d.tokenizer} (use 'bytes', 'bpe', 'dataset', or a path to a "
                          "tokenizer.json or tiktoken file)")
    try:
        check_data(d, cfg.model.block_size)
    except CorpusError as e:
        raise ConfigError(str(e)) from None


def on_cuda(cfg: RunConfig) -> bool:
    """Whether this run's root device is a CUDA GPU (what 'auto' switches on)."""
    import torch

    acc = cfg.train.accelerator
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def flag(value: str, cfg: RunConfig) -> bool:
    """An 'auto' | 'true' | 'false' setting as a bool: 'auto' is on for CUDA, off elsewhere."""
    return value == "true" or (value == "auto" and on_cuda(cfg))


def vocab_size(data: DataConfig, configured: int) -> int:
    """The tokenizer decides the vocabulary; a file tokenizer is read at run time."""
    if data.tokenizer == "bytes":
        return 256
    if data.tokenizer == "bpe":
        return data.bpe_vocab_size
    if data.tokenizer == "dataset":  # the prepared corpus's meta.json says (fetched once per process)
        from datamodules import CorpusError, PreparedCorpus, is_prepared

        if is_prepared(data.corpus):
            try:
                return PreparedCorpus.open(data.corpus, data.storage_options, data.cache_dir,
                                           data.max_cache_size).meta["tokenizer"]["vocab_size"]
            except CorpusError as e:
                raise ConfigError(str(e)) from None
    return configured


def gpas_note(cfg: RunConfig) -> str | None:
    if cfg.model.gpas and cfg.model.scheme in GPAS_EXTENSIONS:
        return f"{cfg.norm} is an extension of the harness, not a configuration from the GPAS paper"
    return None
