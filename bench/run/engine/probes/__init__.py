"""Training probes: what the papers measure during and at the end of training, as Lightning callbacks.

Modules, each importing only those above it in this list (no circle):
- measures.py: pure functions of tensors (effective rank, kurtosis, layer cosine, loss spikes, norms,
  pooled moments);
- forward.py: the probes' no-grad eval forwards and the FFN hidden-activation hooks (dense or MoE);
- analyses.py: the end-of-training analyses (effective rank, layer cosine, layer importance);
- training.py: ``Probes``, the per-layer samples every train.probe_every steps, and the analyses at the end;
- moe.py: ``MoEProbes``, the routing statistics of MoE cells;
- outliers.py: ``OutlierProbe``, how far activations reach and what a low-precision format would lose;
- registry.py: builds every registered probe of a cell.
Each probe registers itself (bench.run.config.probes.register_probe, naming the typed record field its
result fills), as plugins' probes do: a new built-in probe is its module and that one registration
(plus its import in registry.py).
"""
