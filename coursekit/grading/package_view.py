"""The copy of ``coursekit`` that a sandbox sees: the installed package without the answers.

Every graded function has a reference in ``coursekit`` (``token_nll`` in
:mod:`coursekit.losses.nll`, say), and a student process that can import it,
or read its file, holds the answer key. So the sandbox never sees the
installed package. It sees a *view* built per assignment from three rules:

1. **withheld**: every module that defines a function the assignment grades is
   replaced by a module of the same name whose public names are
   :func:`~coursekit.grading.withheld.tripwire` stand-ins; calling one ends the
   graded call with the status ``withheld`` and the question earns nothing;
2. **unavailable**: every module that imports a withheld one, directly or
   through others, is replaced by a module whose import raises
   :class:`~coursekit.grading.withheld.NotAvailable`, saying which withheld
   module it needs (with the stand-ins in place it would compute nothing, and
   an honest answer that used it would count as using the reference);
3. **kept**: every other module, copied as it is, so that an answer may use
   what it may use in Jupyter (``coursekit.train`` in a3, say).

A package's ``__init__.py`` drops its re-exports from unavailable modules, and
asking it for one of those names raises ``NotAvailable`` too. A module that the
released notebook, the spec's adapters or the runner imports and that is
unavailable is an error in the spec: the sandbox cannot hold it without the
answers. The package's data files (the shipped checkpoints) are copied.

The plan is plain data (:class:`ViewPlan`), so a Dask worker can materialise the
same view from its own installed package.
"""

from __future__ import annotations

import ast
import atexit
import compileall
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import coursekit

PACKAGE = "coursekit"
#: the runner and the kernel, which every view must hold (with what they import).
RUNNER_MODULES = ("coursekit.grading.runner", "coursekit.grading.kernel", "coursekit.grading.withheld")
#: never withheld, whatever the assignment grades: the grader's own modules.
NEVER_WITHHELD = "coursekit.grading"


@dataclass(frozen=True)
class _Module:
    name: str
    path: Path
    is_package: bool
    public: tuple[str, ...]
    defines: frozenset[str]
    imports: tuple[tuple[str, tuple[str, ...] | None], ...]
    reexports: dict[str, str]


@dataclass(frozen=True)
class ViewPlan:
    """What the sandbox's ``coursekit`` holds.

    Attributes:
        kept: modules copied (package ``__init__`` files filtered).
        withheld: modules replaced by stand-ins.
        files: relative path (under the package) -> generated text, or ``None`` to copy the
            installed file as it is.
        tripwires: ``module.name`` of every stand-in the withheld modules hold: the only
            names a graded call's report may list as references it reached.
        unavailable: every module whose import raises, with the chain of imports that leads
            from it to a withheld module.
    """

    kept: tuple[str, ...]
    withheld: tuple[str, ...]
    files: tuple[tuple[str, str | None], ...]
    tripwires: tuple[str, ...] = ()
    unavailable: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def digest(self) -> str:
        """A short hash naming this plan's materialised directory."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def package_root() -> Path:
    """The installed ``coursekit`` package directory (where the sandbox mounts its view)."""
    return Path(coursekit.__file__).resolve().parent


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _public_names(tree: ast.Module) -> tuple[list[str], set[str]]:
    public, defines = [], set()
    for node in tree.body:
        targets: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
            defines.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        public += [name for name in targets if not name.startswith("_")]
    return public, defines


def _imports(tree: ast.AST) -> list[tuple[str, tuple[str, ...] | None]]:
    """Every ``coursekit`` import anywhere in ``tree`` (functions included): (module, names or None)."""
    found: list[tuple[str, tuple[str, ...] | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == PACKAGE:
                found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


@functools.lru_cache(maxsize=4)
def _scan(root: Path) -> dict[str, _Module]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        name = _module_name(root, path)
        public, defines = _public_names(tree)
        reexports = {}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
                reexports.update({(alias.asname or alias.name): node.module for alias in node.names})
        modules[name] = _Module(name, path, path.name == "__init__.py", tuple(public), frozenset(defines),
                                tuple(_imports(tree)), reexports)
    return modules


def _sources(modules: dict[str, _Module], module: str, names: tuple[str, ...] | None) -> set[str]:
    """The modules whose code ``from module import names`` (``import module``: ``names`` None) binds.

    A package stands for the modules its ``__init__`` re-exports the names from;
    ``import package`` for all of them, since any may be used as an attribute.
    """
    info = modules.get(module)
    if info is None:
        return set()
    if not info.is_package:
        return {module}
    found: set[str] = set()
    if names is None:
        for source in sorted(set(info.reexports.values())):
            found |= _sources(modules, source, None)
        return found
    for name in names:
        if f"{module}.{name}" in modules:
            found |= _sources(modules, f"{module}.{name}", None)
        elif name in info.reexports:
            found |= _sources(modules, info.reexports[name], (name,))
    return found


def _unavailable(modules: dict[str, _Module], withheld: set[str]) -> dict[str, tuple[str, ...]]:
    """Every module that needs a withheld one, with the shortest chain of imports from it to that one.

    A kept module that ran with a stand-in in place of the function it imports
    would end an honest answer that uses it as ``uses_reference``, so it cannot
    be in the sandbox. Packages are never unavailable: their ``__init__`` is
    filtered instead.
    """
    needs = {
        name: set().union(*(_sources(modules, target, names) for target, names in info.imports)) - {name}
        for name, info in modules.items()
        if not info.is_package and name not in withheld
    }
    chains: dict[str, tuple[str, ...]] = {}
    while True:
        found = {}
        for name in sorted(needs.keys() - chains.keys()):
            for target in sorted(needs[name]):
                if target in withheld or target in chains:
                    found[name] = (name,) + chains.get(target, (target,))
                    break
        if not found:
            return chains
        chains.update(found)


def _refuse(chains: dict[str, tuple[str, ...]], modules: dict[str, _Module], module: str,
            names: tuple[str, ...] | None, importer: str) -> None:
    for source in sorted(_sources(modules, module, names)):
        if source in chains:
            chain = chains[source]
            raise ValueError(
                f"{chain[-2]} imports {chain[-1]}, which defines an answer of this assignment: "
                f"the sandbox cannot hold one without the other ({importer} imports {module}, which needs it)"
            )


def _stub(module: _Module) -> str:
    lines = [
        f'"""Withheld: {module.name} defines answers of the assignment being graded."""',
        "",
        "from coursekit.grading.withheld import tripwire as _tripwire",
        "",
        f"__all__ = {list(module.public)!r}",
    ]
    lines += [f"{name} = _tripwire({module.name + '.' + name!r})" for name in module.public]
    return "\n".join(lines) + "\n"


def _unavailable_stub(chain: tuple[str, ...]) -> str:
    return (
        f'"""Not available while this assignment is graded: {" imports ".join(chain)}, which is withheld."""\n\n'
        "from coursekit.grading.withheld import unavailable as _unavailable\n\n"
        f"_unavailable({chain[0]!r}, {chain[-1]!r})\n"
    )


def _filtered_init(module: _Module, modules: dict[str, _Module], chains: dict[str, tuple[str, ...]]) -> str | None:
    """The package's ``__init__`` without its re-exports of unavailable modules (``None``: unchanged).

    A name it no longer binds raises :class:`~coursekit.grading.withheld.NotAvailable`
    when asked for (``from package import name`` included), through a module
    ``__getattr__`` that falls back to the package's own, if it has one.
    """
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    body: list[ast.stmt] = []
    bound: set[str] = set()
    dropped: dict[str, str] = {}  # name -> the withheld module it needs
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            kept = []
            for alias in node.names:
                needs = sorted(set(chains) & _sources(modules, node.module, (alias.name,)))
                if needs:
                    dropped[alias.asname or alias.name] = chains[needs[0]][-1]
                else:
                    kept.append(alias)
            if not kept:
                continue
            node.names = kept
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            node.names = [alias for alias in node.names if alias.name not in chains]
            if not node.names:
                continue
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        body.append(node)
    if not dropped:
        return None
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            node.name = "_package_getattr"
    for node in body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                and isinstance(node.value, (ast.List, ast.Tuple))):
            node.value.elts = [e for e in node.value.elts if not isinstance(e, ast.Constant) or e.value in bound]
    fallback = ("return _package_getattr(name)" if "__getattr__" in bound
                else "raise AttributeError(f'module {__name__!r} has no attribute {name!r}')")
    body += ast.parse(
        f"_UNAVAILABLE = {dropped!r}\n\n"
        "def __getattr__(name):\n"
        "    if name in _UNAVAILABLE:\n"
        "        from coursekit.grading.withheld import unavailable\n"
        "        unavailable(f'{__name__}.{name}', _UNAVAILABLE[name])\n"
        f"    {fallback}\n"
    ).body
    tree.body = body
    return ast.unparse(tree) + "\n"


def notebook_imports(sources: Iterable[str]) -> list[tuple[str, tuple[str, ...] | None]]:
    """The ``coursekit`` imports of notebook cells and adapters (cells that do not parse are skipped).

    Example:
        >>> notebook_imports(["from coursekit.models import RNNLM", "%timeit 1", "import coursekit.data"])
        [('coursekit.models', ('RNNLM',)), ('coursekit.data', None)]
    """
    found: list[tuple[str, tuple[str, ...] | None]] = []
    for source in sources:
        try:
            found += _imports(ast.parse(source))
        except SyntaxError:
            continue
    return found


def plan_view(graded_names: Iterable[str], imports: Iterable[tuple[str, tuple[str, ...] | None]],
              root: Path | None = None) -> ViewPlan:
    """Decide what the sandbox's ``coursekit`` holds for one assignment.

    Args:
        graded_names: the names of the functions the assignment grades (the
            student's and the references'); every module defining one is withheld.
        imports: the ``coursekit`` imports of the released notebook and the adapters
            (see :func:`notebook_imports`).
        root: the package to read (default: the installed one).

    Returns:
        The plan.

    Raises:
        ValueError: a module the notebook or the runner needs imports one that must be withheld.

    Example:
        >>> plan = plan_view({"token_nll"}, [])
        >>> plan.withheld
        ('coursekit.losses.nll',)
        >>> "coursekit.losses.nll.token_nll" in plan.tripwires
        True
        >>> dict(plan.unavailable)["coursekit.losses.smoothing"]
        ('coursekit.losses.smoothing', 'coursekit.losses.nll')
        >>> "coursekit.losses.masking" in plan.kept
        True
    """
    base = root or package_root()
    modules = _scan(base)
    graded = set(graded_names)
    withheld = {
        name for name, info in modules.items()
        if info.defines & graded and not name.startswith(NEVER_WITHHELD)
    }
    chains = _unavailable(modules, withheld)
    for module in RUNNER_MODULES:
        _refuse(chains, modules, module, None, "the runner")
    for module, names in imports:
        _refuse(chains, modules, module, names, "the notebook")
    files: list[tuple[str, str | None]] = []
    for name, info in sorted(modules.items()):
        relative = str(info.path.relative_to(base))
        if name in withheld:
            files.append((relative, _stub(info)))
        elif name in chains:
            files.append((relative, _unavailable_stub(chains[name])))
        elif info.is_package:
            files.append((relative, _filtered_init(info, modules, chains)))
        else:
            files.append((relative, None))
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            files.append((str(path.relative_to(base)), None))
    tripwires = sorted(f"{name}.{public}" for name in withheld for public in modules[name].public)
    return ViewPlan(tuple(sorted(modules.keys() - withheld - chains.keys())), tuple(sorted(withheld)),
                    tuple(files), tuple(tripwires), tuple(sorted(chains.items())))


_LOCK = threading.Lock()
_MATERIALISED: dict[str, Path] = {}


def _remove_if_owner(top: Path, owner: int) -> None:
    """Remove a view at exit, in the process that made it only (a forked child inherits the hook)."""
    if os.getpid() == owner:
        shutil.rmtree(top, ignore_errors=True)


def materialise(plan: ViewPlan) -> Path:
    """Write ``plan`` into a directory (once per process, removed at exit) and return its package directory.

    The files are world-readable (the sandbox uid reads them) and byte-compiled,
    so a sandbox does not compile them again.

    Args:
        plan: from :func:`plan_view`, possibly computed on another machine.

    Returns:
        ``.../coursekit``, to be mounted over the installed package.
    """
    key = plan.digest()
    with _LOCK:
        if key in _MATERIALISED and _MATERIALISED[key].is_dir():
            return _MATERIALISED[key]
        top = Path(tempfile.mkdtemp(prefix=f"coursekit-view-{key}-"))
        atexit.register(_remove_if_owner, top, os.getpid())
        os.chmod(top, 0o755)
        target = top / PACKAGE
        source = package_root()
        for relative, text in plan.files:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                shutil.copyfile(source / relative, path)
            else:
                path.write_text(text, encoding="utf-8")
        # Compiled as if in place, so that tracebacks name the installed package's paths.
        compileall.compile_dir(str(target), ddir=str(source), quiet=1)
        for directory, _dirs, names in os.walk(top):
            os.chmod(directory, 0o755)
            for name in names:
                os.chmod(os.path.join(directory, name), 0o644)
        _MATERIALISED[key] = target
        return target
