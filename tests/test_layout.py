"""The package's shape: one module per concern, an acyclic import graph, no global state
touched (matplotlib's backend), no TensorFlow for the ABC tools."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "musicseq"


def _imports() -> dict[str, set[str]]:
    """module -> musicseq modules it imports anywhere (top level or inside functions)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("musicseq")
            ):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("musicseq"))
        graph[name] = found
    return {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}


def test_import_graph_is_acyclic():
    graph = _imports()
    # A package imports its own submodules to re-export them: not a cycle between concerns.
    graph = {n: {m for m in deps if not m.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_only_training_imports_the_training_module():
    graph = _imports()
    users = sorted(n for n, deps in graph.items() if "musicseq.train" in deps)
    assert users == ["musicseq.cli"], users  # loading a model goes through musicseq.modeldir


def test_no_global_matplotlib_backend_or_pyplot_in_the_library():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text, path


def test_notebook_backend_survives_plots(tmp_path, data_dir):
    import matplotlib

    matplotlib.use("svg")  # stands in for a notebook's inline backend
    from musicseq import api
    from musicseq.visualize import save_history_plot

    figure = api.load_tunes(data_dir / "three.abc")[0].piano_roll()
    save_history_plot({"loss": [2.0, 1.5], "val_loss": [2.1, 1.7]}, tmp_path / "loss.png")
    assert matplotlib.get_backend() == "svg" and figure.axes
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_abc_tools_do_not_import_tensorflow():
    code = (
        "import sys, musicseq, musicseq.notation.checker, musicseq.notation.form, "
        "musicseq.notation.grammar, musicseq.corpus, musicseq.config; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=60
    )
    assert done.stdout.split() == ["False", "False"], done.stderr
