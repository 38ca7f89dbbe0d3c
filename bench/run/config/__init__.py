"""What a run is: the config schema, its fields and presets, identity, matrices, ladders and sweeps."""
