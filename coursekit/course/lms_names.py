"""``nbgrader zip_collect`` for the file names learning platforms really write.

A platform's bulk download names each file ``<student>_<ids>_<notebook>``
(``coursekit.course.config.LMS_FILENAME_REGEXP``), but also marks late work
(``ada_LATE_48213_a1_sequence_loss.ipynb``, in capitals on Canvas) and numbers a
file uploaded twice (``..._a1_sequence_loss-1.ipynb``). Stock nbgrader skips
every name its pattern does not match with one WARNING line among many and
exits 0, so a submission can be lost without anyone noticing. This collector,
which ``nbgrader_config.py`` selects, accepts both variants (of several uploads
of one notebook by one student it keeps the latest and lists the others), and before the
first file is collected logs one summary of every file it will skip, with the
reason (a notebook whose name is not the released one's is skipped too, rather
than collected under a name the graders do not look for), so that the
instructor can rename them and run ``zip_collect`` again.
"""

from __future__ import annotations

import os
import re
from typing import Any

from nbgrader.plugins import FileNameCollectorPlugin

#: a platform's marks that are not part of the notebook's name: a late flag and a re-upload number.
_LATE = re.compile(r"_late_", re.IGNORECASE)
_REUPLOAD = re.compile(r"-[0-9]+(?=\.ipynb$)")


def normalised_name(path: str) -> str:
    """``path`` with the platform's late flag lower-cased and a re-upload number removed.

    Example:
        >>> normalised_name("/x/ada_LATE_48213_a1_sequence_loss-1.ipynb")
        '/x/ada_late_48213_a1_sequence_loss.ipynb'
    """
    folder, name = os.path.split(path)
    return os.path.join(folder, _REUPLOAD.sub("", _LATE.sub("_late_", name)))


def why_skipped(name: str, pattern: str, released: frozenset[str] | None = None) -> str | None:
    """Why a file of the download would be skipped, or ``None`` when it is collected.

    Args:
        name: the file's path in the extracted download.
        pattern: the collector's ``named_regexp``.
        released: the names of the assignment's released notebooks; ``None`` accepts any name
            the pattern accepts.

    Example:
        >>> from coursekit.course.config import LMS_FILENAME_REGEXP
        >>> why_skipped("/x/ada_a1_sequence_loss.ipynb", LMS_FILENAME_REGEXP) is None
        True
        >>> why_skipped("/x/Ada Lovelace_a1_sequence_loss.ipynb", LMS_FILENAME_REGEXP)
        "the student id before the first '_' may hold only letters, digits, dots and dashes"
        >>> why_skipped("/x/ada_a1_seq_loss.ipynb", LMS_FILENAME_REGEXP, frozenset({"a1_sequence_loss.ipynb"}))
        "the notebook's name is not an assignment's (renamed by the student?)"
    """
    if not name.endswith(".ipynb"):
        return None  # other files are not collected by design, as in nbgrader
    match = re.match(pattern, normalised_name(name))
    if match and (released is None or os.path.basename(match.group("file_id")) in released):
        return None
    base = os.path.basename(name)
    if "_" not in base:
        return "no '<student>_' in front of the notebook's name"
    if not re.fullmatch(r"[A-Za-z0-9.-]+", base.split("_", 1)[0]):
        return "the student id before the first '_' may hold only letters, digits, dots and dashes"
    return "the notebook's name is not an assignment's (renamed by the student?)"


def upload_rank(path: str) -> tuple[bool, int, str]:
    """How late in the platform's order ``path`` was uploaded: late flag, re-upload number, name.

    Example:
        >>> upload_rank("/x/ada_1_a1_sequence_loss-2.ipynb")
        (False, 2, 'ada_1_a1_sequence_loss-2.ipynb')
    """
    name = os.path.basename(path)
    number = re.search(r"-([0-9]+)\.ipynb$", name)
    return bool(_LATE.search(name)), int(number.group(1)) if number else 0, name


def newer_upload(path: str, pattern: str, others: list[str]) -> str | None:
    """The name of a later upload of the same student's same notebook among ``others``, if any.

    nbgrader's ``zip_collect`` stops the whole class at two files of one
    student and notebook without timestamps, so only the latest is collected
    (by :func:`upload_rank`). No timestamp is made up for it, since nbgrader
    would write it into ``timestamp.txt`` and the late penalty would follow it.

    Args:
        path: a file of the download.
        pattern: the collector's ``named_regexp``.
        others: the download's other files.

    Example:
        >>> from coursekit.course.config import LMS_FILENAME_REGEXP
        >>> newer_upload("/x/ada_1_a1_q.ipynb", LMS_FILENAME_REGEXP, ["/x/ada_1_a1_q-1.ipynb", "/x/bob_1_a1_q-2.ipynb"])
        'ada_1_a1_q-1.ipynb'
    """
    key = _identity(path, pattern)
    if key is None:
        return None
    later = [other for other in others if other.endswith(".ipynb") and _identity(other, pattern) == key
             and upload_rank(other) > upload_rank(path)]
    return os.path.basename(max(later, key=upload_rank)) if later else None


def _identity(path: str, pattern: str) -> tuple[str, str] | None:
    match = re.match(pattern, normalised_name(path))
    return (match.group("student_id"), os.path.basename(match.group("file_id"))) if match else None


class LmsFileNameCollector(FileNameCollectorPlugin):
    """Collect a platform's download, accepting late flags and re-upload numbers; list what it skips."""

    _summarised = False

    def collect(self, submitted_file: str) -> dict[str, Any] | None:
        """The student and notebook of ``submitted_file``, or ``None`` to skip it (see the module)."""
        if not self._summarised:
            self._summarised = True
            app = self.parent
            extracted = getattr(app, "_format_collect_path", None)
            folder = extracted(app.extracted_directory) if extracted else os.path.dirname(submitted_file)
            self._log_skipped(folder)
        if why_skipped(submitted_file, self.named_regexp, self._released()):
            return None
        folder = os.path.dirname(submitted_file)
        if newer_upload(submitted_file, self.named_regexp, [os.path.join(folder, n) for n in os.listdir(folder)]):
            return None
        return super().collect(normalised_name(submitted_file))

    def _released(self) -> frozenset[str] | None:
        """The assignment's released notebook names, when the app can say."""
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is None:
            return None
        release = coursedir.format_path(coursedir.release_directory, ".", coursedir.assignment_id)
        found = frozenset(name for name in os.listdir(release) if name.endswith(".ipynb")) if os.path.isdir(release) else None
        return found or None

    def _log_skipped(self, folder: str) -> None:
        skipped = []
        released = self._released()
        superseded = []
        for root, _, files in os.walk(folder):
            paths = [os.path.join(root, name) for name in sorted(files)]
            for path in paths:
                reason = why_skipped(path, self.named_regexp, released)
                newer = None if reason else newer_upload(path, self.named_regexp, paths)
                if reason:
                    skipped.append(f"  {os.path.basename(path)}: {reason}")
                elif newer:
                    superseded.append(f"  {os.path.basename(path)}: {newer} is collected instead")
        if skipped:
            self.log.warning(
                "zip_collect will SKIP %d notebook(s) of the download; to collect them, unzip the download into "
                "the archive folder (and remove the zip), rename them there to <student>_<ids>_<notebook>.ipynb and "
                "run zip_collect again with --force (it then rebuilds the submitted folder of every student in the "
                "download):\n%s", len(skipped), "\n".join(skipped))
        if superseded:
            self.log.warning("zip_collect will skip %d earlier upload(s), keeping each student's latest:\n%s",
                             len(superseded), "\n".join(superseded))
