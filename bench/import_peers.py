"""The peers `bench/import_cactus.py` times `studio import` against, each run in a fresh process.

    python bench/import_peers.py floor FILE DB      # plain sqlite3: one executemany, one table
    python bench/import_peers.py datasets FILE DB   # datasets.load_dataset + sqlite-utils insert_all

`floor` is the plain-sqlite floor of the issue: the rows parsed from the same file (orjson, as the
studio reads JSONL) and the same seven columns stored, with one `executemany` into one table in
one transaction, on SQLite's defaults. It has no dedupe, no validation and no indexes.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLUMNS = (
    "thought",
    "patterns",
    "intake_form",
    "cbt_technique",
    "cbt_plan",
    "attitude",
    "dialogue",
)


def floor(path: str, db: str) -> None:
    import orjson

    def rows() -> Iterator[tuple[Any, ...]]:
        with Path(path).open("rb") as fh:
            for line in fh:
                obj = orjson.loads(line)
                yield tuple(obj.get(name) for name in COLUMNS)

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"CREATE TABLE rows ({', '.join(f'{name} TEXT' for name in COLUMNS)})")
    conn.execute("BEGIN")
    marks = ", ".join("?" * len(COLUMNS))
    conn.executemany(f"INSERT INTO rows VALUES ({marks})", rows())
    conn.execute("COMMIT")
    conn.close()


def datasets_peer(path: str, db: str) -> None:
    from datasets import load_dataset
    from sqlite_utils import Database

    # A fresh cache each run: a user's first import converts the file to Arrow, as this does.
    with tempfile.TemporaryDirectory() as cache:
        dataset = load_dataset("json", data_files=path, split="train", cache_dir=cache)
        Database(db).table("rows").insert_all(dataset, batch_size=1000)


if __name__ == "__main__":
    kind, file, target = sys.argv[1:4]
    {"floor": floor, "datasets": datasets_peer}[kind](file, target)
