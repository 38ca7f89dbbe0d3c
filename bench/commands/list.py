"""`bench list`: the registries (activations, schemes, norm layers, probes, GPAS options, scales,
recipes, matrices)."""

from __future__ import annotations

import json

HELP = "the registries: activations, schemes, norm layers, probes, scales, recipes, matrices"


def add_parser(sub):
    p = sub.add_parser("list", help=HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def _doc(registry, name: str) -> str:
    """The one-line description; a plugin part says which module registered it."""
    part = registry.part(name)
    return part.doc if part.builtin else f"{part.doc} [plugin {part.source.rsplit('.', 1)[0]}]"


def registries() -> dict[str, dict[str, str]]:
    from models import ACTIVATIONS, GATE_ACTS, NORMS, POSITIONS, SCHEMES

    from ..run.config.probes import PROBES, record_field
    from ..run.engine.probes import registry  # noqa: F401 - registers the built-in probes

    from ..run.config.presets import recipes, scales
    from ..run.config.matrix import MATRIX_DIR, load_matrix

    return {
        "activations": {n: ("gated: " if c.gated else "") + _doc(ACTIVATIONS, n) for n, c in ACTIVATIONS.items()},
        "schemes": {n: _doc(SCHEMES, n) for n in SCHEMES},
        "norm_layers": {n: _doc(NORMS, n) for n in NORMS},
        "probes": {n: f"{_doc(PROBES, n)} (record: {record_field(n) or f'extra_probes.{n}'})" for n in PROBES},
        "gpas_gate_acts": dict(GATE_ACTS),
        "gpas_positions": dict(POSITIONS),
        "scales": {n: s.get("description", "") for n, s in scales().items()},
        "recipes": {n: r.get("description", "") for n, r in recipes().items()},
        "matrices": {p.stem: (load_matrix(str(p)).description) for p in sorted(MATRIX_DIR.glob("*.yaml"))},
    }


def main(args) -> int:
    from rich.table import Table

    from ..console import out

    regs = registries()
    if args.json:
        print(json.dumps(regs, indent=2))
        return 0
    for kind, entries in regs.items():
        t = Table(title=kind.replace("_", " "), title_justify="left", show_header=False, box=None)
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        for name, doc in entries.items():
            t.add_row(name, doc)
        out.print(t)
        out.print()
    out.print("Schemes take a '+gpas' suffix (e.g. pre+gpas); post+gpas is a harness extension.")
    return 0
