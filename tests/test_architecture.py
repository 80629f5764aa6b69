"""The house rules the package keeps: no import cycles between modules nor between the package's
parts (`vae_edge.X`, a subpackage or a top-level module), each format and mode name defined once,
a TensorFlow-free runtime, and Keras finding the VAE class after a plain `import vae_edge`."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vae_edge.registry import APPS, FORMATS, MODES

PACKAGE = Path(__file__).resolve().parent.parent / "vae_edge"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every vae_edge module's imports of other vae_edge modules, function-level imports included;
    `from a.b import c` counts as importing `a.b.c` where that is a module, else `a.b`."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                edges.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    return next((cycle for node in sorted(graph) if node not in state and (cycle := visit(node))), None)


def test_no_import_cycles_counting_imports_inside_functions():
    graph = import_graph()
    assert len(graph) > 40 and "vae_edge.runtime.edge" in graph["vae_edge.runtime"]  # the graph is really read
    assert find_cycle(graph) is None, find_cycle(graph)


def parts_of(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to parts: `vae_edge.export.tflite` counts as `vae_edge.export`."""
    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    return parts


def test_parts_only_import_downward():
    """A layer never reaches back up: no cycle between parts, counting imports inside functions."""
    parts = parts_of(import_graph())
    assert {"vae_edge.runtime", "vae_edge.export", "vae_edge.train", "vae_edge.bench"} <= set(parts)
    assert "vae_edge.runtime" in parts["vae_edge.export"]  # the part graph is really read
    assert find_cycle(parts) is None, " -> ".join(find_cycle(parts))


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_a_cycle_between_parts_is_found_even_when_the_modules_have_none():
    modules = {"vae_edge.runtime.edge": {"vae_edge.bench.results"}, "vae_edge.bench.results": set(),
               "vae_edge.bench.harness": {"vae_edge.runtime.engines"}, "vae_edge.runtime.engines": set()}
    assert find_cycle(modules) is None
    assert find_cycle(parts_of(modules)) == ["vae_edge.bench", "vae_edge.runtime", "vae_edge.bench"]


# Names that are also something else: a numpy dtype, a Python package, onnxruntime-web's folder.
ALSO_OTHER_THINGS = {"float32", "int8", "onnx", "ort"}


@pytest.mark.parametrize("name", [*MODES, *FORMATS, *APPS])
def test_each_mode_and_format_name_is_spelled_in_one_source_file(name):
    """Quoted anywhere outside the registry, or for the ambiguous names, quoted as a format, mode or backend."""
    quoted = rf"""["']{re.escape(name)}["']"""
    pattern = re.compile(rf"(format|mode|backend|graph)\W{{1,6}}{quoted}" if name in ALSO_OTHER_THINGS else quoted)
    spelled = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))
    assert spelled == (["registry.py"] if name not in ALSO_OTHER_THINGS else []), spelled


def test_the_runtime_imports_no_tensorflow_or_keras():
    code = ("import sys, vae_edge.runtime, vae_edge.cli.runtime; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.slow
def test_import_vae_edge_lets_keras_load_the_model(trained_run):
    code = ("import vae_edge, keras; model = keras.models.load_model(%r); print(type(model).__module__, type(model).__name__)"
            % str(trained_run / "model.keras"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split()[-2:] == ["vae_edge.model.vae", "VAE"]
