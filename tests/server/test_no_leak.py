"""No response and no server log line carries a row, a true value or an identifier."""

from __future__ import annotations

import logging
import re

import duckdb

from tests.server.conftest import SQL


def identifiers(npd) -> set[str]:
    con = duckdb.connect(str(npd), read_only=True)
    try:
        rows = con.execute(
            "SELECT upn, postcode, forename || ' ' || surname FROM pupils USING SAMPLE 3000 ROWS"
        ).fetchall()
    finally:
        con.close()
    return {value for row in rows for value in row if value}


def test_responses_and_logs_carry_no_identifier(client, setting, npd_small, caplog):
    found = identifiers(npd_small)
    assert len(found) > 5000  # UPNs, postcodes and full names of 3,000 sampled pupils
    upn = next(v for v in found if re.fullmatch(r"[A-Z]\d{11}[0-9A-Z]", v))
    h = setting.headers
    bodies = []
    with caplog.at_level(logging.DEBUG):
        for sql in (
            SQL,
            "SELECT COUNT(*) AS n FROM census JOIN ks2 USING (pupil_id, academic_year)",
            "SELECT upn, COUNT(*) AS n FROM pupils GROUP BY upn",
            f"SELECT COUNT(*) AS n FROM pupils WHERE upn = '{upn}'",
            "SELECT forename, surname FROM pupils",
            "SELECT * FROM pupils",
            "SELECT COUNT(* FROM pupils",
        ):
            r = client.post("/v1/queries", json={"sql": sql, "project": "gaps"}, headers=h("ada"))
            bodies.append(r.text)
            bodies.append(client.get("/v1/queries/" + "0" * 20, headers=h("ada")).text)
        for path in ("/v1/audit/entries", "/v1/transparency", "/", "/v1/catalogue",
                     "/v1/projects/gaps/budget"):  # fmt: skip
            bodies.append(client.get(path, headers=h("aud")).text)
    text = "\n".join(bodies)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    # The one UPN the researcher typed must not be echoed, and no other identifier appears.
    assert upn not in text
    assert upn not in logged
    leaked = {v for v in found if v in text or v in logged}
    assert leaked == set()
