"""coursekit.bookbuild: what a change of the package makes the next build forget, and the pages' kernels' environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.bookbuild import CPU_CAPABILITY_VARIABLE, cpu_capability, drop_execution_state, kernel_environment


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


def test_the_pages_kernels_run_pytorchs_avx2_kernels_on_a_processor_with_avx512(tmp_path: Path) -> None:
    # With AVX-512 kernels two of chapter 8's asserted comparisons came out the other way (an AMD EPYC, 2026-12-02).
    here = cpu_capability()
    env = kernel_environment(tmp_path / "_build")
    probe = "import torch.backends.cpu; print(torch.backends.cpu.get_cpu_capability())"
    kernel = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    chosen = here == "AVX512" and not os.environ.get(CPU_CAPABILITY_VARIABLE)
    assert kernel.stdout.strip() == ("AVX2" if chosen else here), (here, kernel.stdout, kernel.stderr)
    assert "MPLBACKEND" not in env and env["IPYTHONDIR"] == str(tmp_path / "_build" / "ipython")


def test_the_execution_key_names_the_kernels_the_pages_run_and_changes_with_the_package_and_the_lock(
        tmp_path: Path) -> None:
    from coursekit.bookbuild import execution_key, pages_cpu_capability

    (tmp_path / "coursekit").mkdir()
    (tmp_path / "coursekit" / "losses.py").write_text("LOSS = 1\n")
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    env = kernel_environment(tmp_path / "_build")
    plain = execution_key(tmp_path, env)
    assert plain.endswith(f"kernels={pages_cpu_capability(env).lower()}")
    assert execution_key(tmp_path, env) == plain, "the same package, lock and kernels give the same key"
    unset = {name: value for name, value in env.items() if name != CPU_CAPABILITY_VARIABLE}
    own = pages_cpu_capability(unset)
    # torch's own spelling is not one ATen takes: the pages run the processor's kernels, and the key says so.
    assert execution_key(tmp_path, {**unset, CPU_CAPABILITY_VARIABLE: "AVX2"}).endswith(f"kernels={own.lower()}")
    if own != "DEFAULT":
        scalar = execution_key(tmp_path, {**unset, CPU_CAPABILITY_VARIABLE: "default"})
        assert scalar != execution_key(tmp_path, unset) and scalar.endswith("kernels=default")
    (tmp_path / "requirements.lock").write_text("torch==2.14.1\n")
    assert execution_key(tmp_path, env) != plain
    (tmp_path / "requirements.lock").write_text("torch==2.13.0\n")
    (tmp_path / "coursekit" / "losses.py").write_text("LOSS = 2\n")
    assert execution_key(tmp_path, env) != plain


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


def test_a_build_records_its_key_before_any_page_runs_and_drops_another_keys_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coursekit.bookbuild import build_book, execution_key

    # ATen fixes its choice in a process at the first question: ask before this test sets the variable.
    cpu_capability()
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

    if cpu_capability() == "DEFAULT":
        pytest.skip("ATen runs its scalar kernels in this process already (the processor's or the environment's choice)")
    build_stops_before_the_pages("default")
    assert not cached.exists(), "no key was recorded: the outputs cannot be trusted"
    build_stops_before_the_pages(None)
    assert not cached.exists(), "the scalar kernels' outputs would have been reused by a plain build"
    build_stops_before_the_pages(None)
    assert cached.exists(), "the same package and kernels: the outputs are kept"


def test_a_reader_of_the_build_folder_waits_while_a_build_holds_it(tmp_path: Path) -> None:
    import fcntl

    build = tmp_path / "_build"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib\nfrom coursekit.bookbuild import build_lock\n"
         f"with build_lock(pathlib.Path({str(build)!r})):\n    print('held', flush=True)\n    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with open(build / ".build.lock", "a") as handle:
            with pytest.raises(BlockingIOError):
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            holder.communicate("done\n", timeout=60)
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the build is over: a reader gets in at once
    finally:
        holder.kill()
