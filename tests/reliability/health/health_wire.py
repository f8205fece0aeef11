"""What the health plugins share, on top of ``corpus_wire`` (standard library only).

Each plugin misbehaves in its first life only, so that the restart the test waits for
leads to a healthy plugin that stays up; and it says when its fault begins with one JSON
line on stderr (``"message": "going silent"``, ``silent_at`` in Unix seconds), which
Toru keeps in the plugin's log: the test measures the detection time from it.
"""

import json
import os
import sys
import time

import corpus_wire


def first_life(plugin_id):
    """True the first time a process of *plugin_id* asks (a file beside it remembers)."""
    marker = corpus_wire.here(f"{plugin_id}.misbehaved")
    if os.path.exists(marker):
        return False
    corpus_wire.note(f"{plugin_id}.misbehaved", str(os.getpid()))
    return True


def going_silent():
    print(
        json.dumps({"level": "warn", "message": "going silent", "silent_at": time.time()}),
        file=sys.stderr,
        flush=True,
    )
