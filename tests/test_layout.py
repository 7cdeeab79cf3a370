"""The shape of the package: layers that point one way, small modules, one vocabulary.

These read the source (``ast``), so they hold for code that no test happens to run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "emoclient"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, module: str) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` of every import in the file, wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.append((base, [alias.name for alias in node.names]))
    return found


def _edges(module: str) -> set[str]:
    """The emoclient modules ``module`` imports (a name that is a submodule counts as it)."""
    edges = set()
    for target, names in _imports(MODULES[module], module):
        if not target.startswith("emoclient"):
            continue
        subs = {f"{target}.{n}" for n in names} & MODULES.keys()
        edges |= subs or {target}
    edges.discard(module)
    return edges


def _cycle() -> list[str] | None:
    graph = {m: _edges(m) & MODULES.keys() for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    # Every import counts, also those under TYPE_CHECKING or inside functions.
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_cycle_finder_finds_one(tmp_path: Path) -> None:
    # Guard against a finder that can never fail: a known cycle is reported.
    MODULES["emoclient._fake_a"] = tmp_path / "a.py"
    MODULES["emoclient._fake_b"] = tmp_path / "b.py"
    (tmp_path / "a.py").write_text("from emoclient import _fake_b\n")
    (tmp_path / "b.py").write_text("import emoclient._fake_a\n")
    try:
        assert _cycle() == ["emoclient._fake_a", "emoclient._fake_b", "emoclient._fake_a"]
    finally:
        del MODULES["emoclient._fake_a"], MODULES["emoclient._fake_b"]


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = []
    for module, path in MODULES.items():
        for target, names in _imports(path, module):
            if not target.startswith("emoclient"):
                continue
            for name in names:
                dunder = name.startswith("__") and name.endswith("__")
                if name.startswith("_") and not dunder and f"{target}.{name}" not in MODULES:
                    offenders.append(f"{module}: from {target} import {name}")
    assert offenders == []


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def test_layers_point_one_way() -> None:
    # The core never imports the CLI or the emulator; the client wing never the batch half;
    # the emulator nothing of the core.
    front = ("emoclient._cli", "emoclient.emulator", "emoclient.__main__")
    entry_points = ("emoclient.__main__", "emoclient.emulator.__main__")
    rules: list[tuple[Callable[[str], bool], str]] = [
        (lambda m: not _within(m, front), "emoclient._cli"),
        (lambda m: not _within(m, front), "emoclient.emulator"),
        (lambda m: not _within(m, (*front, "emoclient._batch")), "emoclient._batch"),
    ]
    broken = []
    for module in MODULES:
        if module == "emoclient" or module in entry_points:
            continue
        for applies, forbidden in rules:
            if applies(module) and any(_within(e, (forbidden,)) for e in _edges(module)):
                broken.append(f"{module} imports {forbidden}")
        if _within(module, ("emoclient.emulator",)):
            core = {e for e in _edges(module) if not _within(e, ("emoclient.emulator",))}
            if core:
                broken.append(f"{module} imports {sorted(core)}")
    assert broken == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_500_lines(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_the_template_ids_are_declared_once_outside_the_emulator() -> None:
    from emoclient import DrivenId

    core = [p for p in PACKAGE.rglob("*.py") if "emulator" not in p.parts]
    text = "\n".join(p.read_text(encoding="utf-8") for p in core)
    for template in DrivenId:
        assert len(re.findall(rf"\b{template.value}\b", text)) == 1, template.value


def test_import_emoclient_loads_neither_sqlite_nor_the_batch_half() -> None:
    # Only what `import emoclient` adds counts (coverage, in CI, loads sqlite3 itself).
    code = (
        "import sys; before = set(sys.modules); import emoclient; "
        "print(sorted(m for m in set(sys.modules) - before if m == 'sqlite3' or "
        "m.split('.')[:2] in (['emoclient', '_batch'], ['emoclient', '_cli'], "
        "['emoclient', 'emulator'])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
    # ...and a batch name still works: it loads on first use.
    code = "import emoclient; emoclient.Batch; import sys; print('sqlite3' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"


def _readme_layout() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- layout -->", 2)[1]
    paths: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+\.py|\S+/)(\s|$)", line)
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = "".join(f for _, f in folders) + name
        if name.endswith("/"):
            folders.append((indent, name))
        else:
            paths.add(path)
    return paths


def test_readme_layout_lists_every_module() -> None:
    actual = {
        str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
    }
    assert _readme_layout() == actual
