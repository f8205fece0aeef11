"""Timestamps as the API and the logs show them: ISO 8601, UTC, millisecond precision."""

from __future__ import annotations

import datetime as dt


def iso_utc(unix_seconds: float) -> str:
    """``1767225600.5`` -> ``'2026-01-01T00:00:00.500Z'``."""
    moment = dt.datetime.fromtimestamp(unix_seconds, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
