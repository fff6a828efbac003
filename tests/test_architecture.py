"""The rules docs/architecture.md states, checked against the code (an AST scan: nothing is imported or run).

* ``guesser/`` imports ``trainer/`` only inside the CLI's training commands;
* ``guesser/tui/`` imports neither ``trainer`` nor ``torch``;
* only ``guesser/features.py`` computes STFTs or mel filter banks;
* only ``guesser/checkpoint.py`` opens safetensors files;
* only ``guesser/features.py`` resamples, with one function and one streaming class (the one resampler);
* no module of ``guesser/`` (or of ``trainer/``) imports itself back through others;
* the module table names every module there is, and nothing that is not there.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
PRODUCTION = ("guesser", "trainer", "benchmarks", "docs")  # every Python file that is not a test

# The CLI commands that train, evaluate or build caches: the only places the app may reach into trainer/.
TRAINING_COMMANDS = {"preprocess", "train_one", "train_multi", "train_list", "tune", "evaluate", "select", "report", "export"}

# What computes a spectrogram or mel filters in torch, torchaudio, librosa, scipy and numpy.
SPECTRAL = {"stft", "istft", "spectrogram", "melspectrogram", "MelSpectrogram", "Spectrogram", "MelScale",
            "InverseMelScale", "melscale_fbanks", "mel_filters", "fbank", "mel", "rfft", "rfftfreq"}
SIGNAL_LIBRARIES = {"torch", "torchaudio", "librosa", "scipy", "numpy"}


def python_files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (REPO / r).rglob("*.py") if "__snapshots__" not in p.parts)


def rel(p: Path) -> str:
    return p.relative_to(REPO).as_posix()


@lru_cache(maxsize=None)
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def imports(path: Path) -> list[tuple[str, ast.AST, list[ast.AST]]]:
    """(imported module, node, enclosing function/class nodes) for every import statement in ``path``."""
    out = []

    def walk(node: ast.AST, stack: list[ast.AST]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name, child, stack) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module, child, stack))
            inner = stack + [child] if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else stack
            walk(child, inner)

    walk(parse(path), [])
    return out


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_app_imports_the_trainer_only_in_the_clis_training_commands():
    found = []
    for path in python_files("guesser"):
        for module, node, stack in imports(path):
            if top(module) != "trainer":
                continue
            where = [n.name for n in stack]
            if rel(path) == "guesser/cli.py" and len(where) == 1 and where[0] in TRAINING_COMMANDS:
                continue
            found.append(f"{rel(path)}:{node.lineno} imports {module} (in {'.'.join(where) or 'the module'})")
    assert found == []


def test_the_tui_imports_neither_the_trainer_nor_torch():
    found = [f"{rel(path)}:{node.lineno} imports {module}"
             for path in python_files("guesser/tui")
             for module, node, _ in imports(path) if top(module) in ("trainer", "torch", "torchaudio")]
    assert found == []


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(path: Path) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (names for the type checker, never imported)."""
    out = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def import_graph(root: str) -> dict[str, set[str]]:
    """Which of ``root``'s modules each of its modules imports (at the top or inside a function alike;
    not what only the type checker reads)."""
    modules = {module_name(p): p for p in python_files(root)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        typing_only = type_checking_only(path)
        for module, node, _ in imports(path):
            if id(node) in typing_only:
                continue
            targets = [module]
            if isinstance(node, ast.ImportFrom):  # from guesser.personal import store: the module store
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            for t in targets:
                while t and t not in modules:  # guesser.checkpoint.ModelsIndex -> guesser.checkpoint
                    t = t.rpartition(".")[0]
                if t and t != name and top(t) == root:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("root", ["guesser", "trainer"])
def test_no_import_cycles(root):
    """No module imports one that (directly or through others) imports it back, lazily or not."""
    assert cycles(import_graph(root)) == []


def test_the_cycle_scan_sees_a_cycle():
    graph = import_graph("guesser")
    assert "guesser.checkpoint" in graph["guesser.ensemble"]  # the scan reads the imports
    graph["guesser.checkpoint"] = graph["guesser.checkpoint"] | {"guesser.ensemble"}
    assert any({"guesser.checkpoint", "guesser.ensemble"} <= set(group) for group in cycles(graph))


def spectral_uses(path: Path) -> list[str]:
    """``x.stft(…)``, ``torch.stft``, ``AF.melscale_fbanks``, ``from torchaudio.transforms import MelSpectrogram`` …"""
    tree = parse(path)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SPECTRAL:
            hits.append(f"{rel(path)}:{node.lineno} uses .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and top(node.module) in SIGNAL_LIBRARIES:
            hits += [f"{rel(path)}:{node.lineno} imports {a.name}" for a in node.names if a.name in SPECTRAL]
    hits += [f"{rel(path)}:{n.lineno} imports {m}" for m, n, _ in imports(path) if top(m) == "librosa"]
    return hits


def test_only_features_computes_stfts_or_mels():
    found = [hit for path in python_files(*PRODUCTION) if rel(path) != "guesser/features.py"
             for hit in spectral_uses(path)]
    assert found == []
    assert spectral_uses(REPO / "guesser" / "features.py")  # the scan does see them where they are


# What changes a signal's sample rate, in the libraries a Python audio project reaches for.
RESAMPLING = {"resample", "resample_poly", "Resample", "ResampleStream", "AudioResampler", "upfirdn", "resample_chunk"}
RESAMPLING_LIBRARIES = {"soxr", "samplerate", "resampy", "libsamplerate", "julius"}
NOT_RESAMPLERS = {
    # PyAV's AudioResampler turns decoded frames into planar float32 at the stream's own rate (rate=self.sample_rate):
    # a sample format and layout conversion, never a change of rate.
    "guesser/audio.py": {"AudioResampler", "resample"},
    # measures the resampler guesser used before (torchaudio's) against the one; scipy makes its test inputs
    "benchmarks/resampler.py": {"resample", "resample_poly", "old_resample"},
}


def resampling_uses(path: Path) -> list[str]:
    """Calls and imports of a resampler, and functions or classes named like one, in ``path``."""
    allowed = NOT_RESAMPLERS.get(rel(path), set())
    hits = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Attribute) and node.attr in RESAMPLING and node.attr not in allowed:
            hits.append(f"{rel(path)}:{node.lineno} uses .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            hits += [f"{rel(path)}:{node.lineno} imports {a.name}" for a in node.names
                     if a.name in RESAMPLING and a.name not in allowed and top(node.module) != "guesser"]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and "resampl" in node.name.lower() and node.name not in allowed:
            hits.append(f"{rel(path)}:{node.lineno} defines {node.name}")
    hits += [f"{rel(path)}:{n.lineno} imports {m}" for m, n, _ in imports(path) if top(m) in RESAMPLING_LIBRARIES]
    return hits


def test_there_is_one_resampler():
    """Files, streams, teach and preprocess resample through guesser.features alone: one function, one stream class."""
    found = [hit for path in python_files(*PRODUCTION) if rel(path) != "guesser/features.py"
             for hit in resampling_uses(path)]
    assert found == []
    tree = parse(REPO / "guesser" / "features.py")
    defined = sorted(n.name for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and "resampl" in n.name.lower())
    assert defined == ["StreamResampler", "resample"]
    libraries = {m for m, _, _ in imports(REPO / "guesser" / "features.py") if top(m) in RESAMPLING_LIBRARIES}
    assert libraries == {"soxr"}  # and the scan does see it where it is


def test_only_the_checkpoint_module_opens_safetensors():
    found = [f"{rel(path)}:{node.lineno} imports {module}"
             for path in python_files(*PRODUCTION) if rel(path) != "guesser/checkpoint.py"
             for module, node, _ in imports(path) if top(module) == "safetensors"]
    assert found == []


def documented_paths() -> set[str]:
    """Every ``guesser/…`` or ``trainer/…`` path in the first column of the doc's module table."""
    text = DOC.read_text()
    table = text[text.index("## Modules"):]
    paths = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            paths |= set(re.findall(r"`((?:guesser|trainer)/[^`]*)`", first))
    return paths


def test_the_module_table_names_every_module_and_only_real_ones():
    documented = documented_paths()
    for p in documented:
        matches = list(REPO.glob(p.rstrip("/"))) if "*" in p else [REPO / p.rstrip("/")]
        assert all(m.exists() for m in matches) and matches, f"docs/architecture.md names {p}, which does not exist"
    folders = {p.rstrip("/") for p in documented if p.endswith("/")}
    missing = []
    for path in python_files("guesser", "trainer"):
        name = rel(path)
        if path.name in ("__init__.py", "__main__.py") or any(name.startswith(f + "/") for f in folders):
            continue
        if name not in documented:
            missing.append(name)
    assert missing == [], "modules missing from docs/architecture.md's table"


@pytest.mark.parametrize("name", ["guesser.scoring.windows", "guesser.scoring.model_probs", "guesser.scoring.fuse",
                                  "guesser.features.log_mel", "guesser.recorder.Recorder.windows",
                                  "trainer.inference.predict_split", "trainer.cache_build.build_cache"])
def test_the_flows_name_functions_that_exist(name):
    """What the flow diagrams name is in the code (a renamed function makes the doc fail here)."""
    import importlib

    assert name in DOC.read_text()
    module, *attrs = name.split(".")
    obj = importlib.import_module(module)
    for i, a in enumerate(attrs):
        try:
            obj = getattr(obj, a)
        except AttributeError:
            obj = importlib.import_module(".".join([module, *attrs[: i + 1]]))
    assert callable(obj)


def diagram_names() -> list[str]:
    """Every dotted ``guesser.…``/``trainer.…`` name in the doc's flow diagrams (its code blocks)."""
    blocks = DOC.read_text().split("```")[1::2]
    found = {m.rstrip(".") for b in blocks for m in re.findall(r"\b(?:guesser|trainer)(?:\.[A-Za-z_]\w*)+", b)}
    return sorted(found)


def resolve(name: str):
    """The module, class or function ``name`` stands for; AttributeError/ImportError if it names nothing."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for a in parts[i:]:
            obj = getattr(obj, a)
        return obj
    raise ImportError(name)


def test_every_name_in_the_flow_diagrams_exists():
    """A module, class or function renamed or removed makes the doc's diagrams fail here."""
    names = diagram_names()
    assert {"guesser.stream.predict_source", "guesser.audio.open_audio", "trainer.run.prepare"} <= set(names)
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert missing == [], "docs/architecture.md's diagrams name what is not in the code"


def test_every_package_is_listed_for_the_wheel():
    """A package missing from pyproject's ``packages`` works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("guesser", "trainer")
             for p in (REPO / top).rglob("__init__.py")}
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
