"""Small pieces of the sentences mnistlab prints and logs."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
