"""Every shielded scope in toru/ has a deadline: no stop can wait forever on anything."""

from __future__ import annotations

import ast
from pathlib import Path

TORU = Path(__file__).resolve().parents[2] / "toru"
BOUNDED = {"move_on_after", "fail_after", "move_on_at", "fail_at"}


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _shields(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, problem) for every shield without a deadline in *tree*."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            keywords = {k.arg: k.value for k in node.keywords}
            shield = keywords.get("shield")
            if shield is None or (isinstance(shield, ast.Constant) and shield.value is False):
                continue
            name = _name(node)
            if name in BOUNDED:
                continue  # move_on_after(x, shield=True): the deadline is the first argument
            if name == "CancelScope" and "deadline" in keywords:
                continue
            problems.append((node.lineno, f"{name}(shield=...) without a deadline"))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr == "shield":
                    problems.append((node.lineno, "assigns .shield (no deadline in sight)"))
    return problems


def test_every_shield_in_toru_has_a_deadline() -> None:
    """A CancelScope(shield=True) without deadline=, or a .shield assignment, fails here."""
    found = {
        f"{path.relative_to(TORU.parent)}:{line}: {problem}"
        for path in sorted(TORU.rglob("*.py"))
        for line, problem in _shields(ast.parse(path.read_text(), str(path)))
    }
    assert found == set()


def test_the_check_finds_an_unbounded_shield() -> None:
    """The checker itself: an unbounded shield in a snippet is reported, a bounded one not."""
    snippet = (
        "import trio\n"
        "with trio.CancelScope(shield=True):\n    pass\n"
        "with trio.CancelScope(shield=True, deadline=1):\n    pass\n"
        "with trio.move_on_after(1, shield=True):\n    pass\n"
        "scope = trio.CancelScope()\nscope.shield = True\n"
    )
    assert sorted(line for line, _ in _shields(ast.parse(snippet))) == [2, 9]
