"""What the attack benchmarks (bench_exploit, bench_direct_label, bench_sdar, bench_grn, bench_fora)
share: the ``--seeds``/``--epochs`` arguments, one run per seed gathered into columns, and the
Markdown rows of mean ± sd cells, so each script keeps only its setup and its table.

Imported by the scripts as a sibling module (they run as ``python benchmarks/bench_x.py``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

import numpy as np
import torch


def arguments(doc: str, *, epochs: int | None = None) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--seeds`` (default 0 1 2) and, when
    ``epochs`` is given, ``--epochs`` defaulting to it; add the script's own options, then :func:`parse`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs)
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed arguments; torch runs on one thread (the benchmarks share a small machine)."""
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args


def over_seeds(run: Callable[..., dict], seeds: Iterable[int], *args, **kwargs) -> dict[str, list]:
    """``run(*args, seed=s, **kwargs)`` for each seed; every key of the returned rows becomes a column
    (a list in seed order)."""
    rows = [run(*args, seed=seed, **kwargs) for seed in seeds]
    return {key: [row[key] for row in rows] for key in rows[0]}


def fmt(values) -> str:
    """``mean ± sd`` with three decimals (sample sd; 0 for a single value)."""
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def header(*titles: str) -> None:
    """Print a Markdown table header."""
    print("| " + " | ".join(titles) + " |")
    print("|" + "---|" * len(titles), flush=True)


def row(*cells) -> None:
    """Print one Markdown table row."""
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def per_seed(columns: dict[str, list], *keys: str, digits: int = 3) -> list:
    """The values of ``keys`` per seed, rounded: one value per seed for one key, tuples for several."""
    rounded = [[round(float(v), digits) for v in columns[k]] for k in keys]
    return rounded[0] if len(keys) == 1 else list(zip(*rounded))
