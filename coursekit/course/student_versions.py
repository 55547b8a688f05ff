"""Generate the student version of every assignment into one folder.

``python -m coursekit.course student-versions --out DIR`` copies the course's
``nbgrader_config.py`` and ``source/`` into a temporary directory (so the real
course's gradebook and ``release/`` folder are left alone), runs
``nbgrader generate_assignment`` there for each assignment, and copies every
student notebook to ``DIR/<assignment>.ipynb``. Data files an assignment ships
next to its notebook are copied to ``DIR/<assignment>/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from coursekit.course.config import ASSIGNMENTS, DB_URL_ENV

COURSE_DIR = Path(__file__).resolve().parents[2] / "assignments"


def nbgrader_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for running nbgrader: this interpreter's ``bin`` first on PATH.

    nbgrader calls ``alembic`` and the kernels call ``python`` through PATH, so
    both must come from the same virtual environment as nbgrader itself.

    Args:
        extra: variables to set on top of the current environment.

    Returns:
        A new environment mapping.

    Example:
        >>> nbgrader_env({"A": "1"})["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
        True
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.update(extra or {})
    return env


def generate_student_versions(
    out: str | os.PathLike[str],
    *,
    course_dir: str | os.PathLike[str] = COURSE_DIR,
    assignments: Sequence[str] = ASSIGNMENTS,
) -> list[Path]:
    """Write ``out/<assignment>.ipynb`` (the student version) for every assignment.

    Args:
        out: destination folder, created if missing.
        course_dir: the nbgrader course (holding ``nbgrader_config.py`` and ``source/``).
        assignments: which assignments to generate.

    Returns:
        The paths of the written notebooks, in the order of ``assignments``.

    Raises:
        ValueError: ``course_dir`` lacks ``nbgrader_config.py``, or an assignment has no
            ``source/<a>/<a>.ipynb``.
        RuntimeError: ``nbgrader generate_assignment`` failed (its output is in the message).
    """
    course = Path(course_dir).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise ValueError(f"course_dir must contain nbgrader_config.py, got {str(course)!r}")
    for name in assignments:
        if not (course / "source" / name / f"{name}.ipynb").is_file():
            raise ValueError(f"assignments: no source/{name}/{name}.ipynb in {str(course)!r}")
    destination = Path(out).resolve()
    destination.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="coursekit-students-") as tmp:
        work = Path(tmp) / "course"
        work.mkdir()
        shutil.copy2(course / "nbgrader_config.py", work / "nbgrader_config.py")
        shutil.copytree(course / "source", work / "source", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        env = nbgrader_env({DB_URL_ENV: f"sqlite:///{work / 'gradebook.db'}"})
        # One nbgrader process for all of them when the whole course is asked for: its
        # start-up (and the kernel's) is most of the cost.
        everything = set(assignments) == {p.name for p in (work / "source").iterdir() if p.is_dir()}
        for pattern in ["*"] if everything else list(assignments):
            result = subprocess.run(
                [sys.executable, "-m", "nbgrader", "generate_assignment", pattern, "--force"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {pattern} failed:\n{result.stdout}\n{result.stderr}")
        for name in assignments:
            released = work / "release" / name
            target = destination / f"{name}.ipynb"
            shutil.copy2(released / f"{name}.ipynb", target)
            extras = [p for p in released.iterdir() if p.name != f"{name}.ipynb"]
            if extras:
                folder = destination / name
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                for item in extras:
                    if item.is_dir():
                        shutil.copytree(item, folder / item.name)
                    else:
                        shutil.copy2(item, folder / item.name)
            written.append(target)
    return written
