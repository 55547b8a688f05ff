"""The API reference, generated from ``coursekit`` itself so that it cannot drift: one page per module.

Before Sphinx reads the table of contents, :func:`write_module_pages` writes one
page per public module of ``coursekit`` (found by walking the package, so a new
module appears without editing anything) into the folder the config value
``coursebook_api_pages`` names (``book/api``, git-ignored; empty: no pages), each
holding one ``automodule``; ``_toc.yml`` lists them with a glob under the API
appendix. The page that holds the line ``<!-- coursekit-api -->`` gets, in its
place, a table of the modules with their one-line summaries. One page per module
keeps each light: the single page was 920 KB of HTML and 32,800 DOM nodes.

Names that a package re-exports (``coursekit.losses.token_nll``) are documented
once, in the module that defines them (``coursekit.losses.nll.token_nll``); a
``missing-reference`` handler resolves the re-exported spelling to that entry,
so chapters may write ``{func}`coursekit.losses.token_nll```. A name listed in
a package's ``__all__`` that would be documented nowhere is a build warning.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

MARKER = "<!-- coursekit-api -->"
PACKAGE = "coursekit"


def public_modules(package: str = PACKAGE) -> list[ModuleType]:
    """The package and every sub-module with no ``_``-prefixed component, sorted by name."""
    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        found.append(importlib.import_module(info.name))
    return sorted(found, key=lambda module: module.__name__)


def _is_public_module(name: str) -> bool:
    return name.split(".")[0] == PACKAGE and not any(part.startswith("_") for part in name.split("."))


def _own_members(module: ModuleType) -> list[str]:
    """Names a module documents: its ``__all__``, or its public functions and classes defined there."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def _documented_here(module: ModuleType, documented_modules: set[str]) -> list[str]:
    """For a package: the exported names whose defining module is not documented elsewhere."""
    names = []
    for name in _own_members(module):
        value = getattr(module, name, None)
        if inspect.ismodule(value):
            continue
        home = getattr(value, "__module__", module.__name__)
        if home == module.__name__ or home not in documented_modules:
            names.append(name)
    return names


def module_page(module: ModuleType, documented_modules: set[str]) -> str:
    """MyST text of the page of one module: its name as title and one ``automodule``."""
    name = module.__name__
    lines = [f"# `{name}`\n", "```{eval-rst}", f".. automodule:: {name}"]
    if hasattr(module, "__path__"):
        members = _documented_here(module, documented_modules - {name})
        if members:
            lines.append(f"   :members: {', '.join(members)}")
            lines.append("   :undoc-members:")
    else:
        lines.append("   :members:")
        lines.append("   :undoc-members:")
    lines.append("   :show-inheritance:")
    lines.append("```\n")
    return "\n".join(lines)


def _summary(module: ModuleType) -> str:
    lines = (module.__doc__ or "").strip().splitlines()
    return lines[0].replace("|", "\\|") if lines else ""


def module_index(folder: str, package: str = PACKAGE) -> str:
    """MyST table of every public module: a link to its page in ``folder`` and its docstring's first line."""
    rows = ["| Module | What it holds |", "| --- | --- |"]
    for module in public_modules(package):
        rows.append(f"| {{doc}}`{module.__name__} </{folder}/{module.__name__}>` | {_summary(module)} |")
    return "\n".join(rows) + "\n"


def write_module_pages(app: Sphinx, config: Any) -> None:
    """Write ``book/api/<module>.md`` for every public module, and remove pages of modules that are gone.

    Runs at ``config-inited`` before sphinx-external-toc (priority 900) resolves
    the glob in ``_toc.yml``. A page is rewritten only when its text changes.
    """
    if not config.coursebook_api_pages:
        return
    folder = Path(app.srcdir) / config.coursebook_api_pages
    folder.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    documented = {module.__name__ for module in modules}
    wanted = set()
    for module in modules:
        path = folder / f"{module.__name__}.md"
        wanted.add(path.name)
        text = module_page(module, documented)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stale in folder.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()


def check_exports(package: str = PACKAGE) -> list[str]:
    """Problems: names in some ``__all__`` that the generated page would not document."""
    modules = public_modules(package)
    documented = {module.__name__ for module in modules}
    owned = {module.__name__: set(_own_members(module)) for module in modules}
    problems = []
    for module in modules:
        for name in getattr(module, "__all__", []):
            if not hasattr(module, name):
                problems.append(f"{module.__name__}.__all__ lists {name!r}, which the module does not define")
                continue
            value = getattr(module, name)
            if inspect.ismodule(value):
                continue
            home = getattr(value, "__module__", module.__name__)
            if home in documented and home != module.__name__ and name not in owned[home]:
                problems.append(
                    f"{module.__name__}.{name} is defined in {home} but not in that module's __all__, "
                    "so the API reference would miss it"
                )
    return problems


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if MARKER not in source[0]:
        return
    for problem in check_exports():
        logger.warning("API reference: %s", problem, location=docname)
    source[0] = source[0].replace(MARKER, module_index(app.config.coursebook_api_pages))


def on_env_get_outdated(app: Sphinx, env: BuildEnvironment, added: Any, changed: Any, removed: Any) -> list[str]:
    """Re-read the API pages on every build: a docstring changes them without touching their source."""
    return sorted(name for name in env.found_docs if _is_module_page(app, name) and name not in removed)


def _is_module_page(app: Sphinx, docname: str) -> bool:
    folder = app.config.coursebook_api_pages
    return bool(folder) and docname.startswith(folder.rstrip("/") + "/")


def read_module_pages_last(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Read the module pages after every other page.

    Sphinx forgets a page's objects only when it re-reads that page. A page that
    documented a module before (such as the single API page this split replaced)
    is thus read, and its entries dropped, before the module pages document them again.
    """
    docnames.sort(key=lambda name: _is_module_page(app, name))


def _locate(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute, None)
            if value is None:
                return None
        return value
    return None


def _canonical(value: Any) -> str | None:
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not module or not qualname or not _is_public_module(module):
        return None
    return f"{module}.{qualname}"


def on_missing_reference(app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element) -> nodes.Element | None:
    """Resolve a Python name in ``coursekit`` the way the code itself would see it.

    * a re-exported spelling, ``coursekit.losses.token_nll``, finds the entry
      of the defining module, ``coursekit.losses.nll.token_nll``;
    * a short name in a docstring (``:func:`batch_loss```) is looked up in the
      namespace of the module the docstring belongs to, then, failing that, as a
      unique ``coursekit`` entry whose name ends with it (what ``:func:`.batch_loss```
      would do);
    * a module constant or type alias without an entry of its own links to the
      module that defines it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    domain = env.get_domain("py")
    candidates = []
    if target.startswith(PACKAGE + "."):
        candidates.append(_canonical(_locate(target)))
    elif node.get("py:module", "").startswith(PACKAGE):
        candidates.append(_canonical(_locate(f"{node['py:module']}.{target}")))
        candidates.append(f"{node['py:module']}.{target}")
        suffix = "." + target
        matches = [name for name in domain.objects if name.startswith(PACKAGE + ".") and name.endswith(suffix)]
        if len(set(matches)) == 1:
            candidates.append(matches[0])
    for canonical in candidates:
        if canonical and canonical != node.get("reftarget") and canonical in domain.objects:
            # "obj" matches any kind: a type alias documented as data is named by :class:.
            for reftype in (node["reftype"], "obj"):
                found = domain.resolve_xref(env, node["refdoc"], app.builder, reftype, canonical, node, contnode)
                if found is not None:
                    return found
    # A module constant or type alias with no entry of its own: link to its module
    # (the docstring's own module, else the deepest documented module that has it).
    if "." in target:
        return None
    module = node.get("py:module", "")
    if not (module.startswith(PACKAGE) and _locate(f"{module}.{target}") is not None):
        owners = [name for name in domain.modules if name.startswith(PACKAGE) and target in vars(sys.modules.get(name, object))]
        # A package that re-exports the name is shorter than the module that defines it.
        module = max(owners, key=len) if owners else ""
    if module in domain.modules:
        return domain.resolve_xref(env, node["refdoc"], app.builder, "mod", module, node, contnode)
    return None


def setup(app: Sphinx) -> None:
    app.add_config_value("coursebook_api_pages", "", "env", types=[str])
    app.connect("config-inited", write_module_pages, priority=100)
    app.connect("source-read", on_source_read)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-before-read-docs", read_module_pages_last)
    app.connect("missing-reference", on_missing_reference)
