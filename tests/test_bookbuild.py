"""coursekit.bookbuild: what a change of the package makes the next build forget."""

from __future__ import annotations

from pathlib import Path

from coursekit.bookbuild import drop_execution_state


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
