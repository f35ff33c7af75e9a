"""User-facing errors: one line that says what is wrong and what to do.

The CLI prints these as a single line and exits with their `exit_code` (2, a usage error, unless a subclass
says otherwise); everything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GradpromError(ValueError):
    """Bad input or a problem the user can fix; its message is shown as one line."""

    def __init__(self, message: object = "", *args: object) -> None:
        # one line whatever the user typed: line breaks inside quoted input are shown escaped
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"), *args)


class DataMissing(GradpromError):
    """A dataset (or the optional part a task needs) is not on disk: absent, as opposed to broken."""


class SearchInterrupted(GradpromError):
    """The search was stopped (Ctrl-C, exit code 130; SIGTERM, 143) before every trial ended; what finished is
    saved."""

    exit_code = 130


class SearchFailed(GradpromError):
    """The search ran, but some dataset's study ended without one trial that finished (every trial failed):
    its results are saved; exit code 1 (not a usage error), so scripts notice."""

    exit_code = 1


class SearchBroke(GradpromError):
    """The search stopped on an error that is gradprom's, not the input's (a bug): what finished is saved and
    `--resume` continues; exit code 1, one line, never a traceback."""

    exit_code = 1


class NonFiniteLossError(RuntimeError):
    """A training loss or gradient turned NaN/inf; the trial fails, the search goes on."""


def unknown_name(kind: str, name: str, valid: Iterable[str], option: str = "") -> GradpromError:
    """Error for an unknown registry name, with a did-you-mean and the valid choices (`option`, where given, names
    the flag that took it)."""
    valid = sorted(valid)
    where = f"{option}: " if option else ""
    if not valid:
        return GradpromError(f"{where}unknown {kind} '{name}': there are no {plural(kind)} to choose from here")
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return GradpromError(f"{where}unknown {kind} '{name}'.{hint} Valid {plural(kind)}: {', '.join(valid)}")


def plural(kind: str) -> str:
    """'strategy' → 'strategies', 'key of protocol x' → 'keys of protocol x': the head noun made plural."""
    cut = min((i for i in (kind.find(" of "), kind.find(" in "), kind.find(" (")) if i >= 0), default=len(kind))
    head, rest = kind[:cut], kind[cut:]
    if head.endswith("y") and head[-2:-1] not in tuple("aeiou"):
        head = head[:-1] + "ies"
    elif head.endswith(("s", "x", "ch", "sh")):
        head += "es"
    else:
        head += "s"
    return head + rest
