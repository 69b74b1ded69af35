"""TRUE values, for the demo only: possible only because the data are synthetic.

In the product the true aggregates never leave the engine's ``release()``. The demo puts
them beside the released ones so that a reader can see how close the noisy answers are;
this module is used by the demo and its report and by nothing on the query path.
"""

from __future__ import annotations

import duckdb

from safesetting.control import Control
from safesetting.engine.session import Prepared, Truth
from safesetting.service import current_optouts, engine_session

__all__ = ["Truth", "mask_upn", "pupil_with_exclusion", "true_rows"]


def true_rows(control: Control, sql: str) -> Truth:
    """The exact answer to ``sql`` as the service would compute it before adding noise
    (the engine session's own plan, SQL, retention year, opt-outs and data plane), one
    row per group of the released table, in the same order and with the same columns."""
    session = engine_session(control)
    prepared = session.prepare(sql)
    if not isinstance(prepared, Prepared):
        raise ValueError("the demo asked for the true values of a refused query")
    return session.truth(prepared, current_optouts(control))


def pupil_with_exclusion(db_path: str, year: int) -> str:
    """A UPN of some pupil excluded in ``year`` (the demo's opt-out; never shown in full)."""
    con = duckdb.connect(db_path, read_only=True)
    try:
        row = con.execute(
            "SELECT p.upn FROM pupils p JOIN exclusions e USING (pupil_id) "
            "WHERE e.academic_year = ? ORDER BY p.pupil_id LIMIT 1",
            [year],
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise ValueError(f"no pupil was excluded in {year}: generate more pupils")
    return str(row[0])


def mask_upn(upn: str) -> str:
    """Show that a UPN was used without showing it.

    >>> mask_upn("B856200021000")
    'B············'
    """
    return upn[:1] + "·" * (len(upn) - 1)
