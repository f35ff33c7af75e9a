"""`KEY=VALUE` text, as the command line and spec strings write it: split at the first `=`, values typed.

The one reader for every place that takes such text: `--param`, `--set`, `--data-option`, degradation
specs (`composite:blur=1,peak=30`) and a model's own arguments (`enhancer_args`, `recognizer_args`). Each
caller keeps its own rule for lists (`,` or `;`) and its own error
line, which names the flag that was wrong and shows what it expects.
"""

from __future__ import annotations

from typing import Any

from gradprom.errors import GradpromError

BOOLEANS = {"true": True, "false": False}  # any case


def split_pair(item: str, refusal: str, *, empty_value: bool = True) -> tuple[str, str]:
    """`KEY=VALUE` → (KEY, VALUE), both stripped, split at the first `=` (a value may hold `=` of its own).

    Text without `=`, with an empty KEY, or with an empty VALUE where `empty_value` is False raises
    GradpromError with `refusal`: the caller's one line saying which flag was wrong."""
    key, sep, value = (part.strip() for part in item.partition("="))
    if not sep or not key or not (value or empty_value):
        raise GradpromError(refusal)
    return key, value


def parse_value(text: str) -> bool | int | float | str:
    """Text → bool (true/false, any case), int, float (0.15, 1e-2, inf) or else the text itself, stripped."""
    text = text.strip()
    if text.lower() in BOOLEANS:
        return BOOLEANS[text.lower()]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_as(text: str, kind: type) -> Any:
    """Text → a value of `kind` (bool, int, float or str), read as `parse_value` reads it; ValueError when the
    text is not one (an int setting refuses 1.5, a bool one anything but true/false)."""
    if kind is str:
        return text
    value = parse_value(text)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ValueError(f"{text!r} is not {kind.__name__}")
    return value


def parse_model_args(text: str, what: str) -> dict[str, Any]:
    """A model's own keyword arguments as a trial setting writes them: space-separated `KEY=VALUE` pairs, a value
    with commas a tuple (`features=8,8,16,32,64,8 dropout=0.1`); values typed by `parse_value`."""
    out: dict[str, Any] = {}
    for item in text.split():
        key, value = split_pair(item, f"{what}: '{item}' is not KEY=VALUE (e.g. features=8,8,16,32,64,8 "
                                      "dropout=0.1)", empty_value=False)
        out[key] = tuple(parse_value(v) for v in value.split(",")) if "," in value else parse_value(value)
    return out
