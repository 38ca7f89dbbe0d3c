"""The math of the harness: plain torch modules, no Lightning, files or CLI.

    from models import TransformerConfig, Transformer, build_ffn
    ffn = build_ffn("polynorm", d_model=512, hidden=2052)      # .up, .down (and .gate if gated)
    model = Transformer(TransformerConfig(activation="powlu", scheme="pre", gpas=True))

Where each formula lives: activations.py (FFN activations), gpas.py (GPAS), schemes.py
(residual/norm schemes, DeepNorm and LNS init), norms.py, attention.py (RoPE, SDPA),
sizing.py (parameter matching and counts), registry.py (the registries and register_* for
plugins: docs/plugins.md).
"""

from .activations import ACTIVATIONS
from .config import TransformerConfig
from .ffn import FFN, build_activation, build_ffn
from .gpas import GATE_ACTS, GPAS, POSITIONS
from .names import UnknownName, check_choice
from .norms import NORMS
from .registry import (RegistrationError, plugin_parts, register_activation, register_norm,
                       register_scheme)
from .schemes import GPAS_EXTENSIONS, SCHEME_DOCS, SCHEMES, Block, PreBlock
from .sizing import ParamCounts, count_params, intermediate_size, matched_intermediate_size
from .transformer import Transformer

__all__ = [
    "ACTIVATIONS", "Block", "FFN", "PreBlock", "RegistrationError", "plugin_parts", "register_activation",
    "register_norm", "register_scheme", "GATE_ACTS", "GPAS", "GPAS_EXTENSIONS", "NORMS", "POSITIONS", "SCHEMES",
    "SCHEME_DOCS", "ParamCounts", "Transformer", "TransformerConfig", "UnknownName", "build_activation",
    "build_ffn", "check_choice", "count_params", "intermediate_size", "matched_intermediate_size",
]
