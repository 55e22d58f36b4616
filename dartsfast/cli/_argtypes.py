"""argparse ``type=`` converters shared by every ``dartsfast`` subcommand.

Each raises ``argparse.ArgumentTypeError`` naming the bad text, so argparse reports
``dartsfast <command>: error: argument --flag: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse

from dartsfast.config import MAX_SEED
from dartsfast.search.space import check_op_names


def _int(text: str, want: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text, "an integer ≥ 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {value}")
    return value


def seed(text: str) -> int:
    value = _int(text, "an integer seed")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, {MAX_SEED}] (2**32 - 1), got {value}")
    return value


def number(text: str) -> float:
    return _number(text)


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def fraction(text: str) -> float:
    """A fraction such as 0.10 (= 10%), in [0, 10)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.10, got {text!r}") from None
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 10) such as 0.10 (= 10%), got {value}")
    return value


def name_list(text: str) -> list[str]:
    """``"a, b,"`` → ["a", "b"]."""
    return [n.strip() for n in text.split(",") if n.strip()]


def op_list(text: str) -> tuple:
    """Comma-separated candidate op names, checked against the registry."""
    try:
        return check_op_names(tuple(s.strip() for s in text.split(",") if s.strip()))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
