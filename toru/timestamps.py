"""Timestamps as the API and the logs show them: ISO 8601, UTC, millisecond precision.

The format is the one on the plugin socket, so it is defined once, in
:mod:`toru.plugins.envelope` (which packaged plugins carry); this is the
server's name for it.
"""

from __future__ import annotations

from toru.plugins.envelope import utc_timestamp


def iso_utc(unix_seconds: float) -> str:
    """``1767225600.5`` -> ``'2026-01-01T00:00:00.500Z'``."""
    return utc_timestamp(unix_seconds)
