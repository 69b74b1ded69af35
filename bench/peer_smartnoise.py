"""SmartNoise SQL on the same data and questions (run with a Python that has smartnoise-sql).

SmartNoise pins an older OpenDP, so it lives in its own virtual environment:

    python3 -m venv /tmp/snsql && /tmp/snsql/bin/pip install smartnoise-sql duckdb pandas
    /tmp/snsql/bin/python bench/peer_smartnoise.py DB.duckdb

Prints one JSON object: per question, load seconds and median query seconds.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import duckdb
import snsql
from snsql import Privacy

QUESTIONS = {
    "count by LA, one year": (
        "census",
        "SELECT pupil_id, la_code, academic_year FROM census",
        "SELECT la_code, COUNT(*) AS n FROM npd.census WHERE academic_year = 2023 GROUP BY la_code",
        {"la_code": {"type": "string"}, "academic_year": {"type": "int"}},
        20,
    ),
    "mean Attainment 8 by basics": (
        "ks4",
        "SELECT pupil_id, basics_grade4, attainment8 FROM ks4",
        "SELECT basics_grade4, AVG(attainment8) AS a8 FROM npd.ks4 GROUP BY basics_grade4",
        {"basics_grade4": {"type": "boolean"},
         "attainment8": {"type": "float", "lower": 0.0, "upper": 90.0}},
        1,
    ),
}  # fmt: skip


def main(db: str, runs: int = 5) -> None:
    con = duckdb.connect(db, read_only=True)
    out = {}
    for label, (table, load_sql, query, columns, max_ids) in QUESTIONS.items():
        started = time.perf_counter()
        frame = con.execute(load_sql).df()
        loaded = time.perf_counter() - started
        meta = {
            "Database": {
                "npd": {
                    table: {
                        "max_ids": max_ids,
                        "row_privacy": False,
                        "pupil_id": {"type": "int", "private_id": True},
                        **columns,
                    }
                }
            }
        }
        reader = snsql.from_df(frame, privacy=Privacy(epsilon=1.0, delta=1e-6), metadata=meta)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            reader.execute(query)
            times.append(time.perf_counter() - t)
        out[label] = {"load_s": loaded, "query_s": statistics.median(times)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
