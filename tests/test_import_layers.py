"""Imports go one way (issue 17): `assets` -> `pipeline` -> `models`, no module import cycle, and each name is
imported from the module that defines it.

Every module under `pipeline/`, `assets/` and `models/` is parsed with the standard library's `ast`
(never imported): each `import x.y` and `from x import y`, at module level or inside a function,
relative imports resolved against the module's package. `from package import name` counts as an
import of `package.name` when that is a module, else of `package` (its `__init__`).

Layers are ranked by `LAYER_RANK` (the longest matching dotted prefix wins); a module may import
only modules of its own rank or lower. Inside `pipeline/` the ranks are the stage packages in the
order of the asset graph (core < synthetic < curation < motion < tokenizer < mvdit < animation <
evaluation): a later stage imports earlier ones, never back. Every module under `pipeline/` but the
package itself belongs to one stage package: no loose module between the stages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "pipeline", "assets")

# Lower rank = lower layer. A module may import a module whose rank is <= its own.
LAYER_RANK: dict[str, int] = {
    "models": 0,
    "pipeline": 1,              # pipeline/__init__ only
    "pipeline.core": 2,         # settings, tables, video I/O, progress, Ray, checkpoint files
    "pipeline.synthetic": 3,    # the generated sample (motions, renders) that the demo curates
    "pipeline.curation": 4,     # App. B: videos -> shots -> poses -> sub-clips -> scores -> motion_video
    "pipeline.motion": 5,       # motion capture import, camera placement, training windows
    "pipeline.tokenizer": 6,    # 4DMoT (Sec. 3.1)
    "pipeline.mvdit": 7,        # MV-DiT (Sec. 3.2)
    "pipeline.animation": 8,    # sampling pipelines and the animate CLI (Sec. 3.3)
    "pipeline.evaluation": 9,   # benchmarks and metrics (Sec. 4)
    "assets": 10,
}


# ---------------------------------------------------------------------------- the checker

def collect_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under each package (a package is its __init__)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from <level dots><target> import ...` written in `module`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ([target] if target else []))


def module_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that `module` (source `path`) imports anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = (_resolve_relative(module, is_package, node.level, node.module)
                      if node.level else node.module)
            if source is None:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif source in known:
                    found.add(source)
    found.discard(module)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = collect_modules(root, packages)
    known = set(modules)
    return {name: module_imports(name, path, known) for name, path in modules.items()}


def layer_rank(module: str, ranks: dict[str, int] = LAYER_RANK) -> int:
    """The rank of the longest prefix of `module` in `ranks`."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        if prefix in ranks:
            return ranks[prefix]
    raise KeyError(f"{module} is in no layer of {sorted(ranks)}")


def upward_imports(graph: dict[str, set[str]], ranks: dict[str, int] = LAYER_RANK) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one."""
    return sorted((source, target) for source, targets in graph.items() for target in targets
                  if layer_rank(target, ranks) > layer_rank(source, ranks))


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, each as modules in import order with the first repeated at the end: for every
    module of a strongly connected component of more than one module (Tarjan's algorithm), the
    shortest cycle through it, rotated to start at its smallest name, without repeats."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    cycles = set()
    for component in components:
        for start in component:
            cycle = _cycle_through(graph, set(component), start)[:-1]
            first = cycle.index(min(cycle))
            cycles.add(tuple(cycle[first:] + cycle[:first] + [cycle[first]]))
    return sorted(map(list, cycles))


def _cycle_through(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest cycle from `start` back to itself, staying inside the component `members`."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return list(reversed(path)) + [start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{sorted(members)} is not strongly connected")


def module_names(path: Path) -> set[str]:
    """Names a module defines itself at module level (def, class, assignment; inside `if` / `try` too), not the
    ones it imports."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    return names


def borrowed_names(root: Path, packages: tuple[str, ...] = PACKAGES,
                   readers: tuple[str, ...] = PACKAGES) -> list[tuple[str, str, str]]:
    """(importing file, module, name) for each `from module import name` (absolute, in a file under `readers`)
    where `module` is a project module (not a package `__init__`, which re-exports on purpose) that neither
    defines `name` nor has it as a submodule: the name only passes through, and its home is elsewhere."""
    modules = collect_modules(root, packages)
    defined = {name: module_names(path) for name, path in modules.items() if path.name != "__init__.py"}
    found = []
    for reader in readers:
        for path in sorted((root / reader).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.ImportFrom) or node.level or node.module not in defined:
                    continue
                for alias in node.names:
                    if alias.name not in defined[node.module] and f"{node.module}.{alias.name}" not in modules:
                        found.append((str(path.relative_to(root)), node.module, alias.name))
    return sorted(found)


# ---------------------------------------------------------------------------- the repository

def test_no_upward_import_across_layers():
    pairs = upward_imports(import_graph(REPO_ROOT))
    assert not pairs, "upward imports (importer -> imported):\n" + "\n".join(
        f"  {source} (rank {layer_rank(source)}) -> {target} (rank {layer_rank(target)})"
        for source, target in pairs)


def test_no_import_cycle():
    cycles = import_cycles(import_graph(REPO_ROOT))
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def test_graph_sees_the_repository():
    """The checker finds the modules and edges it should (so the two tests above can't pass on nothing)."""
    graph = import_graph(REPO_ROOT)
    assert {"pipeline.mvdit.stage", "pipeline.mvdit.factory", "models.mvdit.cogvideox",
            "assets.definitions"} <= set(graph)
    assert "pipeline.tokenizer.stage" in graph["pipeline.mvdit.stage"]          # module level
    assert "pipeline.mvdit.train" in graph["pipeline.mvdit.stage"]              # in a function
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200


def test_names_are_imported_from_their_home():
    """Each helper has one home (issue 17): no module, test or benchmark imports a name from a module that only
    imports it itself."""
    borrowed = borrowed_names(REPO_ROOT, readers=PACKAGES + ("tests", "bench"))
    assert not borrowed, "names imported from a module that does not define them:\n" + "\n".join(
        f"  {where}: {name} from {module}" for where, module, name in borrowed)


def test_every_pipeline_module_is_in_a_stage_package():
    """The tree shows the graph: each module sits in core, synthetic or one stage's package."""
    loose = [name for name in import_graph(REPO_ROOT) if name.startswith("pipeline.")
             and layer_rank(name) == LAYER_RANK["pipeline"]]
    assert not loose, f"modules outside the stage packages of LAYER_RANK: {loose}"


# ---------------------------------------------------------------------------- the checker itself

THREE_LAYERS = {"models": 0, "pipeline": 1, "assets": 2}  # the synthetic trees below: one layer per package

def _write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


CLEAN_TREE = {
    "models/__init__.py": "",
    "models/net.py": "import torch\n",
    "pipeline/__init__.py": "",
    "pipeline/core/__init__.py": "",
    "pipeline/core/io.py": "from models.net import *\n",
    "pipeline/train.py": "from .core import io\nfrom models import net\n",
    "pipeline/stage.py": "def run():\n    from pipeline.train import x\n",
    "assets/__init__.py": "",
    "assets/defs.py": "import pipeline.stage\nfrom pipeline.core import io as _io\n",
}


def test_checker_resolves_every_import_form(tmp_path):
    _write_tree(tmp_path, CLEAN_TREE)
    graph = import_graph(tmp_path)
    assert graph["pipeline.train"] == {"pipeline.core.io", "models.net"}     # relative + from-package
    assert graph["pipeline.stage"] == {"pipeline.train"}                     # function-level, from-module
    assert graph["assets.defs"] == {"pipeline.stage", "pipeline.core.io"}   # `import a.b`
    assert graph["models.net"] == set()                                      # third-party ignored
    assert upward_imports(graph, THREE_LAYERS) == [] and import_cycles(graph) == []


def test_checker_catches_a_cycle_and_an_upward_import(tmp_path):
    tree = dict(CLEAN_TREE)
    tree["models/net.py"] = "def f():\n    from ..pipeline import stage\n"      # upward, in a function
    tree["pipeline/core/io.py"] = "from ..stage import run\n"                   # closes a 3-cycle
    tree["pipeline/train.py"] = "from .core import io\n"
    tree["pipeline/report.py"] = "from assets.defs import table\n"              # upward, no cycle
    _write_tree(tmp_path, tree)
    graph = import_graph(tmp_path)
    assert upward_imports(graph, THREE_LAYERS) == [("models.net", "pipeline.stage"), ("pipeline.report", "assets.defs")]
    assert import_cycles(graph) == [["pipeline.core.io", "pipeline.stage", "pipeline.train", "pipeline.core.io"]]


def test_checker_reports_cycle_order(tmp_path):
    _write_tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/a.py": "from pipeline import b\n",
        "pipeline/b.py": "def g():\n    import pipeline.c\n",
        "pipeline/c.py": "from . import a\n",
        "pipeline/d.py": "from pipeline import a\n",
    })
    assert import_cycles(import_graph(tmp_path, ("pipeline",))) == [
        ["pipeline.a", "pipeline.b", "pipeline.c", "pipeline.a"]]


def test_layer_table_takes_the_longest_prefix():
    ranks = {"models": 0, "pipeline": 1, "pipeline.core": 1, "pipeline.mvdit": 2, "assets": 3}
    graph = {"pipeline.core.io": {"pipeline.mvdit.loop"}, "pipeline.mvdit.loop": {"pipeline.core.io"}}
    assert upward_imports(graph, ranks) == [("pipeline.core.io", "pipeline.mvdit.loop")]
    with pytest.raises(KeyError, match="elsewhere"):
        layer_rank("elsewhere.x", ranks)


def test_borrowed_names_are_found(tmp_path):
    _write_tree(tmp_path, {
        "pipeline/__init__.py": "from pipeline.home import helper\n",
        "pipeline/home.py": "def helper():\n    pass\nif True:\n    FLAG = 1\n",
        "pipeline/user.py": "from pipeline.home import helper\n\ndef use():\n    return helper()\n",
        "pipeline/other.py": "from pipeline.user import helper\nfrom pipeline.home import FLAG\n"
                             "from pipeline import helper as h\n",
    })
    assert module_names(tmp_path / "pipeline/home.py") == {"helper", "FLAG"}
    assert borrowed_names(tmp_path, ("pipeline",), ("pipeline",)) == [("pipeline/other.py", "pipeline.user", "helper")]
