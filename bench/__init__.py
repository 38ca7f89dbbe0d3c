"""The harness: `run/` trains cells, `results/` reads what they wrote, `cli.py` is the command line."""


def register_probe(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register a training probe (see bench.run.config.probes.register_probe); imports Lightning when called.
    The harness's own probes are registered first, so a plugin cannot take their names unnoticed."""
    from .run.config.probes import register_probe as register
    from .run.engine.probes import registry  # noqa: F401 - registers the built-in probes

    return register(name, cls, doc=doc, override=override)
