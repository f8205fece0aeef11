"""Write Toru plugins in Python.

::

    from toru.sdk import Plugin, Request

    plugin = Plugin(id="hello", name="Hello", version="1.0.0", route="/hello")

    @plugin.get("/")
    async def index(request: Request) -> dict[str, str]:
        return {"message": "hi"}

    if __name__ == "__main__":
        plugin.run()

Imports nothing but the standard library, Trio, attrs and the modules it
shares with Toru (``toru.plugins.framing``, ``toru.plugins.envelope`` and
``toru.plugins.naming``), so a packaged plugin carries only those.
"""

from toru.plugins.envelope import utc_timestamp
from toru.sdk.http import HTTPError, Request, Response
from toru.sdk.kv import KVClient, KVError
from toru.sdk.logging import Logger
from toru.sdk.metadata import PROTOCOL_VERSION, PluginInfo
from toru.sdk.plugin import Plugin
from toru.sdk.server import PluginStartError

__all__ = [
    "PROTOCOL_VERSION",
    "HTTPError",
    "KVClient",
    "KVError",
    "Logger",
    "Plugin",
    "PluginInfo",
    "PluginStartError",
    "Request",
    "Response",
    "utc_timestamp",
]
