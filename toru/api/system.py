"""``/api/health`` and ``/api/system``: the server itself, not its plugins."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from toru import __version__
from toru.api.guards import admin_required
from toru.openapi import openapi_document
from toru.tasktree import render, task_tree


def system_blueprint() -> Blueprint:
    bp = Blueprint("system", __name__, url_prefix="/api")
    document = openapi_document(__version__)

    @bp.get("/health")
    async def health() -> Response:
        """Liveness for load balancers and monitors: no secrets, no database round-trip."""
        return jsonify({"status": "ok", "version": __version__})

    @bp.get("/openapi.json")
    async def openapi() -> Response:
        """The OpenAPI 3.1 document of this API (public, like the prose in docs/api.md)."""
        return jsonify(document)

    @bp.get("/system/tasks")
    @admin_required
    async def tasks() -> Response:
        """The live Trio task tree: ``tree`` as data (see :mod:`toru.tasktree`), ``text`` drawn."""
        tree = task_tree()
        return jsonify({"tree": tree, "text": render(tree)})

    return bp
