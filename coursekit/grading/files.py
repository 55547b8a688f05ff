"""Which of a submission's files go into its sandbox, or stay in its autograded copy.

Everything in the submission's folder but the notebook itself, caches and
links, up to a budget of bytes and one of files: empty files cost no bytes, but
each takes an inode of the sandbox's scratch file system (and a file in
``autograded/``), so a folder of 200,000 of them would fill the scratch before
the first cell ran. The files are taken folder by folder, each folder's own files in name order before
its subfolders'; those past a budget (a
saved checkpoint, a folder of training logs) are left out unread, counted for
the instructor's note (:func:`left_out_note`), and the notebook is graded
without them (:func:`files_within_budgets`), as stock ``nbgrader autograde``
grades it (it has no budget). A file named like a module the runner imports
(NumPy, torch, IPython, ``coursekit``, any module of the standard library) is
refused: the working directory comes first on the kernel's ``sys.path``, and
such a file would be imported instead of the real module by anything that
imports it later. Both graders leave such files out and grade the notebook:
``coursekit grade`` does not copy them into the sandbox
(:func:`refuse_shadowing`), and the course's stock ``nbgrader autograde``
removes them from the autograded copy before the kernel starts
(:func:`remove_shadowing_entries`); the student's ``submitted/`` folder keeps
them. Each grader says so in the same words (:func:`shadowing_note`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".git"}
#: the most files a submission may hand in besides its notebook; with their folders, far under the scratch's inodes.
MAX_SUBMITTED_FILES = 1_000
#: packages the runner and the kernel import (besides the standard library).
RUNNER_PACKAGES = frozenset({"numpy", "torch", "IPython", "coursekit"})


def shadows_a_module(relative: str, is_package: bool) -> bool:
    """Whether a submitted top-level file or package would be imported instead of a module the runner uses.

    Example:
        >>> shadows_a_module("numpy.py", False), shadows_a_module("json/__init__.py", True)
        (True, True)
        >>> shadows_a_module("data/numpy.py", False), shadows_a_module("helpers.py", False)
        (False, False)
    """
    first = relative.split("/")[0]
    if "/" in relative and not is_package:
        return False
    name = first.split(".")[0]
    importable = is_package or relative.endswith((".py", ".pyc", ".so"))
    return importable and (name in RUNNER_PACKAGES or name in sys.stdlib_module_names)


def refuse_shadowing(files: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """``files`` without those that shadow a module (see :func:`shadows_a_module`), and their names.

    Example:
        >>> refuse_shadowing({"numpy.py": b"", "helpers.py": b"", "json/__init__.py": b"", "json/x.py": b""})
        ({'helpers.py': b''}, ['json/__init__.py', 'json/x.py', 'numpy.py'])
    """
    packages = {path.split("/")[0] for path in files if path.count("/") == 1 and
                path.split("/")[1].startswith("__init__.")}
    refused = sorted(path for path in files if shadows_a_module(path, path.split("/")[0] in packages))
    return {k: v for k, v in files.items() if k not in refused}, refused


def top_level_entries(paths: list[str]) -> list[str]:
    """The top-level files and folders that ``paths`` lie in, sorted, a folder's with a trailing ``/``.

    Example:
        >>> top_level_entries(["json/__init__.py", "json/x.py", "numpy.py"])
        ['json/', 'numpy.py']
    """
    return sorted({path.split("/")[0] + ("/" if "/" in path else "") for path in paths})


def shadowing_note(entry: str) -> str:
    """What both graders say of a top-level ``entry`` they left out (the instructor reads it; see the module).

    Example:
        >>> shadowing_note("random.py")[:24]
        'random.py was not copied'
    """
    return (f"{entry} was not copied into the graded folder: it would be imported in place of the module of that "
            "name that the notebook, its tests or the grader use (the submitted copy is kept)")


def shadowing_entries(directory: Path) -> list[str]:
    """The top-level files and packages of ``directory`` that :func:`refuse_shadowing` would refuse.

    A folder counts as a package when it holds an ``__init__`` file, as
    ``coursekit grade`` reads a submission; links are followed, since a kernel
    started in ``directory`` would import through them.

    Args:
        directory: a submission's folder (missing: nothing shadows).

    Returns:
        The refused names, sorted, a package's with a trailing ``/``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     for name in ("torch.py", "notes.py", "coursekit/__init__.py", "data/json.py"):
        ...         (Path(folder) / name).parent.mkdir(exist_ok=True)
        ...         _ = (Path(folder) / name).write_text("")
        ...     shadowing_entries(Path(folder))
        ['coursekit/', 'torch.py']
    """
    if not directory.is_dir():
        return []
    entries: dict[str, bytes] = {}
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            entries.update({f"{entry.name}/{init.name}": b"" for init in entry.glob("__init__.*")})
        else:
            entries[entry.name] = b""
    _, refused = refuse_shadowing(entries)
    return top_level_entries(refused)


def remove_shadowing_entries(directory: Path) -> list[str]:
    """Delete from ``directory`` the entries :func:`shadowing_entries` names, and return their names.

    For a grader's own copy of a submission only (never the student's
    ``submitted/`` folder): a link is removed, not what it points to.

    Args:
        directory: the copy of a submission's folder that is about to be graded.

    Returns:
        The removed names, sorted, a package's with a trailing ``/``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     for name in ("random.py", "helpers.py", "torch/__init__.py"):
        ...         (Path(folder) / name).parent.mkdir(exist_ok=True)
        ...         _ = (Path(folder) / name).write_text("")
        ...     removed = remove_shadowing_entries(Path(folder))
        ...     removed, sorted(p.name for p in Path(folder).iterdir())
        (['random.py', 'torch/'], ['helpers.py'])
    """
    removed = shadowing_entries(directory)
    for entry in removed:
        path = directory / entry.rstrip("/")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


class FilesOverBudget(ValueError):
    """A folder's files hold more bytes, or are more files, than a submission may hand in; the message says which."""


#: how many files past the budgets are counted for the note (listed by name, not read); past it the note says "at least".
MAX_COUNTED_LEFT_OUT = 10_000


@dataclass(frozen=True)
class LeftOut:
    """The files a submission handed in past the budgets: not copied, counted for the instructor's note.

    Attributes:
        files: how many were left out (a lower bound when ``more`` is true).
        total_bytes: the bytes they hold (of those counted).
        first: the path of the first one left out, in the order the files are taken.
        more: the count stopped at :data:`MAX_COUNTED_LEFT_OUT`; there may be more.
    """

    files: int
    total_bytes: int
    first: str
    more: bool = False


def left_out_note(left_out: LeftOut, budget: int, max_files: int) -> str:
    """What ``coursekit grade`` says of the files it left out past the budgets (the instructor reads it).

    Example:
        >>> left_out_note(LeftOut(files=2, total_bytes=60_000_000, first="model.pt"), 50_000_000, 1_000)[:60]
        '2 files (60,000,000 bytes) handed in beyond the budgets (1,0'
    """
    count = f"{'at least ' if left_out.more else ''}{left_out.files:,} file{'s' if left_out.files != 1 else ''}"
    return (f"{count} ({left_out.total_bytes:,} bytes) handed in beyond the budgets ({max_files:,} files, "
            f"{budget:,} bytes besides the notebook, taken folder by folder in name order) were not copied into the "
            f"graded folder, the first {left_out.first}; the notebook was graded without them (the submitted copy is "
            "kept)")


def _regular_files(directory: Path, exclude: set[str]) -> Iterator[tuple[str, Path]]:
    """The regular files under ``directory``, each folder's own in name order before its subfolders' (no links, no
    caches), but those in ``exclude``."""
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            relative = str(path.relative_to(directory))
            if relative not in exclude and not path.is_symlink() and path.is_file():
                yield relative, path


def _read_at_most(path: Path, size: int) -> bytes | None:
    """``path``'s bytes, or ``None`` when it holds more than ``size`` (it grew since it was measured)."""
    with path.open("rb") as file:
        data = file.read(size + 1)
    return data if len(data) <= size else None


def files_within_budgets(directory: Path, exclude: set[str], budget: int,
                         max_files: int = MAX_SUBMITTED_FILES) -> tuple[dict[str, bytes], LeftOut | None]:
    """The regular files under ``directory`` (no links, no caches) that fit the budgets, and what was left out.

    The files are taken folder by folder (each folder's own files in name order before its subfolders'): one
    that would pass ``budget`` bytes is
    left out and the next ones are still tried, and once ``max_files`` are
    taken every other file is left out. Files left out are never read; at
    most :data:`MAX_COUNTED_LEFT_OUT` of them are counted.

    Args:
        directory: the folder (missing: no files).
        exclude: relative paths left out unread and uncounted (the notebook, ``timestamp.txt``).
        budget: the most bytes the files taken may hold in all.
        max_files: the most files taken.

    Returns:
        The taken files' bytes by relative path, and what was left out (``None``: nothing).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name, size in (("a.txt", 1), ("b.bin", 20), ("c.txt", 1), ("d.txt", 1)):
        ...     _ = (folder / name).write_bytes(bytes(size))
        >>> files, left_out = files_within_budgets(folder, set(), budget=10, max_files=2)
        >>> sorted(files), left_out
        (['a.txt', 'c.txt'], LeftOut(files=2, total_bytes=21, first='b.bin', more=False))
    """
    files: dict[str, bytes] = {}
    if not directory.is_dir():
        return files, None
    total = left = left_bytes = 0
    first = ""
    for relative, path in _regular_files(directory, exclude):
        size = path.stat().st_size
        data = (_read_at_most(path, size) if len(files) < max_files and total + size <= budget else None)
        if data is not None:
            files[relative] = data
            total += len(data)
            continue
        if left == MAX_COUNTED_LEFT_OUT:
            return files, LeftOut(left, left_bytes, first, more=True)
        first = first or relative
        left += 1
        left_bytes += size
    return files, (LeftOut(left, left_bytes, first) if left else None)


def files_of(directory: Path, exclude: set[str], budget: int, max_files: int = MAX_SUBMITTED_FILES) -> dict[str, bytes]:
    """The regular files under ``directory`` (no links, no caches) by relative path, but those in ``exclude``.

    For a folder that must be copied whole (the assignment's source folder);
    a submission's folder is read with :func:`files_within_budgets`.

    Args:
        directory: the folder (missing: no files).
        exclude: relative paths left out (the notebook, ``timestamp.txt``).
        budget: the most bytes the files may hold in all.
        max_files: the most files there may be.

    Returns:
        The files' bytes.

    Raises:
        FilesOverBudget: past ``budget`` bytes or ``max_files`` files; nothing more is read once it is known.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("a.txt", "b.txt", "c.txt"):
        ...     _ = (folder / name).write_text("x")
        >>> sorted(files_of(folder, {"c.txt"}, budget=10, max_files=2))
        ['a.txt', 'b.txt']
        >>> files_of(folder, set(), budget=10, max_files=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        coursekit.grading.files.FilesOverBudget: it holds more than 2 files, the most accepted
    """
    files: dict[str, bytes] = {}
    total = 0
    if not directory.is_dir():
        return files
    for relative, path in _regular_files(directory, exclude):
        if len(files) == max_files:
            raise FilesOverBudget(f"it holds more than {max_files:,} files, the most accepted")
        total += path.stat().st_size
        if total > budget:
            raise FilesOverBudget(f"its files hold more than {budget:,} bytes, the most accepted")
        files[relative] = path.read_bytes()
    return files
