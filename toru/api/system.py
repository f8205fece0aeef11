"""``/api/health`` and, later, the rest of ``/api/system``."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from toru import __version__


def system_blueprint() -> Blueprint:
    bp = Blueprint("system", __name__, url_prefix="/api")

    @bp.get("/health")
    async def health() -> Response:
        """Liveness for load balancers and monitors: no secrets, no database round-trip."""
        return jsonify({"status": "ok", "version": __version__})

    return bp
