"""The house rules of docs/architecture.md, checked: arrows point down, no import cycles, the widget, app/ and
store/ stay torch-free at import, and the types crossing the app/ seam are typed (no ``object``, no dict of unknown
keys)."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_xt"

#: package -> packages of napari_xt it must never import (at any depth, lazily or not)
FORBIDDEN = {
    "engine": {"train", "app", "widget", "cli"},
    "model": {"engine", "train", "app", "widget", "cli", "export"},
    "io": {"engine", "model", "train", "app", "widget", "cli", "export"},
    "train": {"app", "widget", "cli"},
    "export": {"app", "widget", "cli", "train"},
    # the result store: torch-free, below everything that reads it (it rebuilds a plan through engine.store_plan)
    "store": {"model", "io", "train", "export", "app", "widget", "cli"},
    "app": {"widget", "cli"},
    "widget": {"cli"},
}


def _project_imports(path: Path) -> set[str]:
    """The napari_xt sub-packages a module imports (relative or absolute), anywhere in the file."""
    package = path.relative_to(SRC).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts] if node.module else [base + [a.name] for a in node.names]
            elif node.module and node.module.startswith("napari_xt."):
                names = [node.module.split(".")[1:]]
            else:
                continue
            found |= {p[0] for p in names if p}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("napari_xt.")}
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_arrows_point_down(package):
    files = sorted((SRC / package).rglob("*.py"))
    assert files
    bad = {str(p.relative_to(SRC)): sorted(_project_imports(p) & FORBIDDEN[package]) for p in files}
    assert not {k: v for k, v in bad.items() if v}


def _module_name(path: Path) -> str:
    parts = ("napari_xt", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (never executed: they cannot close a cycle)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the napari_xt modules it imports, anywhere in the file (top level or inside a function; not under
    ``TYPE_CHECKING``). ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of
    ``pkg`` (its ``__init__``)."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


#: Cycles known and owned by work in progress elsewhere (issue 22 found them; each entry names who breaks it). The
#: test fails when a new cycle appears and when a listed one is gone (then delete its entry).
KNOWN_CYCLES: list[list[str]] = []


def test_the_import_graph_sees_lazy_imports():
    graph = import_graph()
    assert "napari_xt.engine.options" in graph["napari_xt.engine.plan"]
    assert "napari_xt.app.heatmap" in graph["napari_xt._store_reader"]  # imported inside a function
    assert "napari_xt.engine.plan" not in graph["napari_xt.engine.reader"]  # under TYPE_CHECKING only


def test_no_import_cycles():
    """No module of src/ imports, at any depth and lazily or not, a module that imports it back."""
    assert import_cycles(import_graph()) == KNOWN_CYCLES


def test_app_widget_and_store_import_without_torch():
    """Import every app/, widget/ and store/ module (and the error types) in a fresh process: torch must stay out."""
    files = [p for pkg in ("app", "widget", "store") for p in (SRC / pkg).glob("*.py") if p.stem != "__init__"]
    modules = sorted(f"napari_xt.{p.parent.name}.{p.stem}" for p in files)
    code = ("import importlib, sys\n"
            # the plan and a store's plan rebuilt from its metadata: the napari reader draws a stored heat map with
            # them on the main thread; training's options and events: the Fine-tune tab and the CLI's parser
            f"for m in {modules!r} + ['napari_xt.errors', 'napari_xt.engine.options', 'napari_xt.engine.plan',\n"
            "          'napari_xt.engine.store_plan', 'napari_xt.tiling', 'napari_xt.train.options',\n"
            "          'napari_xt.train.events']:\n"
            "    importlib.import_module(m)\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("module", ["napari_xt.train.options", "napari_xt.train.events", "napari_xt.app.training"])
def test_training_options_and_events_load_no_torch(module):
    """Alone in a fresh process (not after other modules that might have loaded it lazily): ``TrainOptions``, the
    training events and the driver's face load without torch, though ``napari_xt.train`` is the torch package."""
    code = (f"import importlib, sys\nimportlib.import_module({module!r})\n"
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _seam_types():
    from napari_xt.app import events, request

    union = typing.get_args(events.RunEvent)
    return [request.PredictRequest, request.PlanOptions, request.RunOptions, events.RunSummary, events.Detections,
            events.ScoreLayout, *union]


def test_seam_types_are_typed():
    """No field of the request/event types is ``object``/``Any`` or a dict keyed by free-form strings."""
    assert len(_seam_types()) >= 10
    for cls in _seam_types():
        for f in dataclasses.fields(cls):
            text = str(f.type).replace(" ", "")
            assert text not in ("object", "Any", "dict", "typing.Any"), (cls.__name__, f.name, text)
            assert "dict[str,object]" not in text and "dict[str,Any]" not in text, (cls.__name__, f.name, text)
            assert "object" not in text.split("|"), (cls.__name__, f.name, text)


ANNOTATED_PACKAGES = ("app", "engine", "model", "io")


def _unannotated(path: Path) -> list[str]:
    """Public functions and public methods of public classes lacking an argument or return annotation."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing = []

    def check(fn: ast.FunctionDef | ast.AsyncFunctionDef, owner: str = "") -> None:
        if fn.name.startswith("_") and fn.name != "__init__":
            return
        args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
        if owner and args and args[0].arg in ("self", "cls"):
            args = args[1:]
        extra = [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
        bad = [a.arg for a in [*args, *extra] if a.annotation is None]
        if fn.returns is None and fn.name != "__init__":
            bad.append("return")
        if bad:
            missing.append(f"{path.relative_to(SRC)}:{fn.lineno} {owner}{fn.name}({', '.join(bad)})")

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            check(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    check(item, f"{node.name}.")
    return missing


@pytest.mark.parametrize("package", ANNOTATED_PACKAGES)
def test_public_functions_are_annotated(package):
    files = [p for p in sorted((SRC / package).rglob("*.py")) if not p.name.startswith("_") or p.name == "__init__.py"]
    missing = [m for p in files for m in _unannotated(p)]
    assert not missing, "\n".join(missing)
