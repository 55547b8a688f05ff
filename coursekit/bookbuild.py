"""Build the course book: ``python -m coursekit.bookbuild`` (what ``make book`` runs).

jupyter-cache keys a page's cached outputs on the page's own code, so a page
executed against an older ``coursekit``, or with other CPU kernels, would be served
stale. This driver therefore keys the cache on a hash of the package and on the
kernels and the pinned libraries as well (:func:`execution_key`): when any of them changes (or ``--force`` is given,
as CI does), the execution cache and Sphinx's saved environment are dropped and every page runs again. The build fails on any Sphinx warning or
cell error (``-W -n --keep-going``) and on any execution report left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE_SUFFIXES = (".py", ".pt", ".json", ".txt")
# Where the published site keeps the Binder environment and the coursekit wheel (see
# book/_ext/coursebook/notebooks.py, whose launch buttons and set-up cells point there).
BINDER_DIR = "binder"
# CPU wheels of torch live on PyTorch's own index, under a "+cpu" local version.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def package_hash(root: Path) -> str:
    """SHA-256 over the path and bytes of every source and data file of ``coursekit``."""
    digest = hashlib.sha256()
    for path in sorted((root / "coursekit").rglob("*")):
        if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def copy_sources(source: Path, target: Path) -> None:
    """Copy the files git would commit (tracked plus untracked-but-not-ignored) to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        path = source / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def tree_hash(paths: list[Path], root: Path) -> str:
    """SHA-256 over the relative path and bytes of every file under ``paths``."""
    digest = hashlib.sha256()
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in files:
            if path.is_file() and ".ipynb_checkpoints" not in path.parts and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def student_versions_hash(root: Path) -> str:
    """What the student notebooks are made from: the course's sources and configuration, the course
    package whose settings and preprocessors ``nbgrader generate_assignment`` applies, and nbgrader's version."""
    from importlib.metadata import version

    course = root / "assignments"
    inputs = tree_hash([course / "nbgrader_config.py", course / "source", root / "coursekit" / "course"], root)
    return f"{inputs} nbgrader {version('nbgrader')}"


def publish_student_versions(root: Path, destination: Path) -> None:
    """Generate every assignment's student notebook into ``destination``.

    The book links ``_static/assignments/<assignment>.ipynb``; generating them
    here with nbgrader on each build (when the course's sources changed) means
    those links can never point to a stale or missing notebook.
    """
    course = root / "assignments"
    if not (course / "nbgrader_config.py").is_file():
        return
    from coursekit.course.student_versions import generate_student_versions

    stamp = root / "_build" / ".assignments-hash"
    current = student_versions_hash(root)
    if stamp.exists() and stamp.read_text().strip() == current:
        return
    shutil.rmtree(destination, ignore_errors=True)
    generate_student_versions(destination, course_dir=course)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)


def drop_execution_state(build_dir: Path) -> None:
    """Forget every page's executed outputs, so that the next build runs every page again.

    Two stores keep them: jupyter-cache's database, and Sphinx's saved environment
    (``.doctrees``), with which Sphinx re-reads, and so re-executes, only the pages whose
    source changed. Dropping the cache alone would leave the other pages' old outputs in place.

    Args:
        build_dir: the book's ``_build`` folder.
    """
    shutil.rmtree(build_dir / ".jupyter_cache", ignore_errors=True)
    shutil.rmtree(build_dir / ".doctrees", ignore_errors=True)


def wheel_filename(root: Path) -> str:
    """File name of the pure-Python wheel of the project at ``root`` (name and version from pyproject.toml).

    Example:
        >>> wheel_filename(Path(__file__).resolve().parents[1]).startswith("coursekit-")
        True
    """
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name = project["name"].replace("-", "_").replace(".", "_").lower()
    return f"{name}-{project['version']}-py3-none-any.whl"


def binder_requirements(lock: str) -> str:
    """Binder's requirements.txt: the pinned lock, with torch's CPU build from PyTorch's index.

    Example:
        >>> print(binder_requirements("numpy==2.0.0\\ntorch==2.3.1\\n"))
        # The book's pinned environment (requirements.lock), with the CPU build of torch.
        --extra-index-url https://download.pytorch.org/whl/cpu
        numpy==2.0.0
        torch==2.3.1+cpu
        <BLANKLINE>
    """
    lines = []
    for line in lock.splitlines():
        if line.startswith("torch==") and "+" not in line:
            line += "+cpu"
        lines.append(line)
    header = ["# The book's pinned environment (requirements.lock), with the CPU build of torch.", f"--extra-index-url {TORCH_CPU_INDEX}"]
    return "\n".join(header + lines) + "\n"


def publish_binder_environment(root: Path, destination: Path) -> None:
    """Write the Binder environment and the coursekit wheel into ``destination``.

    The launch buttons open a page's notebook on the published branch, so Binder
    builds its image from there: ``requirements.txt`` (the lock, CPU torch),
    ``runtime.txt`` (this Python) and ``postBuild``, which installs the wheel of
    the coursekit the book was built with. Colab's set-up cell installs the same wheel.
    """
    stamp = root / "_build" / ".binder-hash"
    current = hashlib.sha256(
        (package_hash(root) + (root / "pyproject.toml").read_text() + (root / "requirements.lock").read_text()).encode()
    ).hexdigest()
    wheel = wheel_filename(root)
    if stamp.exists() and stamp.read_text().strip() == current and (destination / wheel).is_file():
        return
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    # Built from a copy, so that setuptools leaves no build/ or egg-info in the working tree.
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src"
        shutil.copytree(root / "coursekit", source / "coursekit", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, source / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(destination), str(source)],
            check=True, capture_output=True,
        )
    (destination / "requirements.txt").write_text(binder_requirements((root / "requirements.lock").read_text()))
    (destination / "runtime.txt").write_text(f"python-{sys.version_info.major}.{sys.version_info.minor}\n")
    post_build = destination / "postBuild"
    post_build.write_text(f"#!/bin/bash\nset -euo pipefail\npip install --no-deps {BINDER_DIR}/{wheel}\n")
    post_build.chmod(0o755)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)


# Kernel settings for every page: each figure both as SVG, sharp at any size (a phone
# shrinks it, a reader zooms in), and as a 200-dpi PNG ("retina": twice the 100 dpi the
# figure is laid out at); the book keeps the smaller file (book/_ext/coursebook/figures.py).
# No date in the SVG, so rebuilds are identical. Part of this module, so a change here
# changes package_hash and re-executes the pages.
KERNEL_CONFIG = """\
c.InlineBackend.figure_formats = {"svg", "retina"}
c.InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "metadata": {"Date": None}}
c.InlineBackend.rc = {"svg.hashsalt": "coursekit-book", "svg.fonttype": "path"}
"""


#: The environment variable with which ATen (PyTorch's own CPU kernels) takes the kernels of another instruction set.
CPU_CAPABILITY_VARIABLE = "ATEN_CPU_CAPABILITY"


def numerics_environment(environ: Mapping[str, str], capability: str) -> dict[str, str]:
    """The environment variable that gives the pages' kernels PyTorch's AVX2 kernels on a processor with AVX-512.

    PyTorch picks its vectorised CPU kernels by what the processor offers, and its
    AVX-512 kernels round some operations (``softmax``, ``log_softmax`` and so
    ``cross_entropy``) differently from its AVX2 kernels, by a few units in the
    last place. Many
    training steps later the models differ, and a sentence a page asserts about
    them can turn false: chapter 8's comparisons of fine-tuning objectives did, on
    an AMD EPYC with AVX-512, and held again there with ``ATEN_CPU_CAPABILITY=avx2``.
    A processor with AVX2 and no AVX-512 runs those kernels anyway; one without
    AVX2, or not x86-64, keeps its own (ATen would run AVX2 code on the one and
    ignore the value with a warning on the other), and a value the caller set
    (not empty) is kept. Only ATen's kernels are chosen so: the matrix products
    of MKL and oneDNN still follow the processor.

    Args:
        environ: the environment the kernels would inherit.
        capability: the kernels ATen picks on this processor unasked (:func:`processor_cpu_capability`).

    Returns:
        The variable to add to ``environ`` (empty when none applies).

    Example:
        >>> numerics_environment({}, "AVX512"), numerics_environment({"ATEN_CPU_CAPABILITY": ""}, "AVX512")
        ({'ATEN_CPU_CAPABILITY': 'avx2'}, {'ATEN_CPU_CAPABILITY': 'avx2'})
        >>> numerics_environment({"ATEN_CPU_CAPABILITY": "default"}, "DEFAULT")
        {}
        >>> numerics_environment({}, "AVX2"), numerics_environment({}, "SVE256")
        ({}, {})
    """
    if capability != "AVX512" or environ.get(CPU_CAPABILITY_VARIABLE):
        return {}
    return {CPU_CAPABILITY_VARIABLE: "avx2"}


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use in this process (``torch.backends.cpu``).

    Asking fixes ATen's choice for this process: a later ``ATEN_CPU_CAPABILITY`` no longer changes it here.
    """
    import torch.backends.cpu

    return torch.backends.cpu.get_cpu_capability()


#: The values of ``ATEN_CPU_CAPABILITY`` that ATen takes on x86-64, spelled as it takes them (it ignores others).
KNOWN_CAPABILITIES = ("default", "avx2", "avx512")

# Runs one vectorised kernel, so that an instruction set the processor lacks stops the probe, not the pages.
_KERNEL_PROBE = """\
import torch, torch.backends.cpu
torch.ones(64).softmax(0)
print(torch.__version__, torch.backends.cpu.get_cpu_capability())
"""


def probe_kernels(environ: Mapping[str, str]) -> tuple[str, str]:
    """ATen's CPU kernels and torch's version in a new process started with ``environ``: ``("AVX2", "2.13.0+cpu")``.

    Asked in a new process, since ATen fixes its choice in a process at the first
    question, and checked: a set ``ATEN_CPU_CAPABILITY`` that ATen did not take (a value
    it does not know, which it ignores with a warning) is an error, not a build with
    other kernels than the variable names.

    Raises:
        RuntimeError: the probe failed (a processor without the instructions asked for
            stops it with SIGILL), or ATen ran other kernels than ``ATEN_CPU_CAPABILITY`` names.
    """
    asked = environ.get(CPU_CAPABILITY_VARIABLE)
    known = tuple(sorted(environ.items()))
    if known in _PROBED_KERNELS:
        return _PROBED_KERNELS[known]
    try:
        answer = subprocess.run([sys.executable, "-c", _KERNEL_PROBE], env=dict(environ), capture_output=True,
                                text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise RuntimeError("asking torch which CPU kernels it runs took more than 300 s") from None
    # The version first: a capability can be two words ("Z VECTOR").
    words = answer.stdout.strip().splitlines()[-1].split(maxsplit=1) if answer.stdout.strip() else []
    expected = (f"{CPU_CAPABILITY_VARIABLE} must name kernels this processor runs, in lower case as ATen takes "
                f"them ({', '.join(KNOWN_CAPABILITIES)} on x86-64)")
    if answer.returncode != 0 or len(words) != 2:
        if answer.returncode < 0:
            try:
                how = f"killed by signal {signal.Signals(-answer.returncode).name}"
            except ValueError:
                how = f"killed by signal {-answer.returncode}"
        else:
            how = f"exit {answer.returncode}"
        raise RuntimeError(f"asking torch which CPU kernels it runs failed ({how}) with "
                           f"{CPU_CAPABILITY_VARIABLE}={asked!r}" + (f"; {expected}" if asked else "")
                           + f": {answer.stderr[-2000:]}")
    version, capability = words
    if asked and capability.lower().replace(" ", "") != asked:  # ATen reports "Z VECTOR" for zvector
        raise RuntimeError(f"{expected}; got {asked!r}: ATen ignored it and ran its {capability} kernels")
    _PROBED_KERNELS[known] = capability, version
    return capability, version


# probe_kernels's answers in this process, by environment: on one machine the same environment gets the same kernels.
_PROBED_KERNELS: dict[tuple[tuple[str, str], ...], tuple[str, str]] = {}


@functools.cache
def processor_cpu_capability() -> str:
    """The kernels ATen picks on this processor when nothing asks for others (:func:`probe_kernels`, variable unset)."""
    return probe_kernels({k: v for k, v in os.environ.items() if k != CPU_CAPABILITY_VARIABLE})[0]


def execution_key(root: Path, kernel_env: Mapping[str, str]) -> str:
    """What the pages' outputs depend on besides their own source and the book's extension.

    :func:`package_hash` of ``coursekit``, torch's version and the kernels the pages'
    kernels run (:func:`probe_kernels` under ``kernel_env``, the environment
    :func:`kernel_environment` gives them), and a hash of ``requirements.lock`` (the
    other libraries' pinned versions). A build whose key differs from the last one's
    executes every page again, so that ``ATEN_CPU_CAPABILITY=default make book`` runs
    the chapters with ATen's scalar kernels instead of reusing outputs of others.

    Raises:
        RuntimeError: from :func:`probe_kernels`.
    """
    capability, version = probe_kernels(kernel_env)
    lock = root / "requirements.lock"
    pinned = hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.is_file() else "none"
    return f"{package_hash(root)} torch={version} lock={pinned} kernels={capability.lower()}"


@contextlib.contextmanager
def build_lock(build_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``_build/.build.lock``: exclusively while a build runs, shared while a reader copies from ``_build``.

    Waits for the other holders (a reader waits for a running build to finish).
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(build_dir / ".build.lock", "a") as handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {build_dir / '.build.lock'}: a build of the book, or a reader of its cache, holds it",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_lock_is_held(build_dir: Path) -> bool:
    """Whether a build holds ``build_dir``'s lock now (:func:`build_lock`), so that a reader would wait."""
    lock_file = build_dir / ".build.lock"
    if not lock_file.exists():
        return False
    with open(lock_file) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def keep_or_drop_execution_state(build_dir: Path, key: str, *, force: bool = False) -> bool:
    """Drop the pages' executed outputs unless they were made under ``key``; then record ``key``.

    The key is recorded (in ``_build/.coursekit-hash``) before any page runs: jupyter-cache
    keeps the outputs of the pages that ran even when the build fails, and those are
    outputs of this key, so a later build of another key must drop them.

    Returns:
        True when the outputs were dropped (``force``, no record, or another key's).
    """
    stamp = build_dir / ".coursekit-hash"
    dropped = force or not stamp.exists() or stamp.read_text().strip() != key
    if dropped:
        drop_execution_state(build_dir)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    return dropped


def kernel_profile(build_dir: Path) -> Path:
    """An IPython directory whose default profile holds :data:`KERNEL_CONFIG` (the kernels' IPYTHONDIR)."""
    ipython_dir = build_dir / "ipython"
    config = ipython_dir / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.exists() or config.read_text() != KERNEL_CONFIG:
        config.write_text(KERNEL_CONFIG)
    return ipython_dir


def kernel_environment(build_dir: Path) -> dict[str, str]:
    """The environment of the build, and so of every page's kernel: this one, with the build's settings.

    This Python's ``bin`` first on ``PATH``, no debugger file validation
    (``PYDEVD_DISABLE_FILE_VALIDATION``, unless set), :func:`kernel_profile`'s IPython
    directory, Jupyter's inline figures (no inherited ``MPLBACKEND``) and
    :func:`numerics_environment`'s choice of PyTorch's AVX2 kernels on an AVX-512 processor.
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # The kernels must keep Jupyter's inline backend: under an inherited
    # MPLBACKEND=Agg (as the test suite sets) figures have no image output and
    # every glued or displayed figure would be pasted as "<Figure size ...>".
    env.pop("MPLBACKEND", None)
    env["IPYTHONDIR"] = str(kernel_profile(build_dir))
    if not env.get(CPU_CAPABILITY_VARIABLE):
        env.pop(CPU_CAPABILITY_VARIABLE, None)  # empty: ATen would warn about it in every page's kernel
    env.update(numerics_environment(env, processor_cpu_capability()))
    return env


def build_book(root: Path, *, force: bool = False, quiet: bool = False) -> Path:
    """Build the book under ``root/_build/html`` and return the path of ``index.html``.

    Raises:
        RuntimeError: the build failed, or a page left an execution report.
    """
    root = root.resolve()
    with build_lock(root / "_build"):
        return _build_book_locked(root, force=force, quiet=quiet)


def _build_book_locked(root: Path, *, force: bool, quiet: bool) -> Path:
    build_dir = root / "_build"
    env = kernel_environment(build_dir)
    keep_or_drop_execution_state(build_dir, execution_key(root, env), force=force)
    # The book's own extension shapes every page (quizzes, figure links, the notebooks):
    # when it changes, every page is read and written again, from the execution cache.
    extension_stamp = build_dir / ".extension-hash"
    extension = tree_hash([root / "book" / "_ext"], root)
    if not extension_stamp.exists() or extension_stamp.read_text().strip() != extension:
        shutil.rmtree(build_dir / ".doctrees", ignore_errors=True)
    reports = build_dir / "html" / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    mathjax = build_dir / "assets" / "_static" / "mathjax"
    if not (mathjax / "tex-chtml.js").exists():
        raise RuntimeError(
            f"MathJax is missing under {mathjax}: run `make book` "
            "(it installs the pinned mathjax npm package there)"
        )

    publish_student_versions(root, mathjax.parent / "assignments")
    publish_binder_environment(root, build_dir / "assets" / BINDER_DIR)

    command = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build", str(root), "--path-output", str(root),
        "-W", "-n", "--keep-going",
    ]
    output = None if not quiet else subprocess.PIPE
    result = subprocess.run(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    leftover = sorted(reports.glob("**/*")) if reports.exists() else []
    if result.returncode != 0 or leftover:
        detail = result.stdout[-20000:] if quiet and result.stdout else ""
        names = ", ".join(p.name for p in leftover)
        raise RuntimeError(
            f"jupyter-book build failed (exit {result.returncode}); execution reports: {names or 'none'}\n{detail}"
        )
    extension_stamp.write_text(extension)
    return build_dir / "html" / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: .)")
    parser.add_argument("--html", default="_build/html", help="(informational) where the HTML lands")
    parser.add_argument("--force", action="store_true", help="re-execute every page")
    args = parser.parse_args(argv)
    force = args.force or os.environ.get("CI", "").lower() == "true"
    try:
        index = build_book(args.root, force=force)
    except RuntimeError as error:
        print(f"make book: {error}", file=sys.stderr)
        return 1
    print(f"Book built: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
