"""The errors every bench command turns into one line: ConfigError (exit 2), Interrupted (128 + signal); and
``need``, the one line for an optional package a command needs and this environment lacks."""

import importlib.util
import sys

# Optional packages: top-level module -> (distribution, the pyproject.toml extra that installs it). Each serves
# one command or setting and is imported only there, so a missing one fails that command, never a cell's
# training (tests/e2e/test_optional_packages.py checks both, and that each extra holds its distribution).
OPTIONAL = {
    "submitit": ("submitit", "extras"),  # --slurm (SLURM job arrays)
    "jinja2": ("jinja2", "extras"),  # bench report's page
    "matplotlib": ("matplotlib", "extras"),  # bench report's figures
    "lm_eval": ("lm-eval", "eval"),  # bench eval
    "torchao": ("torchao", "gpu"),  # train.precision fp8*
}


class ConfigError(ValueError):
    """A bad setting or input: the message is one line a user can act on."""


class Interrupted(Exception):
    """SIGTERM/SIGINT stopped a run after its current cell was saved and recorded as `interrupted`."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as shells report it: 130 for SIGINT, 143 for SIGTERM


def short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without building the whole repr of a huge
    value first: every value an error quotes goes through it, so an error stays one short line."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 3, 4
    text = r.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def short_text(text: str, limit: int = 300) -> str:
    """A message from elsewhere (a library's error) cut to one short line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def install_hint(module: str, what: str) -> str:
    """'<what> needs <distribution>: pip install ...' for an optional package (a key of OPTIONAL)."""
    dist, extra = OPTIONAL[module]
    return f"{what} needs {dist}: pip install 'llm-arch-bench[{extra}]'"


def need(module: str, what: str) -> None:
    """A ConfigError (one line, exit 2) naming the extra to install when optional ``module`` is not installed.
    Imports nothing: the caller imports it where it uses it (lm-eval must see its settings first)."""
    if module not in sys.modules and importlib.util.find_spec(module) is None:
        raise ConfigError(install_hint(module, what))
