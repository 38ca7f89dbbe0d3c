"""Write a `bench ladder` result's figure (loss against parameters per group, fitted laws and their bands) as a
PNG file, the same figure the report's scaling-law section embeds.

    python scripts/ladder_figure.py results/ladder-example results/ladder-example/ladder.png --predict 1e6
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="a ladder's results folder (its cells' record.json files)")
    p.add_argument("out", type=Path, help="the PNG file to write")
    p.add_argument("--predict", type=float, default=None, metavar="N", help="draw the laws out to N parameters")
    args = p.parse_args(argv)
    from bench.atomic import atomic_write
    from bench.results.figures.compare import fig_laws
    from bench.results.records import load_records
    from bench.results.stats.laws import fit_laws, ladder_records, law_points

    records = ladder_records(load_records(args.folder)[0])
    b64 = fig_laws(fit_laws(records, args.predict), law_points(records)) if records else None
    if not b64:
        print(f"error: no fitted ladder in {args.folder} (records tagged with a rung size N, 2+ sizes per group)",
              file=sys.stderr)
        return 1
    atomic_write(args.out, base64.b64decode(b64))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
