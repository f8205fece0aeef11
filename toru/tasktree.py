"""The live Trio task tree as data and as text, for ``GET /api/system/tasks`` and ``toru tasks``.

Each node is ``{"name": str, "system": bool, "children": [node, ...]}``. A task's
children are the tasks of every nursery it has open, in one list sorted by name
(Trio keeps them in sets), so the same tree prints the same way every time.

Trio's own tasks are **kept and flagged** ``"system": true``: the root task
``<init>``, ``<TrioToken.run_sync_soon task>`` and anything started with
``trio.lowlevel.spawn_system_task``, with their descendants. Dropping them would
hide where the tree really starts; the flag lets a reader (or the web UI) filter
them. Everything under the main task -- ``trio.run(serve)``'s task -- has
``"system": false``. The text rendering shows every node; Trio's names are in
angle brackets already, which sets them apart.
"""

from __future__ import annotations

import re
from typing import Any

import trio

__all__ = ["display_name", "render", "task_tree"]

Node = dict[str, Any]

# The insides of ``<...>`` reprs that say more than a task name should: reduced to the name.
_REPR_NOISE = [
    re.compile(r"bound method (?P<name>\S+) of .*", re.DOTALL),
    re.compile(r"built-in method (?P<name>\S+) of .*", re.DOTALL),
    re.compile(r"(?:built-in )?function (?P<name>\S+)(?: at 0x[0-9a-fA-F]+)?"),
    re.compile(r"(?P<name>[\w.]+) object at 0x[0-9a-fA-F]+"),
]
_PARTIAL = re.compile(r"functools\.partial\((?P<name>[^,()\s]+)(?:, .*)?\)", re.DOTALL)


def task_tree(root: trio.lowlevel.Task | None = None) -> Node:
    """The tree of live tasks under *root* (default: Trio's root task), as plain JSON data.

    Must be called from inside ``trio.run``. The main task is recognised as the
    root task's child that the calling task descends from: Trio has no public
    handle on it, and callers (an HTTP handler, a test) always run under it.
    """
    trio_root = trio.lowlevel.current_root_task()
    if root is None:
        root = trio_root
    if root is None:  # pragma: no cover - only outside trio.run, where current_task fails first
        raise RuntimeError("task_tree() must be called inside trio.run")
    main = _main_task(trio_root)
    return _node(root, system=_is_system(root, main), main=main)


def render(tree: Node) -> str:
    """*tree* as indented lines, ``├──``/``└──`` before each child (no trailing newline)."""
    lines = [tree["name"]]
    _render_children(tree["children"], "", lines)
    return "\n".join(lines)


def display_name(raw: str) -> str:
    """A task name a person can read: reprs of callables reduced to their qualified names.

    ``<bound method Runner.run of <Runner object at 0x...>>`` becomes
    ``Runner.run``, ``<function serve at 0x...>`` becomes ``serve``, a callable
    object's ``<pkg.Pinger object at 0x...>`` becomes ``pkg.Pinger`` and
    ``functools.partial(f, ...)`` becomes ``f``. Names that are already readable
    (``toru.server.serve_http``, ``plugin:hello``, ``<init>``) pass unchanged.
    """
    if raw.startswith("<") and raw.endswith(">"):
        # Whole-name first: an object repr inside may hold unbalanced brackets ('a<b').
        for pattern in _REPR_NOISE:
            if (match := pattern.fullmatch(raw[1:-1])) is not None:
                return _simplify(match["name"])
    name = _simplify(raw)
    if (partial := _PARTIAL.fullmatch(name)) is not None:
        return partial["name"]
    return name


def _node(task: trio.lowlevel.Task, *, system: bool, main: trio.lowlevel.Task | None) -> Node:
    children = [
        # A child of the root task is Trio's unless it is the main task; below that, inherited.
        _node(child, system=system and child is not main, main=main)
        for nursery in task.child_nurseries
        for child in nursery.child_tasks
    ]
    # Same-named siblings (two Hypercorn connections) are ordered by their subtrees.
    children.sort(key=lambda node: (node["name"], repr(node["children"])))
    return {"name": display_name(task.name), "system": system, "children": children}


def _main_task(trio_root: trio.lowlevel.Task | None) -> trio.lowlevel.Task | None:
    task = trio.lowlevel.current_task()
    while (nursery := task.parent_nursery) is not None:
        if nursery.parent_task is trio_root:
            return task
        task = nursery.parent_task
    return None


def _is_system(task: trio.lowlevel.Task, main: trio.lowlevel.Task | None) -> bool:
    """True unless *task* is the main task or one of its descendants."""
    current: trio.lowlevel.Task | None = task
    while current is not None:
        if current is main:
            return False
        nursery = current.parent_nursery
        current = nursery.parent_task if nursery is not None else None
    return True


def _render_children(children: list[Node], prefix: str, lines: list[str]) -> None:
    for index, child in enumerate(children):
        last = index == len(children) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{child['name']}")
        _render_children(child["children"], prefix + ("    " if last else "│   "), lines)


def _simplify(text: str) -> str:
    """Replace every ``<...>`` repr matching ``_REPR_NOISE`` by the name inside it."""
    out: list[str] = []
    i = 0
    while i < len(text):
        end = _closing_bracket(text, i) if text[i] == "<" else None
        if end is None:
            out.append(text[i])
            i += 1
            continue
        inner = text[i + 1 : end]
        for pattern in _REPR_NOISE:
            if (match := pattern.fullmatch(inner)) is not None:
                out.append(_simplify(match["name"]))
                break
        else:
            out.append(f"<{_simplify(inner)}>")
        i = end + 1
    return "".join(out)


def _closing_bracket(text: str, start: int) -> int | None:
    """The index of the ``>`` matching the ``<`` at *start*, or None when unbalanced."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "<":
            depth += 1
        elif text[index] == ">":
            depth -= 1
            if depth == 0:
                return index
    return None
