"""The harness: `run/` trains cells, `results/` reads what they wrote, `cli.py` is the command line."""


def register_probe(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register a training probe (see bench.run.config.probes.register_probe); imports Lightning when called."""
    from .run.config.probes import register_probe as register

    return register(name, cls, doc=doc, override=override)
