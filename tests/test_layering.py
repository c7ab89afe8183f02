"""The import graph of tmbench runs one way (DESIGN section 1): leaf code (decoders, metrics,
models, tm) reaches the rest of tmbench only through the contract (``tmbench.types``), the
support modules below, the building blocks below models (backbones, data) and its own package;
the contract imports nothing from tmbench; support modules import only support; and no two
files import each other, directly or round a circle. Every import counts: module level,
inside functions, and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tmbench"

CONTRACT = "tmbench.types"
# below every leaf: plain helpers that know nothing of suites, names or models' kinds
SUPPORT = {
    "tmbench.fileio",  # atomic writes, hashes
    "tmbench.cache",  # content-addressed arrays on disk
    "tmbench.checkpoint",  # tensors and JSON of a model folder
    "tmbench._quiet",  # silencing third-party stderr
    "tmbench.params",  # parameter schemas from signatures
    "tmbench.scoring",  # token-level scoring of text
    "tmbench.roofline",  # machine peaks -> share of the roofline (throughput)
    "tmbench.versions",  # installed versions of distributions
}
BUILDING_BLOCKS = ("tmbench.backbones", "tmbench.data")  # below models: networks, corpora
LEAVES = ("tmbench.decoders", "tmbench.metrics", "tmbench.models", "tmbench.tm")

# Leaf-to-leaf edges that stay, each for its reason (keep this list short).
ALLOWED = {
    # the TM model is a model: loaders build MaturationModel like any other architecture
    ("tmbench.models.native_ar", "tmbench.tm.model"),
    ("tmbench.models.shipped", "tmbench.tm.model"),
    # the maturation decoder's source is part of TM run keys: its imports stay as they are
    ("tmbench.tm.decode", "tmbench.decoders._loop"),
    ("tmbench.tm.decode", "tmbench.models.base"),
    # the TM training objective reads its own section of the training config
    ("tmbench.tm.objective", "tmbench.training.config"),
}

# the wrong-way dependencies removed from the leaves; none may come back
REMOVED = [
    ("tmbench.metrics", "tmbench.models"),
    ("tmbench.metrics", "tmbench.registry"),
    ("tmbench.metrics", "tmbench.lm_eval_adapter"),
    ("tmbench.decoders", "tmbench.plan"),
    ("tmbench.decoders", "tmbench.registry"),
    ("tmbench.models", "tmbench.training"),
    ("tmbench.models", "tmbench.registry"),
    ("tmbench.types", "tmbench.models"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The tmbench modules ``name`` imports anywhere in its file (``from pkg import mod`` is
    the module ``pkg.mod`` when it is one, else ``pkg``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    return {m for m in out if m == "tmbench" or m.startswith("tmbench.")}


GRAPH = {name: imports(name) for name in MODULES}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def leaf_of(name: str) -> str | None:
    return next((p for p in LEAVES if within(name, p)), None)


def test_the_graph_is_read():
    assert len(MODULES) > 50
    assert "tmbench.types" in GRAPH["tmbench.decoders.greedy"]
    # function-level imports count
    assert "tmbench.models.shipped" in GRAPH["tmbench.models.build"]


def test_the_contract_imports_nothing_from_tmbench():
    assert GRAPH[CONTRACT] == set()


def test_support_modules_import_only_support():
    for name in SUPPORT:
        assert name in MODULES, f"support module {name} does not exist"
        bad = GRAPH[name] - SUPPORT - {CONTRACT}
        assert not bad, f"support module {name} imports {sorted(bad)}"


def test_leaf_code_imports_only_the_contract_support_and_its_own_package():
    bad = []
    for name, deps in GRAPH.items():
        own = leaf_of(name)
        if own is None:
            continue
        for dep in deps:
            ok = (dep == CONTRACT or dep in SUPPORT or within(dep, own)
                  or any(within(dep, b) for b in BUILDING_BLOCKS) or (name, dep) in ALLOWED)
            if not ok:
                bad.append(f"{name} -> {dep}")
    assert not bad, "leaf code reaching up or sideways:\n" + "\n".join(sorted(bad))


def test_the_removed_wrong_way_dependencies_stay_removed():
    back = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps
            for src, dst in REMOVED if within(a, src) and within(b, dst)]
    assert not back, "\n".join(sorted(back))


def test_building_blocks_stay_below_the_leaves():
    bad = [f"{a} -> {b}" for a, deps in GRAPH.items() if any(within(a, p) for p in BUILDING_BLOCKS)
           for b in deps if leaf_of(b) or not (b in SUPPORT or b == CONTRACT
                                               or any(within(b, p) for p in BUILDING_BLOCKS))]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle_between_files():
    """Tarjan's strongly connected components over every import; the package ``tmbench``
    itself (its ``__version__``) is left out, since every file may read it."""
    graph = {a: {b for b in deps if b in MODULES and b != "tmbench" and b != a}
             for a, deps in GRAPH.items() if a != "tmbench"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
