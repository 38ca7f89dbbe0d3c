"""Checking a name against a registry: the error names every valid choice and the nearest."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable


class UnknownName(ValueError):
    """A name that is not in its registry; the message lists the valid choices."""


def check_choice(kind: str, name, choices: Iterable[str]) -> str:
    choices = list(choices)
    if name in choices:
        return name
    # the name as an error quotes it: short, whatever a hand-edited file put there (a huge string, a
    # deep structure), so the error stays one line and is built at once
    r = reprlib.Repr()
    r.maxstring = r.maxother = 60
    r.maxlevel, r.maxlist, r.maxdict = 2, 4, 3
    quoted = r.repr(name)
    spelt = name[:100] if isinstance(name, str) else quoted
    text = spelt.lower()
    # a close misspelling first ('pre+gaps'), then a choice the input starts with ('prenorm' -> 'pre')
    prefixed = sorted((c for c in choices if text.startswith(c.lower()) and len(c) >= 3), key=len, reverse=True)
    near = (difflib.get_close_matches(spelt, choices, n=1, cutoff=0.8) or prefixed[:1]
            or difflib.get_close_matches(spelt, choices, n=1, cutoff=0.5))
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise UnknownName(f"unknown {kind} {quoted}.{hint} Valid choices: {', '.join(choices)}")
