"""The house's shape: inference never imports the training loop, no module imports in a circle,
the config imports no other module, and functions and the training loop stay short.

Read from the source (every ``import`` statement, at module level or inside a function), so a lazy
import cannot hide an edge.
"""

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "asr"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``asr`` modules ``path`` imports (``from asr.x import y`` counts ``asr.x``, or
    ``asr.x.y`` when that is a module)."""
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "asr"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asr"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) - {_module(p)} for p in PACKAGE.rglob("*.py")}


def test_only_the_cli_enrolment_and_the_training_benchmark_import_the_training_loop():
    """``asr train`` and ``asr enrol`` (a fine-tuning) run it; ``asr serve`` runs ``asr enrol``
    as a child process, so the server never imports it."""
    importers = {m for m, deps in _graph().items() if "asr.train" in deps}
    for bench in (ROOT / "benchmarks").glob("*.py"):
        if "asr.train" in _imports(bench):
            importers.add(f"benchmarks/{bench.name}")
    assert "asr.cli" in importers <= {"asr.cli", "asr.enrol", "benchmarks/train_throughput.py"}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == "asr" or dep not in graph:  # the package's __init__ re-exports only
                continue
            assert state.get(dep) != 1, " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_nothing_imports_the_cli():
    assert {m for m, deps in _graph().items() if "asr.cli" in deps} <= {"asr.__main__"}


def test_the_config_imports_no_other_asr_module():
    """The schema is the bottom of the house: every module may read it, it reads none of them."""
    assert _graph()["asr.config"] == set()


def test_inference_never_reaches_the_training_loop():
    """Evaluation, transcription, decoding and serving import nothing that imports training code,
    directly or through another module."""
    graph = _graph()
    training = {"asr.train", "asr.train_setup", "asr.train_state", "asr.surgery", "asr.augment"}
    for start in ("asr.evaluate", "asr.transcribe", "asr.decode", "asr.serve", "asr.lm_tune"):
        seen, todo = set(), [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        assert not seen & training, (start, sorted(seen & training))


MAX_FUNCTION_LINES = 80  # a longer function holds more than one step: name its parts
MAX_TRAIN_LINES = 450  # the training loop reads as named steps; set-up and state live beside it


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                lines = node.end_lineno - first + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert not long, long


def test_the_training_loop_stays_short():
    lines = len((PACKAGE / "train.py").read_text().splitlines())
    assert lines < MAX_TRAIN_LINES, f"asr/train.py: {lines} lines"
