"""Training probes: what the papers measure during and at the end of training, as Lightning callbacks.

Modules, each importing only those above it in this list (no circle):
- measures.py: pure functions of tensors (effective rank, kurtosis, layer cosine, loss spikes, norms,
  pooled moments);
- forward.py: the probes' no-grad eval forwards and the FFN hidden-activation hooks (dense or MoE);
- analyses.py: the end-of-training analyses (effective rank, layer cosine, layer importance);
- training.py: ``Probes``, the per-layer samples every train.probe_every steps, and the analyses at the end;
- moe.py: ``MoEProbes``, the routing statistics of MoE cells;
- outliers.py: ``OutlierProbe``, how far activations reach and what a low-precision format would lose;
- registry.py: probes that plugins register (``register_probe``).
"""

from .analyses import ffn_ranks, final_analyses, layer_importance
from .forward import base_model, evaluating, first_loader, hidden_hooks, probe_forward, skipped, token_loss
from .measures import (PooledMoments, effective_rank, find_spikes, is_sharded, kurtosis, l2, layer_cosine,
                       whole_norms)
from .moe import MoEProbes, routing_rows
from .outliers import STATS, SITES, OutlierProbe, outlier_stats, site_stats
from .registry import PROBES, register_probe, registered_probes
from .training import Probes

__all__ = [
    "PROBES", "SITES", "STATS", "MoEProbes", "OutlierProbe", "PooledMoments", "Probes", "base_model",
    "effective_rank", "evaluating", "ffn_ranks", "final_analyses", "find_spikes", "first_loader", "hidden_hooks",
    "is_sharded", "kurtosis", "l2", "layer_cosine", "layer_importance", "outlier_stats", "probe_forward",
    "register_probe", "registered_probes", "routing_rows", "site_stats", "skipped", "token_loss", "whole_norms",
]
