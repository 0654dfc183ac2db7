"""User-facing errors: printed as one line, exit code 2, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input. `str()` is the one-line message shown to the user."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A name (GPU, model, quantization, engine, profile, region) that the catalogue does not know."""

    def __init__(self, kind: str, name: str, suggestions: Iterable[str] = ()):
        self.kind, self.name, self.suggestions = kind, name, list(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would add quotes
        return self.args[0]


def closest(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Closest matches of `name` among `choices` (case-insensitive), best first."""
    choices = list(dict.fromkeys(choices))
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=cutoff)
    substr = [c for c in choices if name.lower() in c.lower() and lowered[c.lower()] not in hits]
    return [lowered[h] for h in hits] + substr[: max(0, n - len(hits))]
