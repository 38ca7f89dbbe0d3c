"""Cold compile time of regional (each block) against whole-model compilation, each in its own process
with an empty Inductor cache: the first training step's time minus a steady compiled step's.

    python scripts/compile_time.py [--scale micro] [--layers 12] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(how: str, scale: str, layers: int, batch: int) -> dict:
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    from bench.run.engine import compiling
    from bench.run.config.presets import resolve
    from bench.run.engine.module import LMModule

    cfg = resolve({"scale": scale, "model.n_layers": layers, "train.compile": how, "data.tokenizer": "bytes"})
    module = LMModule(cfg)
    loss_fn = compiling.loss_fn(module, cfg)
    x = torch.randint(0, cfg.model.vocab_size, (batch, cfg.model.block_size))
    steps = []
    for _ in range(3):
        t = time.perf_counter()
        loss_fn(x, x).backward()
        steps.append(time.perf_counter() - t)
    return {"mode": how, "first_step_s": steps[0], "steady_step_s": steps[-1],
            "compile_s": steps[0] - steps[-1], **compiling.graph_counts()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="micro")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.scale, a.layers, a.batch)))
        return 0
    res = {}
    for how in ("regional", "whole"):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(), "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
               "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
        out = subprocess.run([sys.executable, __file__, "--one", how, "--scale", a.scale, "--layers", str(a.layers),
                              "--batch", str(a.batch)], env=env, capture_output=True, text=True, check=True)
        res[how] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(res[how]))
    ratio = res["whole"]["compile_s"] / res["regional"]["compile_s"]
    print(f"{a.scale}, {a.layers} layers: compile whole {res['whole']['compile_s']:.1f} s, regional "
          f"{res['regional']['compile_s']:.1f} s: whole / regional = {ratio:.2f}x; steady step whole "
          f"{res['whole']['steady_step_s'] * 1e3:.0f} ms, regional {res['regional']['steady_step_s'] * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
