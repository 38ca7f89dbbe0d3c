"""RunConfig: the schema of a run, nested by concern (model, data, train).

The config is built in parts: this module is the schema (the dataclasses and their field
reflection); bench.run.config.identity hashes a resolved config into its cell id; bench.run.config.presets
resolves settings and presets into a RunConfig (pure, no data touched); bench.run.config.data_checks decides
what needs a file (a tokenizer's vocabulary) and checks the data, once per process.

Each field's docstring (the string under it) is its ``--help`` text, read by jsonargparse (bench.run.config.fields).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from models import GPAS_EXTENSIONS, TransformerConfig

from ...errors import ConfigError


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
    """torch.compile (bench/run/engine/compiling.py): 'regional' or 'true' compiles each transformer block once
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
    init_val: bool = True
    """Measure the in-domain validation loss once before training (metrics.init_val_loss, the loss at init
    of the LR sensitivity and the "not learned" rule): half a validation's cost. Changes no trained weight."""
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
        """The cell's identity hash (bench.run.config.identity): every field that can change what is measured."""
        from .identity import config_hash

        return config_hash(self)


SECTIONS = {"model": TransformerConfig, "data": DataConfig, "train": TrainConfig}


def gpas_note(cfg: RunConfig) -> str | None:
    if cfg.model.gpas and cfg.model.scheme in GPAS_EXTENSIONS:
        return f"{cfg.norm} is an extension of the harness, not a configuration from the GPAS paper"
    return None


def _dataclass_from_dict(cls: type, d: dict):
    """A dataclass from its ``asdict`` form (a JSON round trip): nested sections rebuilt, lists back
    to the tuples their fields hold."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in d.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            value = _dataclass_from_dict(typ, value)
        elif isinstance(value, list) and tuple in (typing.get_origin(typ),
                                                   *map(typing.get_origin, typing.get_args(typ))):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def run_config_from_dict(d: dict) -> RunConfig:
    """The inverse of ``RunConfig.to_dict`` (no presets, no I/O): the same config, the same hash."""
    return _dataclass_from_dict(RunConfig, d)


RunConfig.from_dict = staticmethod(run_config_from_dict)
