"""The task tree: live nesting of named tasks, readable names, Trio's own tasks flagged, text."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import trio
import trio.testing

from toru.tasktree import display_name, render, task_tree


async def _parent(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A plugin-runner-shaped task: a nursery of named children, one with its own nursery."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever, name="plugin:demo:stdout")
        nursery.start_soon(_with_child, name="plugin:demo:connection")
        nursery.start_soon(trio.sleep_forever, name="plugin:demo:pinger")
        task_status.started()


async def _with_child() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever, name="reader")


class Pinger:
    """A callable object: Trio names its task by the object's repr."""

    async def __call__(self) -> None:
        await trio.sleep_forever()

    async def run(self) -> None:
        await trio.sleep_forever()


def _strip(node: dict[str, Any]) -> dict[str, Any]:
    """Names and nesting only."""
    return {"name": node["name"], "children": [_strip(child) for child in node["children"]]}


def _find(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    if node["name"] == name:
        return node
    for child in node["children"]:
        if (found := _find(child, name)) is not None:
            return found
    return None


async def test_tree_shows_named_tasks_nested_and_sorted() -> None:
    """Tasks appear under the task whose nursery holds them, siblings sorted by name."""
    async with trio.open_nursery() as nursery:
        await nursery.start(_parent, name="plugin:demo")
        nursery.start_soon(trio.sleep_forever, name="another")
        await trio.testing.wait_all_tasks_blocked()
        tree = task_tree(trio.lowlevel.current_task())
        nursery.cancel_scope.cancel()

    assert _strip(tree) == {
        "name": trio.lowlevel.current_task().name,
        "children": [
            {"name": "another", "children": []},
            {
                "name": "plugin:demo",
                "children": [
                    {
                        "name": "plugin:demo:connection",
                        "children": [{"name": "reader", "children": []}],
                    },
                    {"name": "plugin:demo:pinger", "children": []},
                    {"name": "plugin:demo:stdout", "children": []},
                ],
            },
        ],
    }


async def test_finished_tasks_leave_the_tree() -> None:
    """Only live tasks are listed: a cancelled subtree is gone from the next snapshot."""
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep_forever, name="short-lived")
            outer.start_soon(trio.sleep_forever, name="long-lived")
            await trio.testing.wait_all_tasks_blocked()
            before = task_tree(trio.lowlevel.current_task())
            inner.cancel_scope.cancel()
        after = task_tree(trio.lowlevel.current_task())
        outer.cancel_scope.cancel()
    assert [c["name"] for c in before["children"]] == ["long-lived", "short-lived"]
    assert [c["name"] for c in after["children"]] == ["long-lived"]


async def test_default_root_is_trios_root_with_its_own_tasks_flagged() -> None:
    """From Trio's root task down: ``<init>`` and its helpers are system, our tasks are not."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever, name="plugin:flag-check")
        await trio.testing.wait_all_tasks_blocked()
        tree = task_tree()
        nursery.cancel_scope.cancel()

    assert tree["name"] == "<init>"
    assert tree["system"] is True
    token_task = _find(tree, "<TrioToken.run_sync_soon task>")
    assert token_task is not None
    assert token_task["system"] is True
    ours = _find(tree, "plugin:flag-check")
    assert ours is not None
    assert ours["system"] is False
    test_task = _find(tree, trio.lowlevel.current_task().name)
    assert test_task is not None
    assert test_task["system"] is False


async def test_system_task_subtrees_are_flagged() -> None:
    """A task started with spawn_system_task, and its children, are flagged system."""
    started = trio.Event()
    scope = trio.CancelScope()

    async def system_job() -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever, name="system-child")
                started.set()

    trio.lowlevel.spawn_system_task(system_job, name="system-job")
    await started.wait()
    await trio.testing.wait_all_tasks_blocked()
    tree = task_tree()
    scope.cancel()
    job, child = _find(tree, "system-job"), _find(tree, "system-child")
    assert job is not None
    assert child is not None
    assert (job["system"], child["system"]) == (True, True)


async def test_callable_reprs_become_readable_names() -> None:
    """A callable object's task and a repr'd bound method show as class names, not reprs."""
    pinger = Pinger()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pinger)
        nursery.start_soon(pinger.run, name=repr(pinger.run))
        nursery.start_soon(pinger.run)
        await trio.testing.wait_all_tasks_blocked()
        tree = task_tree(trio.lowlevel.current_task())
        nursery.cancel_scope.cancel()
    assert [child["name"] for child in tree["children"]] == [
        "Pinger.run",
        "tests.unit.test_tasktree.Pinger",
        "tests.unit.test_tasktree.Pinger.run",
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("toru.server.serve_http", "toru.server.serve_http"),
        ("plugin:hello-plugin-python:stderr", "plugin:hello-plugin-python:stderr"),
        ("<init>", "<init>"),
        ("<TrioToken.run_sync_soon task>", "<TrioToken.run_sync_soon task>"),
        ("__main__.main.<locals>.<lambda>", "__main__.main.<locals>.<lambda>"),
        (
            "<bound method Runner.run of <toru.plugins.runner.Runner object at 0x7f3a2c0>>",
            "Runner.run",
        ),
        (
            "<bound method main.<locals>.C.m of <__main__.main.<locals>.C object at 0x7f>>",
            "main.<locals>.C.m",
        ),
        ("<bound method Runner.run of Runner(id='a<b', pid=12)>", "Runner.run"),
        ("<function serve at 0x7f3a2c0d1e40>", "serve"),
        ("<built-in function sleep>", "sleep"),
        ("<toru.plugins.runner.Pinger object at 0x7f3a2c0d1e40>", "toru.plugins.runner.Pinger"),
        ("functools.partial(<function serve at 0x7f00>, 1, x=2)", "serve"),
        ("<unbalanced", "<unbalanced"),
    ],
)
def test_display_name(raw: str, shown: str) -> None:
    """Reprs of callables lose their addresses and bound objects; readable names pass as-is."""
    assert display_name(raw) == shown


def test_render_draws_the_tree() -> None:
    """render() draws ├──/└── branches with │ continuing past non-last children."""
    leaf = {"system": False, "children": []}
    tree = {
        "name": "toru.server.serve",
        "system": False,
        "children": [
            {
                "name": "supervisor",
                "system": False,
                "children": [
                    {
                        "name": "plugin:a",
                        "system": False,
                        "children": [
                            {"name": "plugin:a:process", **leaf},
                            {"name": "plugin:a:stderr", **leaf},
                        ],
                    },
                    {"name": "plugin:b", **leaf},
                ],
            },
            {"name": "toru.server.watch_signals", **leaf},
        ],
    }
    assert render(tree) == textwrap.dedent(
        """\
        toru.server.serve
        ├── supervisor
        │   ├── plugin:a
        │   │   ├── plugin:a:process
        │   │   └── plugin:a:stderr
        │   └── plugin:b
        └── toru.server.watch_signals"""
    )


def test_render_single_node() -> None:
    """A task without children is one line."""
    assert render({"name": "lonely", "system": False, "children": []}) == "lonely"
