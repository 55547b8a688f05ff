"""``tests/open_to_others.py``: which folders it opens to other users for a test run, and with which bits
(``coursekit.hub.shared_python.closed_to_others``, the rule the tests that run as other uids check)."""

from __future__ import annotations

import stat
from pathlib import Path

from coursekit.hub.shared_python import closed_to_others


def closed_below(top: Path, path: Path) -> dict[Path, int]:
    """``closed_to_others(path)`` from ``top`` down (pytest's own base folder above it is 0700 too)."""
    return {folder: bits for folder, bits in closed_to_others(path) if folder == top or top in folder.parents}


def test_a_clone_inside_a_closed_folder_needs_only_search_on_the_way(tmp_path: Path) -> None:
    closed, checkout = tmp_path / "closed", tmp_path / "closed" / "checkout"
    checkout.mkdir(parents=True)
    tmp_path.chmod(0o755)
    closed.chmod(0o700)
    checkout.chmod(0o755)
    assert closed_below(tmp_path, checkout) == {closed: stat.S_IXOTH}


def test_a_clone_that_is_itself_the_closed_folder_needs_reading_too(tmp_path: Path) -> None:
    """``git clone . "$(mktemp -d)"``: Python lists a folder on sys.path to import from it, so o+x is not enough."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    tmp_path.chmod(0o755)
    checkout.chmod(0o700)
    assert closed_below(tmp_path, checkout) == {checkout: stat.S_IROTH | stat.S_IXOTH}
    checkout.chmod(0o701)
    assert closed_below(tmp_path, checkout) == {checkout: stat.S_IROTH}
