"""Plugin ids and routes: the rules Toru and the SDK share (standard library only).

Packaged plugins carry this file, so the SDK refuses at construction exactly
what Toru's discovery would reject.
"""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ID_RULE = "1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
#: First path segments the web UI uses itself; a plugin route may not take them.
RESERVED_ROUTES = frozenset(
    {"api", "assets", "static", "login", "logout", "plugin", "plugins", "users", "account",
     "settings", "system", "health", "admin"}
)  # fmt: skip
