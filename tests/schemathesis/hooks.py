"""Schemathesis hooks for strata's API (tests/schemathesis.rs).

One rule of the API lies beyond JSON Schema: on GET /audit-logs and GET
/audit-logs/summary, `to` must come after `from`, at most 366 days later, and
GET /audit-logs needs both unless `user_id` is the only filter. A schema-valid
(positive) case is made to keep that rule, so that the run still checks that
everything else the schema allows is accepted; negative cases are left alone.
"""

from datetime import date, datetime, timedelta, timezone

import schemathesis

RANGED = {"/audit-logs", "/audit-logs/summary"}
ONLY_WITH_USER = {"user_id", "cursor", "limit"}


def parse(value):
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return t if t.tzinfo else None
    except ValueError:
        return None


def show(t):
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@schemathesis.hook
def map_case(context, case):
    if case.operation.path not in RANGED or case.method.upper() != "GET":
        return case
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    query = dict(case.query or {})
    if case.operation.path == "/audit-logs":
        if "from" not in query and "to" not in query and "user_id" in query and set(query) <= ONLY_WITH_USER:
            return case
    start = parse(query.get("from"))
    end = parse(query.get("to"))
    try:
        if start is None:
            start = (end or datetime(2025, 1, 1, tzinfo=timezone.utc)) - timedelta(days=1)
        if end is None or not (start < end <= start + timedelta(days=366)):
            end = start + timedelta(days=1)
    except OverflowError:
        start = datetime(9999, 12, 30, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
    query["from"] = show(start)
    query["to"] = show(end)
    case.query = query
    return case
