"""The package's shape, checked from its source (issue 13): imports only go down the layers
of docs/design.md §1, no import circles, function-level imports only where they are meant
to be lazy, no module over the size limit, and `import dartsfast` never loads Triton."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dartsfast.testing import SUBPROCESS_TIMEOUT_S

PACKAGE = Path(__file__).resolve().parent.parent / "dartsfast"

# Low to high; a module may import its own layer or a lower one.  A dotted name matches
# itself and everything under it; the longest matching prefix decides.
LAYERS = [
    ["dartsfast._io", "dartsfast.rundir", "dartsfast._validate", "dartsfast._ext", "dartsfast.backend",
     "dartsfast.runtime", "dartsfast.timing", "dartsfast.records", "dartsfast.viz", "dartsfast.cell_plots",
     "dartsfast.config",
     "dartsfast._triton"],
    ["dartsfast.ops"],
    ["dartsfast.testing"],
    ["dartsfast.nn"],
    ["dartsfast.data"],
    ["dartsfast.search"],
    ["dartsfast.train"],
    ["dartsfast.profiling"],
    ["dartsfast.evaluation"],
    ["dartsfast.bench"],
    ["dartsfast.cli", "dartsfast.__main__"],
]
# Imported inside functions on purpose: heavy or optional, and never loaded by `import dartsfast`.
LAZY_OK = ("triton", "matplotlib", "tqdm", "sklearn", "torchvision")
# The compiled extension is optional too, and loading it pulls in the CUDA runtime libraries.
LAZY_OK_MODULES = ("dartsfast._ext",)
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import in ``path``; a
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    module, is_package = _module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(n) for n in tree.body}
    for n in tree.body:  # `if TYPE_CHECKING:` / try-blocks at module level still run at import
        if isinstance(n, (ast.If, ast.Try)):
            top_level |= {id(m) for m in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            names = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names]
        else:
            continue
        found += [(name, id(node) in top_level, node.lineno) for name in names]
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    names = [_module_name(p) for p in _sources()]
    unplaced = [m for m in names if m != "dartsfast" and _layer(m) is None]
    assert not unplaced, f"add these modules to LAYERS: {unplaced}"


def test_imports_only_go_down():
    upward = []
    for path in _sources():
        module = _module_name(path)
        if module == "dartsfast":
            continue  # the package root re-exports from below
        for target, _top, line in _imports(path):
            if not target.startswith("dartsfast") or target == "dartsfast":
                continue
            if _layer(target) is not None and _layer(target) > _layer(module):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_circles():
    graph: dict[str, set[str]] = {}
    for path in _sources():
        module = _module_name(path)
        deps = graph.setdefault(module, set())
        for target, _top, _line in _imports(path):
            if target.startswith("dartsfast.") and _is_module(target) and target != module:
                deps.add(target)
        # importing a submodule runs its package's __init__ first, but that is not an
        # edge of this module's own making; circles through __init__ re-exports are
        # caught by the edges the __init__ itself writes.
    cycle = _find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _loads_triton_at_import(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    path = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    return any(t.split(".")[0] == "triton" and top for t, top, _ in _imports(path))


def test_function_level_imports_only_where_lazy_on_purpose():
    """Outside the CLI, an import inside a function either loads a heavy optional dependency
    (or a kernel module that imports Triton) or hides a circle — and circles are bugs."""
    hidden = []
    for path in _sources():
        module = _module_name(path)
        if _layer(module) == len(LAYERS) - 1:
            continue  # the CLI imports each subcommand's machinery when that subcommand runs
        for target, top, line in _imports(path):
            if top or target.split(".")[0] in LAZY_OK or target.split(".")[0] != "dartsfast":
                continue
            if target in LAZY_OK_MODULES:
                continue
            if _is_module(target) and _loads_triton_at_import(target):
                continue
            hidden.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} inside a function")
    assert not hidden, "\n".join(dict.fromkeys(hidden))


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in _sources()
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


@pytest.mark.parametrize("statement", [
    "import dartsfast",
    "import dartsfast.search, dartsfast.nn, dartsfast.profiling, dartsfast.cli",
])
def test_importing_dartsfast_does_not_load_triton(statement):
    code = f"import sys; {statement}; loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'triton'); " \
           "print(len(loaded), 'triton modules, e.g.', loaded[:3]); sys.exit(1 if loaded else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, f"{statement!r} loaded triton: {done.stdout}{done.stderr}"
