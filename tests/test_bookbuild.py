"""coursekit.bookbuild: what a change of the package makes the next build forget, and the pages' kernels' environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coursekit.bookbuild import (CPU_CAPABILITY_VARIABLE, cpu_capability, drop_execution_state, kernel_environment,
                                 student_versions_hash)


def test_dropping_the_execution_state_forgets_both_the_cache_and_sphinxs_saved_pages(tmp_path: Path) -> None:
    build = tmp_path / "_build"
    for store in (".jupyter_cache", ".doctrees"):
        (build / store).mkdir(parents=True)
        (build / store / "kept.pickle").write_bytes(b"old outputs")
    (build / "html").mkdir()
    drop_execution_state(build)
    assert not (build / ".jupyter_cache").exists()
    assert not (build / ".doctrees").exists(), "Sphinx would re-read only changed pages and keep old outputs"
    assert (build / "html").is_dir()


@pytest.mark.slow
def test_the_pages_kernels_run_pytorchs_avx2_kernels_on_a_processor_with_avx512(tmp_path: Path) -> None:
    # With AVX-512 kernels two of chapter 8's asserted comparisons came out the other way (an AMD EPYC, 2026-12-02).
    here = cpu_capability()
    env = kernel_environment(tmp_path / "_build")
    probe = "import torch.backends.cpu; print(torch.backends.cpu.get_cpu_capability())"
    kernel = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    chosen = here == "AVX512" and not os.environ.get(CPU_CAPABILITY_VARIABLE)
    assert kernel.stdout.strip() == ("AVX2" if chosen else here), (here, kernel.stdout, kernel.stderr)
    assert "MPLBACKEND" not in env and env["IPYTHONDIR"] == str(tmp_path / "_build" / "ipython")


@pytest.mark.slow
def test_the_execution_key_names_the_kernels_the_pages_run_and_changes_with_the_package_and_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coursekit.bookbuild import execution_key, probe_kernels, processor_cpu_capability

    (tmp_path / "coursekit").mkdir()
    (tmp_path / "coursekit" / "losses.py").write_text("LOSS = 1\n")
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    monkeypatch.delenv(CPU_CAPABILITY_VARIABLE, raising=False)
    plain_env = kernel_environment(tmp_path / "_build")
    plain = execution_key(tmp_path, plain_env)
    own = processor_cpu_capability()
    pages = "AVX2" if own == "AVX512" else own  # numerics_environment's rule
    assert plain.endswith(f"kernels={pages.lower()}") and probe_kernels(plain_env)[0] == pages
    assert execution_key(tmp_path, plain_env) == plain, "the same package, lock and kernels give the same key"
    scalar_env = {**plain_env, CPU_CAPABILITY_VARIABLE: "default"}
    assert probe_kernels(scalar_env)[0] == "DEFAULT"
    scalar = execution_key(tmp_path, scalar_env)
    assert scalar.endswith("kernels=default") and (scalar != plain) == (own != "DEFAULT")
    (tmp_path / "requirements.lock").write_text("torch==2.14.1\n")
    assert execution_key(tmp_path, plain_env) != plain
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    (tmp_path / "coursekit" / "losses.py").write_text("LOSS = 2\n")
    assert execution_key(tmp_path, plain_env) != plain


@pytest.mark.slow
def test_a_value_aten_does_not_take_is_an_error_that_names_the_variable(tmp_path: Path) -> None:
    from coursekit.bookbuild import execution_key

    (tmp_path / "coursekit").mkdir()
    for wrong in ("scalar", "AVX2"):
        # ATen ignores such values with a warning and runs the processor's kernels: a check build would check nothing.
        with pytest.raises(RuntimeError, match=f"ATEN_CPU_CAPABILITY must name kernels this processor runs.*default, avx2, avx512.*'{wrong}'"):
            execution_key(tmp_path, {**os.environ, CPU_CAPABILITY_VARIABLE: wrong})


def test_outputs_are_kept_for_the_same_key_and_dropped_for_another_even_after_a_failed_build(tmp_path: Path) -> None:
    from coursekit.bookbuild import keep_or_drop_execution_state

    build = tmp_path / "_build"
    cached = build / ".jupyter_cache" / "page.pickle"

    def a_page_ran() -> None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(b"outputs")

    assert keep_or_drop_execution_state(build, "p kernels=avx2")  # nothing recorded yet
    a_page_ran()
    assert not keep_or_drop_execution_state(build, "p kernels=avx2") and cached.exists()
    # A build with other kernels: its first pages run, then it fails before its end.
    assert keep_or_drop_execution_state(build, "p kernels=default") and not cached.exists()
    a_page_ran()
    # The next plain build must not take the scalar kernels' outputs for its own.
    assert keep_or_drop_execution_state(build, "p kernels=avx2") and not cached.exists()
    a_page_ran()
    assert keep_or_drop_execution_state(build, "p kernels=avx2", force=True) and not cached.exists()


@pytest.mark.slow
def test_a_build_records_its_key_before_any_page_runs_and_drops_another_keys_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coursekit.bookbuild import build_book, execution_key

    # A repository without MathJax: build_book stops before jupyter-book runs, after deciding about the cache.
    root = tmp_path / "repo"
    (root / "coursekit").mkdir(parents=True)
    (root / "coursekit" / "losses.py").write_text("LOSS = 1\n")
    cached = root / "_build" / ".jupyter_cache" / "page.pickle"

    def build_stops_before_the_pages(kernels: str | None) -> None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(b"outputs of the last build")
        if kernels is None:
            monkeypatch.delenv(CPU_CAPABILITY_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(CPU_CAPABILITY_VARIABLE, kernels)
        with pytest.raises(RuntimeError, match="MathJax is missing"):
            build_book(root)
        key = execution_key(root, kernel_environment(root / "_build"))
        assert (root / "_build" / ".coursekit-hash").read_text() == key

    from coursekit.bookbuild import processor_cpu_capability

    if processor_cpu_capability() == "DEFAULT":
        pytest.skip("this processor runs ATen's scalar kernels anyway: there are no other kernels to build with")
    build_stops_before_the_pages("default")
    assert not cached.exists(), "no key was recorded: the outputs cannot be trusted"
    build_stops_before_the_pages(None)
    assert not cached.exists(), "the scalar kernels' outputs would have been reused by a plain build"
    build_stops_before_the_pages(None)
    assert cached.exists(), "the same package and kernels: the outputs are kept"


def _blocked_on(lock_file: Path, mode: str, pid: int, seconds: float = 120) -> bool:
    """Whether process ``pid`` comes to wait for an flock of ``mode`` (READ or WRITE) on ``lock_file`` (/proc/locks)."""
    inode = f":{lock_file.stat().st_ino} "
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" in fields and inode in line + " " and fields[-5] == mode and fields[-4] == str(pid):
                return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_reader_and_a_build_wait_while_another_build_holds_the_build_folder(tmp_path: Path) -> None:
    import threading

    from coursekit.bookbuild import build_lock

    build = tmp_path / "_build"
    holder = _build_lock_holder(build)
    # A build of a repository without MathJax: it records its key under the lock, then stops.
    root = tmp_path / "repo"
    (root / "coursekit").mkdir(parents=True)
    (root / "_build").symlink_to(build, target_is_directory=True)
    builder = None
    try:
        assert _holds_the_lock(holder)
        read = threading.Event()

        def reader() -> None:
            with build_lock(build, shared=True):
                read.set()

        threading.Thread(target=reader, daemon=True).start()
        assert _blocked_on(build / ".build.lock", "READ", os.getpid()), "the reader did not wait for the build"
        builder = subprocess.Popen(
            [sys.executable, "-c", f"from pathlib import Path\nfrom coursekit.bookbuild import build_book\n"
                                   f"build_book(Path({str(root)!r}))"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert _blocked_on(build / ".build.lock", "WRITE", builder.pid), "build_book did not wait for the other build"
        assert not read.is_set() and not (build / ".coursekit-hash").exists()
        holder.communicate("done\n", timeout=60)
        # Either waiter may get the lock first; the reader waits out the build if the build does.
        _, errors = builder.communicate(timeout=600)
        assert read.wait(600)
        assert "waiting for" in errors and "MathJax is missing" in errors, errors[-2000:]
        assert (build / ".coursekit-hash").exists()
    finally:
        for process in (holder, builder):
            if process is not None:
                process.kill()
                process.wait()


def test_a_held_build_lock_is_seen_without_waiting(tmp_path: Path) -> None:
    from coursekit.bookbuild import build_lock, build_lock_is_held

    build = tmp_path / "_build"
    assert not build_lock_is_held(build) and not build.exists(), "asking must not create the build folder"
    with build_lock(build, shared=True):
        assert not build_lock_is_held(build), "a reader's hold is not a build"
    holder = _build_lock_holder(build)
    try:
        assert _holds_the_lock(holder)
        started = time.monotonic()
        assert build_lock_is_held(build) and time.monotonic() - started < 5
        holder.communicate("done\n", timeout=60)
        assert not build_lock_is_held(build)
    finally:
        holder.kill()
        holder.wait()


def _build_lock_holder(build: Path) -> subprocess.Popen:
    """Another process that takes ``build``'s lock as a build does, says 'held', and keeps it until a line on stdin."""
    return subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib\nfrom coursekit.bookbuild import build_lock\n"
         f"with build_lock(pathlib.Path({str(build)!r})):\n    print('held', flush=True)\n    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _holds_the_lock(holder: subprocess.Popen) -> bool:
    """The holder's 'held' line, read with a deadline (a holder that never gets there fails the test, not hangs it)."""
    import select

    ready, _, _ = select.select([holder.stdout], [], [], 120)
    return bool(ready) and holder.stdout.readline().strip() == "held"


def test_the_student_notebooks_are_made_again_when_the_course_package_changes(tmp_path: Path) -> None:
    """Instructors' review s42 r2, L3: the stamp watched only assignments/, so a change to the settings that
    `generate_assignment` applies (coursekit/course/config.py) left the published student notebooks stale."""
    (tmp_path / "assignments" / "source" / "a1").mkdir(parents=True)
    (tmp_path / "assignments" / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "assignments" / "source" / "a1" / "a1.ipynb").write_text("{}")
    (tmp_path / "coursekit" / "course").mkdir(parents=True)
    (tmp_path / "coursekit" / "losses").mkdir()
    (tmp_path / "coursekit" / "course" / "config.py").write_text("CODE_STUB = 'raise NotImplementedError()'\n")
    (tmp_path / "coursekit" / "losses" / "nll.py").write_text("")
    first = student_versions_hash(tmp_path)
    (tmp_path / "coursekit" / "losses" / "nll.py").write_text("# not what generate_assignment reads\n")
    assert student_versions_hash(tmp_path) == first
    (tmp_path / "coursekit" / "course" / "config.py").write_text("CODE_STUB = 'pass'\n")
    second = student_versions_hash(tmp_path)
    assert second != first
    (tmp_path / "assignments" / "source" / "a1" / "a1.ipynb").write_text('{"cells": []}')
    assert student_versions_hash(tmp_path) not in (first, second)
