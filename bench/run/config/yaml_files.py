"""Matrix, preset and --config files read as YAML, bounded: a file over MAX_YAML_BYTES, or one whose
aliases expand past MAX_YAML_VALUES values (a 'billion laughs'), fails at once in one line instead
of filling memory; a missing, non-UTF-8 or malformed file is one line too. Safe loading only: no
Python tags."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from ...errors import ConfigError

MAX_YAML_BYTES = 1 << 20  # a matrix or config file is a screenful; more is a mistake or an attack
MAX_YAML_VALUES = 20_000  # values once aliases are expanded: a matrix of 10^4 axis values is already absurd


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts a document's values with every alias expanded, on the composed node
    graph before anything is built, and refuses more than MAX_YAML_VALUES: a 'billion laughs' (aliases
    of aliases) fails at once instead of filling memory."""

    def construct_document(self, node):
        _expanded(node)
        return super().construct_document(node)


class _TooLarge(Exception):
    pass


def _expanded(root) -> int:
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge("an alias refers to itself")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        active.discard(key)
        if n > MAX_YAML_VALUES:
            raise _TooLarge(f"its aliases expand to more than {MAX_YAML_VALUES:,} values")
        sizes[key] = n
        return n

    return size(root)


def load_yaml(path) -> dict:
    """A YAML file's content, cached until the file changes; one line for a missing, non-UTF-8,
    malformed or oversized file (bounded in bytes and in values with aliases expanded)."""
    try:
        st = Path(path).stat()
    except OSError:
        raise ConfigError(f"file not found: {path}") from None
    if st.st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path} is {st.st_size:,} bytes, more than the {MAX_YAML_BYTES:,} a matrix or config "
                          "file may hold")
    return _load_yaml(Path(path), st.st_mtime_ns)


@cache
def _load_yaml(path, stamp: int) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_BoundedLoader) or {}  # noqa: S506 - a SafeLoader
    except _TooLarge as e:
        raise ConfigError(f"{path}: {e}; refused (write the values out, or use fewer aliases)") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML at {where}: {getattr(e, 'problem', e)}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
