"""The batch manifest: one record per image in ``manifest.json`` and ``manifest.csv``, rewritten as images finish.

Both files are written to a temporary name and renamed into place, so a user (or a script polling the folder) never
reads half a manifest, even when the run is killed mid-write. The CSV has the JSON's columns, for spreadsheets.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .._atomic import write_text_atomic

COLUMNS = ("image", "store", "status", "regions_total", "regions_done", "regions_failed", "seconds", "regions_per_s",
           "worker", "started", "finished", "error")
STATUSES = ("done", "skipped", "resumed", "failed", "cancelled")
#: statuses after which an image needs no further run
SUCCESS = ("done", "skipped", "resumed")
JSON_NAME, CSV_NAME = "manifest.json", "manifest.csv"


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def make_record(image: str | os.PathLike, store: str | os.PathLike, status: str, **fields: object) -> dict:
    """A record with every column present (missing numbers 0, missing text ""), errors squeezed to one line."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    record = {"image": str(image), "store": str(store), "status": status, "regions_total": 0, "regions_done": 0,
              "regions_failed": 0, "seconds": 0.0, "regions_per_s": 0.0, "worker": "", "started": "",
              "finished": "", "error": ""}
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown manifest columns {sorted(unknown)}")
    record.update(fields)
    record["error"] = " ".join(str(record["error"] or "").split())
    return record


def write_manifest(out_dir: str | os.PathLike, records: Sequence[dict]) -> Path:
    """Write both files atomically; extra keys in ``records`` (diagnostics) are left out. Returns the JSON path."""
    out_dir = Path(out_dir)
    rows = [{k: r.get(k, "") for k in COLUMNS} for r in records]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / CSV_NAME, text.getvalue())
    path = out_dir / JSON_NAME
    write_text_atomic(path, json.dumps(rows, indent=1) + "\n")
    return path


def read_manifest(out_dir: str | os.PathLike) -> list[dict]:
    return json.loads((Path(out_dir) / JSON_NAME).read_text(encoding="utf-8"))


def count_statuses(records: Sequence[dict]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for r in records:
        counts[r["status"]] += 1
    return counts
