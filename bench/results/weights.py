"""A finished cell's weights: results/<matrix>/<cell id>/weights/ = model.safetensors + config.json
(models/weights.py) + the tokenizer the cell was trained with, so the folder stands on its own.

    from bench.results.weights import load_cell
    model, tokenizer, meta = load_cell("results/nano-precision/<cell id>")
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.weights import load_weights, read_config, save_weights

WEIGHTS_DIR = "weights"


def save_cell(cell_folder: Path, model, cfg, tokenizer) -> str:
    """Save a trained cell's model and tokenizer under cell_folder/weights; returns the folder
    relative to the cell folder (what the record stores)."""
    folder = Path(cell_folder) / WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tok = save_tokenizer(tokenizer, folder)
    save_weights(model, folder, extra={"run_config": cfg.to_dict(), "tokenizer": tok})
    return WEIGHTS_DIR


def save_tokenizer(tokenizer, folder: Path) -> dict:
    """The tokenizer beside the weights: nothing for bytes, tokenizer.json for a HF/BPE tokenizer,
    a copy of the file for tiktoken."""
    info = {"name": tokenizer.name, "fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id}
    if tokenizer.name == "bytes":
        info["file"] = None
    elif hasattr(tokenizer, "save"):
        tokenizer.save(folder / "tokenizer.json")
        info["file"] = "tokenizer.json"
    else:
        src = Path(getattr(tokenizer, "path", tokenizer.name))
        shutil.copyfile(src, folder / "tokenizer.tiktoken")
        info["file"] = "tokenizer.tiktoken"
    return info


def load_tokenizer_from(folder: Path):
    """The tokenizer saved by save_tokenizer, checked against its recorded fingerprint."""
    from datamodules.tokenizers import ByteTokenizer, load_tokenizer

    info = read_config(folder)["harness"]["tokenizer"]
    tok = ByteTokenizer() if info["file"] is None else load_tokenizer(str(Path(folder) / info["file"]))
    if tok.fingerprint != info["fingerprint"]:
        raise ValueError(f"tokenizer in {folder} does not match the one the cell was trained with "
                         f"(fingerprint {tok.fingerprint[:12]} != {info['fingerprint'][:12]})")
    return tok


def load_cell(cell_folder: str | Path, device: str = "cpu"):
    """(models.Transformer in eval mode, tokenizer, config.json contents) of a finished cell (or of
    its weights folder)."""
    folder = Path(cell_folder)
    if (folder / WEIGHTS_DIR).is_dir():
        folder = folder / WEIGHTS_DIR
    return load_weights(folder, device), load_tokenizer_from(folder), read_config(folder)


def has_weights(cell_folder: Path) -> bool:
    return (Path(cell_folder) / WEIGHTS_DIR / "model.safetensors").is_file()
