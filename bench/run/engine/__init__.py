"""How a cell trains: the lifecycle, the Lightning module, callbacks, probes, checkpoints, claims."""
