"""Append-only JSON-lines results: one row per finished run, never a half row.

Appends are one ``write`` of a whole line to a file opened in append mode, followed by fsync. A
process killed mid-write can at worst leave an unterminated last line; readers skip it and the next
append cuts it off first, so finished rows are never lost and no row is ever half written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from secsplit.errors import DataError

FINISHED = ("ok", "not_applicable", "attack_stalled")


def _drop_partial_tail(path: Path) -> None:
    """Truncate an unterminated last line (the remains of an interrupted append)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        handle.truncate(keep)


def append_row(path, row: dict) -> None:
    """Append ``row`` as one JSON line, atomically with respect to interruption."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _drop_partial_tail(path)
    line = (json.dumps(row, sort_keys=True, default=_jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_rows(path) -> list[dict]:
    """Every complete row of a results file (an interrupted last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file not found: {path}")
    rows = []
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last element is "" or an unterminated tail
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {number} is not valid JSON ({error})") from None
    return rows


def finished_keys(path) -> set[str]:
    """Config hashes of rows that need no rerun (finished or not applicable; failed rows are retried)."""
    path = Path(path)
    if not path.is_file():
        return set()
    rows = latest_rows(load_rows(path))
    done = {row["config_hash"] for row in rows if row.get("status") in FINISHED}
    # an attack (all its seats) is done when every seat's row is
    by_attack: dict[str, list[bool]] = {}
    for row in rows:
        if "attack_key" in row:
            by_attack.setdefault(row["attack_key"], []).append(row.get("status") in FINISHED)
    unfinished = {key for key, finished in by_attack.items() if not all(finished)}
    return (done - unfinished) | {key for key, finished in by_attack.items() if all(finished)}


def latest_rows(rows: list[dict]) -> list[dict]:
    """The last row per config hash (a retried failure is superseded by its rerun)."""
    latest: dict[str, dict] = {}
    for row in rows:
        latest[row["config_hash"]] = row
    return list(latest.values())


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
