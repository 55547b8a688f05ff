"""Run a command with the folders on the way to this checkout open to other users, then close them again.

Some tests run the checkout's Python as other uids, as the grader's sandbox and the hub do (uid 65534, the
students' uids). A clone under a folder they cannot enter (``git clone . "$(mktemp -d)/c"``: ``mktemp -d``
makes a 0700 folder), or into such a folder itself (``git clone . "$(mktemp -d)"``), would fail them. Run as
root, this adds search permission for others (``o+x``, which lets them pass through a folder by name, not list
it) to each such folder on the way, and read permission (``o+r``) to the checkout itself, which Python lists
to import from it, for the command's run; it says so, and restores every mode afterwards, however the command
ends. Anyone else, or a checkout already open, runs the command unchanged.

Usage: ``python tests/open_to_others.py COMMAND [ARG ...]`` (``make test`` runs pytest this way).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from coursekit.hub.shared_python import closed_to_others

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    opened = dict(closed_to_others(REPO_ROOT)) if os.geteuid() == 0 else {}
    modes = {folder: stat.S_IMODE(folder.stat().st_mode) for folder in opened}
    for folder, mode in modes.items():
        folder.chmod(mode | opened[folder])
        granted = "reading and search (o+rx)" if opened[folder] & stat.S_IROTH else "search (o+x)"
        print(f"open_to_others: {folder} is open to other users' {granted} while the tests run "
              f"(they run this checkout's Python as other uids); its mode {mode:o} is restored after", flush=True)
    process = subprocess.Popen(command)
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue  # the command got the same ^C; wait for it to end
    finally:
        for folder, mode in modes.items():
            folder.chmod(mode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
