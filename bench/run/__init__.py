"""Running cells: config, matrix expansion, the runner, the LightningModule, callbacks, probes."""
