"""The grading driver: from nbgrader's submitted/ tree to autograded/, the gradebook and reports.

The driver alone reads the course directory and writes results; executors only
run jobs. For each submission it (1) checks and restores the notebook, (2)
sends the cells and the hidden calls to a sandbox, (3) scores the returned
numbers against the references it computed itself, then (4) writes the
autograded notebook, the JSON report and, last, commits the grades. A
submission is "done" once its grades are committed, so a grader killed at any
point loses nothing that was finished and a re-run picks up the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, TextIO

from coursekit.grading import gradebook as gb
from coursekit.grading.autograded import render
from coursekit.grading.bwrap import requested_capabilities
from coursekit.grading.cgroups import cgroups_available, remove_stale_groups, swap_unlimited
from coursekit.grading.executors import make_executor
from coursekit.grading.diagnostics import stderr_tail
from coursekit.grading.files import (MAX_SUBMITTED_FILES, FilesOverBudget, files_of, files_within_budgets,
                                     left_out_note, refuse_shadowing, shadowing_note, top_level_entries)
from coursekit.grading.limits import Limits
from coursekit.grading.notebook import ExpectedCell, PreparedNotebook, missing_notebook_note, prepare, unusable
from coursekit.grading.outcomes import OUTCOMES, Evidence, classify, run_notes, skipped_answers
from coursekit.grading.package_view import ViewPlan, notebook_imports, plan_view
from coursekit.grading.result_budget import result_caps
from coursekit.grading.sandbox import Job, RawRun, kernel_leaves_root, sandbox_available
from coursekit.grading.secret import load_secret
from coursekit.grading.spec import AssignmentSpec, PreparedCall, adapters, graded_names, load_spec, prepare_calls
from coursekit.grading.time_guard import PREPARATION_TIMEOUT_S, time_guard
from coursekit.grading.uids import LockDirectoryError, open_lock_directory
from coursekit.grading.verdicts import QuestionResult, score_question, visible_check_failure

__all__ = ["OUTCOMES", "GradeOptions", "Grader", "SandboxUnavailable", "SubmissionReport", "format_table",
           "grade_assignment", "reports_directory"]


def reports_directory(course_root: Path, assignment: str) -> Path:
    """Where the submissions' JSON reports and the class report of ``assignment`` go.

    Example:
        >>> reports_directory(Path("/course"), "a1").as_posix()
        '/course/grade-reports/a1'
    """
    return course_root / "grade-reports" / assignment


@dataclass
class SubmissionReport:
    """The result of grading one submission (also written as its JSON report).

    Attributes:
        student: student id.
        assignment: assignment id.
        score: total auto score.
        max_score: total points of the autograded questions.
        outcome: one of :data:`OUTCOMES`.
        notes: what happened (tampering restored, cells skipped, limits hit).
        questions: per-question results.
        manual: grade_ids left for manual grading.
        sandboxed: whether bubblewrap isolated the run.
        seconds: wall-clock time in the sandbox, every attempt of the submission together.
        diagnostics: for ``kernel_died``, the end of the runner's stderr (see
            :mod:`~coursekit.grading.diagnostics`); for the instructor, never in the feedback.
        autograded_sha256: the SHA-256 of the autograded notebook this run wrote (empty when it wrote
            none); a later run that finds another notebook there knows another grader has since replaced it.
    """

    student: str
    assignment: str
    score: float
    max_score: float
    outcome: str
    notes: list[str] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    sandboxed: bool = True
    seconds: float = 0.0
    diagnostics: str = ""
    autograded_sha256: str = ""


@dataclass
class GradeOptions:
    """Options of ``coursekit grade`` (see :func:`coursekit.cli.main`)."""

    students: list[str] | None = None
    jobs: int = 1
    executor: str = "local"
    limits: Limits = field(default_factory=Limits)
    force: bool = False
    require_sandbox: bool = False
    max_notebook_bytes: int = 20_000_000
    max_files_bytes: int = 50_000_000
    max_files: int = MAX_SUBMITTED_FILES
    db_url: str | None = None
    progress: bool = True


class SandboxUnavailable(RuntimeError):
    """The grader will not run student code here: ``--require-sandbox`` and no sandbox, a kernel that would run as
    root, or a uid lease folder that is not root's alone (see :func:`~coursekit.grading.uids.open_lock_directory`)."""


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate in its strings replaced by U+FFFD.

    JSON may escape them (``"\\ud800"``) but UTF-8 cannot encode them, so a
    notebook or an output holding one could not be written back.

    Example:
        >>> _without_surrogates({"source": ["ok", "bad \\udcff"]})["source"][1] == "bad \\ufffd\\ufffd\\ufffd"
        True
    """
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


#: the most bytes of a timestamp.txt read: a date is far shorter, and the student writes the file.
MAX_TIMESTAMP_BYTES = 200
#: nbgrader's submission secret is 32 hex digits; a longer file is cut here (release_feedback then names it wrong).
MAX_SUBMISSION_SECRET_BYTES = 4096


def _read_timestamp(path: Path) -> tuple[str | None, str | None]:
    """The submission's timestamp.txt if nbgrader can parse it, else ``None`` and why.

    At most :data:`MAX_TIMESTAMP_BYTES` + 1 bytes are read, whatever the file's
    size; a longer file is not a date.
    """
    if not path.is_file():
        return None, None
    with path.open("rb") as file:
        raw = file.read(MAX_TIMESTAMP_BYTES + 1)
    if len(raw) > MAX_TIMESTAMP_BYTES:
        return None, f"timestamp.txt is not a date (over {MAX_TIMESTAMP_BYTES} bytes); recorded without a timestamp"
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return None, None
    from nbgrader.utils import parse_utc

    try:
        parse_utc(text)
    except (ValueError, OverflowError, TypeError):
        return None, f"timestamp.txt is not a date ({text[:40]!r}); recorded without a timestamp"
    return text, None


def _exchange_files(submitted: Path) -> dict[str, bytes]:
    """The submission's timestamp.txt and submission_secret.txt, read no further than their bounds.

    Both go into ``autograded/`` whatever happened to the notebook and the files budget: the timestamp
    tells a later run what was graded, and ``nbgrader release_feedback`` names the feedback it puts
    in the exchange after the secret that ``nbgrader collect`` stored with the submission.
    """
    bounds = {"timestamp.txt": MAX_TIMESTAMP_BYTES + 1, "submission_secret.txt": MAX_SUBMISSION_SECRET_BYTES}
    files = {}
    for name, bound in bounds.items():
        path = submitted / name
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                files[name] = file.read(bound)
    return files


def _timestamp(path: Path) -> datetime | None:
    """The time in ``path`` (a timestamp.txt) as nbgrader reads it; ``None`` when absent or not a date."""
    text, _problem = _read_timestamp(path)
    if text is None:
        return None
    from nbgrader.utils import parse_utc

    return parse_utc(text)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _sources_by_grade_id(notebook: dict[str, Any]) -> dict[str, str]:
    """The source of each nbgrader cell of ``notebook``, by grade_id."""
    sources = {}
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            source = cell.get("source", "")
            sources[meta["grade_id"]] = "".join(source) if isinstance(source, list) else str(source)
    return sources


class Grader:
    """Grade one assignment of one course; see :func:`grade_assignment`."""

    def __init__(self, course_dir: Path, assignment: str, options: GradeOptions, log: TextIO = sys.stderr) -> None:
        self.options = options
        self.log = log
        self.course = gb.load_course(Path(course_dir), options.db_url)
        self.assignment = assignment
        spec_path = self.course.root / "autograde" / f"{assignment}.py"
        self.spec: AssignmentSpec = load_spec(spec_path)
        notebooks = gb.expected_cells(self.course, assignment)
        if self.spec.notebook not in notebooks:
            raise LookupError(f"notebook {self.spec.notebook!r} of the spec is not in assignment {assignment!r}")
        self.expected: list[ExpectedCell] = notebooks[self.spec.notebook]
        self._check_spec()
        self.view: ViewPlan = self._view()
        self.max_score = sum(float(q.points) for q in self.spec.questions)
        self.secret = load_secret(self.course.root, log=log)
        source = self.course.root / self.course.source / assignment
        try:
            source_files = files_of(source, set(), options.max_files_bytes, options.max_files)
        except FilesOverBudget as error:
            raise ValueError(f"the assignment's source folder {source} cannot be copied into each sandbox: "
                             f"{error}") from None
        self.source_files = {k: v for k, v in source_files.items() if not k.endswith(".ipynb")}
        self.calls: dict[str, dict[str, list[PreparedCall]]] = {}
        self.reports: list[SubmissionReport] = []
        self._bar: Any = None
        self.resubmitted: list[str] = []
        self.failed_before: list[str] = []

    def _prepare_calls(self, student: str) -> dict[str, list[PreparedCall]]:
        return prepare_calls(self.spec, course=self.course.course_id, student=student, secret=self.secret)

    def _view(self) -> ViewPlan:
        """What the sandbox's ``coursekit`` holds: what the released cells (visible checks included) and the
        adapters import, no answers."""
        sources = [c.source for c in self.expected if c.cell_type == "code"]
        return plan_view(graded_names(self.spec), notebook_imports(sources + adapters(self.spec)))

    def _check_spec(self) -> None:
        tests = {c.name: c for c in self.expected if c.autograder_test}
        asked = {q.grade_id: q for q in self.spec.questions}
        if set(tests) != set(asked):
            raise ValueError(
                f"spec {self.spec.assignment!r} must cover exactly the autograder test cells {sorted(tests)}, "
                f"got {sorted(asked)}"
            )
        for name, question in asked.items():
            if abs(float(question.points) - float(tests[name].points or 0)) > 1e-9:
                raise ValueError(
                    f"spec points of {name!r} must equal the gradebook's {tests[name].points}, got {question.points}"
                )

    # -- which submissions -------------------------------------------------
    def submissions(self) -> list[str]:
        """Student ids with a submission of this assignment, filtered by ``--student``."""
        root = self.course.root / self.course.submitted
        found = sorted(p.parent.name for p in root.glob(f"*/{self.assignment}") if p.is_dir())
        if self.options.students:
            wanted = set(self.options.students)
            unknown = wanted - set(found)
            if unknown:
                raise LookupError(f"no submission of {self.assignment!r} for students {sorted(unknown)}")
            found = [s for s in found if s in wanted]
        return found

    def pending(self) -> list[str]:
        """The submissions still to grade (all of them with ``--force``).

        Those not graded yet, and, as ``nbgrader autograde`` decides, those graded
        whose submitted ``timestamp.txt`` is newer than the one in ``autograded/``
        (a resubmission collected after grading); ``resubmitted`` names these. Also
        those whose last run ended in ``grader_error``, which recorded no grade (earlier
        scores, if any, still stand); ``failed_before`` names these.
        """
        students = self.submissions()
        if self.options.force:
            self.failed_before = [s for s in students if self._grader_failed(s)]
            return students
        tests = [c.name for c in self.expected if c.autograder_test]
        done = gb.graded_students(self.course, self.assignment, self.spec.notebook, tests)
        self.resubmitted = [s for s in students if s in done and self._resubmitted(s)]
        self.failed_before = [s for s in students if s not in self.resubmitted and self._grader_failed(s)]
        again = set(self.resubmitted) | set(self.failed_before)
        return [s for s in students if s not in done or s in again]

    def _grader_failed(self, student: str) -> bool:
        """Whether the last run on ``student`` ended in ``grader_error`` (its earlier scores, if any, still stand)."""
        return (self._stored_report(student) or {}).get("outcome") == "grader_error"

    def _stored_report(self, student: str) -> dict[str, Any] | None:
        """``student``'s grade report as stored by the last run (``None`` when absent or unreadable)."""
        path = reports_directory(self.course.root, self.assignment) / f"{student}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return stored if isinstance(stored, dict) else None

    def _resubmitted(self, student: str) -> bool:
        """:meth:`_newer_than_its_grade`, guarded: one submission's odd files never stop the others' grading."""
        try:
            return self._newer_than_its_grade(student)
        except Exception as error:  # noqa: BLE001 - the student writes these files; any failure is theirs alone
            self.log.write(f"warning: could not compare {student}'s timestamp.txt with its graded one "
                           f"({type(error).__name__}: {error}); not regraded as a resubmission\n")
            return False

    def _newer_than_its_grade(self, student: str) -> bool:
        """Whether ``student``'s submitted timestamp.txt is later than the one its autograded copy was made from."""
        submitted = _timestamp(self.course.root / self.course.submitted / student / self.assignment / "timestamp.txt")
        graded = _timestamp(self.course.root / self.course.autograded / student / self.assignment / "timestamp.txt")
        return submitted is not None and graded is not None and submitted > graded

    # -- the pipeline ------------------------------------------------------
    def _prepared(self, student: str) -> tuple[PreparedNotebook, dict[str, bytes], list[str]]:
        """The checked notebook, the other submitted files, and the files refused as shadowing a module."""
        directory = self.course.root / self.course.submitted / student / self.assignment
        nb_path = directory / f"{self.spec.notebook}.ipynb"
        size = nb_path.stat().st_size if nb_path.is_file() else 0
        if not nb_path.is_file():
            notebook = unusable("missing_notebook", self.expected, missing_notebook_note(directory, nb_path.name))
        elif size > self.options.max_notebook_bytes:
            notebook = unusable("too_large", self.expected,
                                f"the notebook has {size} bytes, limit {self.options.max_notebook_bytes}")
        else:
            notebook = prepare(nb_path.read_bytes(), self.expected, max_bytes=self.options.max_notebook_bytes)
        if notebook.outcome:
            return notebook, {}, []
        # Files past the budgets (a saved checkpoint, a folder of logs) are left out and the notebook is graded
        # without them, as it would run in Jupyter without them; stock nbgrader autograde has no budget to pass.
        files, left_out = files_within_budgets(directory, {f"{self.spec.notebook}.ipynb", "timestamp.txt"},
                                               self.options.max_files_bytes, self.options.max_files)
        if left_out is not None:
            notebook.notes.append(left_out_note(left_out, self.options.max_files_bytes, self.options.max_files))
        kept, refused = refuse_shadowing(files)
        return notebook, {**kept, **self.source_files}, refused

    def _jobs(self, students: list[str], prepared: dict[str, PreparedNotebook]) -> Iterator[tuple[str, Job]]:
        """Each student's job; a submission that cannot run is finished here, one that breaks the grader too."""
        for student in students:
            try:
                job = self._job(student, prepared)
            except Exception as error:  # noqa: BLE001 - one submission must never stop the batch
                prepared.pop(student, None)
                self._grader_error(student, error)
                continue
            if job is not None:
                yield student, job

    def _job(self, student: str, prepared: dict[str, PreparedNotebook]) -> Job | None:
        """The sandbox's work for ``student`` (``None``: the notebook cannot run, and is finished already)."""
        with time_guard(PREPARATION_TIMEOUT_S, f"preparing {student}'s submission"):
            notebook, files, refused = self._prepared(student)
        if notebook.outcome:
            self._finish(student, notebook, None)
            return None
        notebook.refused_files = refused
        prepared[student] = notebook
        self.calls[student] = self._prepare_calls(student)
        # Each question is scored on the names as they stood at its test cell, as stock nbgrader scores it.
        test_cells = set(notebook.test_cells.values())
        return Job(
            files={k: base64.b64encode(v).decode() for k, v in files.items()},
            cells=[{**cell, "snapshot": cell["index"] in test_cells} for cell in notebook.run_cells],
            calls=[c.call for q in self.spec.questions for c in self.calls[student][q.grade_id]],
            adapters=adapters(self.spec),
            view=self.view,
            memory_budget_mb=self.spec.memory_budget_mb,
            result_caps=result_caps(self.calls[student].values()),
            scopes={c.call["id"]: notebook.test_cells[q.grade_id] for q in self.spec.questions
                    if q.grade_id in notebook.test_cells for c in self.calls[student][q.grade_id]},
        )

    def _finished(self, student: str, prepared: PreparedNotebook | None, run: RawRun | Exception) -> None:
        """Finish a submission whose run came back, or record that the grader failed on it."""
        try:
            if isinstance(run, Exception):
                raise run
            assert prepared is not None, "every job sent has its prepared notebook"
            self._finish(student, prepared, run)
            if not run.sandboxed:
                self.log.write(f"WARNING: {student} was graded WITHOUT the sandbox\n")
        except Exception as error:  # noqa: BLE001 - one submission must never stop the batch
            self._grader_error(student, error)

    def _grader_error(self, student: str, error: Exception) -> SubmissionReport:
        """Record a submission the grader failed on: a report and the traceback in the log, no grades.

        Nothing goes into the gradebook, so the next ``coursekit grade`` (without
        ``--force``) tries the submission again. The note names the exception's
        class only: its message may quote the student's data.
        """
        self.calls.pop(student, None)
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.log.write(f"\nERROR: the grader failed on {student}'s submission; the others go on.\n{trace}\n")
        report = SubmissionReport(
            student=student, assignment=self.assignment, score=0.0, max_score=self.max_score, outcome="grader_error",
            notes=[f"the grader failed on this submission ({type(error).__name__}; the traceback is in the "
                   "grader's log); no grade was recorded, and the next `coursekit grade` tries it again"],
        )
        try:
            self._write_report(report)
        except OSError as write_error:
            self.log.write(f"ERROR: the report of {student} could not be written either ({write_error}), so the next "
                           f"`coursekit grade` cannot tell that this run failed: once the cause is mended, regrade "
                           f"the submission with `coursekit grade {self.assignment} --force --student {student}`\n")
        self.reports.append(report)
        self._tick(student, report.outcome)
        return report

    def _score(self, student: str, run: RawRun | None, test_cells: dict[str, int]) -> dict[str, QuestionResult]:
        """Every question's verdict (nothing answered when the notebook could not run).

        A question whose test cell's visible checks failed scores 0, as under stock nbgrader
        (see :func:`~coursekit.grading.verdicts.visible_check_failure`); one whose answer reached a
        withheld reference keeps that verdict.
        """
        calls = self.calls.pop(student, None)
        if calls is None:
            calls = self._prepare_calls(student)
        ends = {event.call_id: event for event in run.calls} if run is not None else {}
        cell_ends = {event.index: event for event in run.cells} if run is not None else {}
        results = {}
        for question in self.spec.questions:
            mine = calls[question.grade_id]
            scored = score_question(question, mine, ends, self.view.tripwires)
            visible = (visible_check_failure(question, len(mine), cell_ends.get(test_cells[question.grade_id]))
                       if run is not None and question.grade_id in test_cells else None)
            # A use of the withheld reference is the finding to report, whatever the visible checks did.
            results[question.grade_id] = scored if scored.uses_reference or visible is None else visible
        return results

    def _outcome(self, prepared: PreparedNotebook, run: RawRun | None,
                 results: dict[str, QuestionResult]) -> tuple[str, list[str]]:
        """The outcome and every note worth reading, in order."""
        notes = ([f"restored: {t}" for t in prepared.tampered] + [f"missing cell restored: {m}" for m in prepared.missing]
                 + prepared.notes)
        if prepared.outcome:
            return prepared.outcome, [prepared.detail, *notes]
        assert run is not None, "a notebook that can run has a run"
        notes += [shadowing_note(entry) for entry in top_level_entries(prepared.refused_files)]
        outcome, why = classify(Evidence.of(run, prepared, list(results.values())))
        notes += run_notes(run) + ([why] if why else [])
        if outcome == "memory_limit" and self.spec.memory_budget_mb:
            notes.append(f"this assignment's memory budget: {self.spec.memory_budget_mb} MiB beyond Python, "
                         "NumPy and torch")
        return outcome, notes

    def _finish(self, student: str, prepared: PreparedNotebook, run: RawRun | None) -> SubmissionReport:
        """Score and classify one submission, then write its results (see :meth:`_write`)."""
        results = self._score(student, run, prepared.test_cells)
        if run is not None:
            for grade_id, sentence in skipped_answers(run, prepared.notebook["cells"], self.spec.questions).items():
                if results[grade_id].passed != results[grade_id].total:
                    results[grade_id].messages.insert(0, sentence)
        outcome, notes = self._outcome(prepared, run, results)
        report = self._report(student, run, results, outcome, notes)
        if run is not None and outcome == "kernel_died":
            self._keep_diagnostics(report, run)
        if run is not None and run.fork_server_note:
            # The grader's own matter, not the student's: the sandbox is the same, only slower to start.
            self.log.write(f"{student}: {run.fork_server_note}; bubblewrap started the runner instead\n")
        self._write(report, prepared, run, results)
        self.reports.append(report)
        self._tick(student, outcome)
        return report

    def _keep_diagnostics(self, report: SubmissionReport, run: RawRun) -> None:
        """Show the end of the runner's stderr in the log, under the student's name, and keep it in the report."""
        report.diagnostics = stderr_tail(run.diagnostics)
        shown = ("\n".join(f"    {line}" for line in report.diagnostics.splitlines())
                 or "    (it wrote nothing on stderr)")
        self.log.write(f"{report.student}: kernel_died (the runner exited with status {run.returncode}); the end of "
                       f"the runner's stderr, also in {report.student}.json's `diagnostics`:\n{shown}\n")

    def _report(self, student: str, run: RawRun | None, results: dict[str, QuestionResult], outcome: str,
                notes: list[str]) -> SubmissionReport:
        """The submission's report (what is shown at the end and written as JSON)."""
        return SubmissionReport(
            student=student,
            assignment=self.assignment,
            score=round(sum(r.score for r in results.values()), 3),
            max_score=self.max_score,
            outcome=outcome,
            notes=[n for n in notes if n],
            questions=[r.to_dict() for r in results.values()],
            manual=[c.name for c in self.expected if (c.grade or c.task) and not c.autograder_test],
            sandboxed=run.sandboxed if run is not None else True,
            seconds=round(run.seconds, 2) if run is not None else 0.0,
        )

    def _write(self, report: SubmissionReport, prepared: PreparedNotebook, run: RawRun | None,
               results: dict[str, QuestionResult]) -> None:
        """Write the autograded notebook, the JSON report and, last, the grades (then the submission is done)."""
        submitted = self.course.root / self.course.submitted / report.student / self.assignment
        timestamp, problem = _read_timestamp(submitted / "timestamp.txt")
        if problem:
            report.notes.append(problem)
        report.autograded_sha256 = self._write_autograded(report.student,
                                                          render(prepared, run, results, report.outcome),
                                                          with_files=prepared.outcome is None)
        self._write_report(report)
        gb.record_submission(self.course, self.assignment, self.spec.notebook, report.student, timestamp=timestamp,
                             expected=self.expected, scores={name: r.score for name, r in results.items()},
                             answered=self._answered(prepared), blank=self._blank_answers(prepared))

    def _write_report(self, report: SubmissionReport) -> None:
        reports = reports_directory(self.course.root, self.assignment)
        reports.mkdir(parents=True, exist_ok=True)
        _write_atomically(reports / f"{report.student}.json", json.dumps(asdict(report), indent=1).encode())

    def _tick(self, student: str, outcome: str) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{student}: {outcome}")

    def _answered(self, prepared: PreparedNotebook) -> dict[str, bool]:
        sources = _sources_by_grade_id(prepared.notebook)
        return {
            expected.name: bool(
                prepared.outcome is None
                and expected.name in sources
                and expected.name not in prepared.missing
                and sources[expected.name].strip() != expected.source.strip()
            )
            for expected in self.expected if expected.solution or expected.task
        }

    def _blank_answers(self, prepared: PreparedNotebook) -> frozenset[str]:
        """Hand-graded answer cells of a usable notebook left exactly as released (nbgrader's checksum test)."""
        if prepared.outcome is not None:
            return frozenset()
        sources = _sources_by_grade_id(prepared.notebook)
        return frozenset(
            cell.name for cell in self.expected
            if cell.grade and cell.solution and cell.name not in prepared.missing and sources.get(cell.name) == cell.source
        )

    def _write_autograded(self, student: str, notebook: dict[str, Any], with_files: bool) -> str:
        """Replace ``student``'s autograded folder by ``notebook``, its timestamp.txt and, ``with_files`` (the
        notebook was run), the files that were graded with it; returns the written notebook's SHA-256."""
        target = self.course.root / self.course.autograded / student / self.assignment
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{self.assignment}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        submitted = self.course.root / self.course.submitted / student / self.assignment
        exclude = {f"{self.spec.notebook}.ipynb", "timestamp.txt"}
        # What was graded: the files that would have shadowed a module, and those past the budgets, stay in
        # submitted/ alone (coursekit.grading.files); the date tells a later run what was graded.
        within, _ = (files_within_budgets(submitted, exclude, self.options.max_files_bytes, self.options.max_files)
                     if with_files else ({}, None))
        files, _ = refuse_shadowing(within)
        files.update(_exchange_files(submitted))
        files.update(self.source_files)
        for relative, data in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        data = json.dumps(_without_surrogates(notebook), indent=1, ensure_ascii=False).encode("utf-8")
        (staging / f"{self.spec.notebook}.ipynb").write_bytes(data)
        old = target.parent / f".{self.assignment}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return hashlib.sha256(data).hexdigest()

    def _check_isolation(self) -> None:
        """Refuse (``--require-sandbox``) or warn loudly when bubblewrap or cgroups cannot be used here; refuse when
        the kernel would run as root or the uid leases' folder is unsafe."""
        if self.options.executor != "local":
            return
        (sandboxed, why_not), (grouped, why_no_groups) = sandbox_available(), cgroups_available()
        problems = [why for ok, why in ((sandboxed, why_not), (grouped, why_no_groups)) if not ok]
        if problems and self.options.require_sandbox:
            raise SandboxUnavailable(f"--require-sandbox: the sandbox cannot be set up here: {'; '.join(problems)}")
        leaves_root, why_root = kernel_leaves_root(sandboxed)
        if not leaves_root:
            raise SandboxUnavailable(f"refusing to grade: {why_root}; install bubblewrap or make it readable")
        if os.geteuid() == 0:
            # Every run leases a uid; an unsafe lease folder would fail each submission alone, as a grader_error.
            try:
                os.close(open_lock_directory())
            except LockDirectoryError as error:
                raise SandboxUnavailable(str(error)) from None
        if not sandboxed:
            self._warn(f"SUBMISSIONS WILL RUN WITHOUT THE SANDBOX: {why_not}",
                       "Only rlimits and timeouts apply; student code can read the course directory and",
                       "runs as a uid of its own when the grader is root, else as this user.")
        if sandboxed and "CAP_SYS_RESOURCE" not in requested_capabilities():
            self.log.write("warning: this host's root lacks CAP_SYS_RESOURCE, so the sandbox's runner cannot keep "
                           "itself off the OOM killer's list (the student's processes are still chosen first)\n")
        if not grouped:
            self._warn(f"SUBMISSIONS WILL RUN WITHOUT CGROUPS: {why_no_groups}",
                       "Only per-process rlimits apply: one submission can take the CPU, the memory and the",
                       "process slots of the others graded at the same time.")
        elif swap_unlimited():
            self.log.write("warning: this host swaps and its kernel does not account swap to cgroups, so a sandbox "
                           "can hold more than its memory limit by swapping (boot with swapaccount=1, or turn swap off)\n")

    def _already_graded(self, skipped: list[str]) -> str:
        """Say which submissions are skipped as graded, and which of them the other grader graded last."""
        by_nbgrader = [s for s in skipped if not self._last_graded_here(s)]
        line = f"{len(skipped)} submission(s) already graded; use --force to regrade them"
        if by_nbgrader:
            shown = ", ".join(by_nbgrader[:10]) + (", ..." if len(by_nbgrader) > 10 else "")
            line += (f" ({len(by_nbgrader)} of them last graded by `nbgrader autograde`, whose scores stand until "
                     f"you regrade: no coursekit grade report, or an autograded notebook other than the one "
                     f"coursekit grade wrote: {shown})")
        return line + "\n"

    def _last_graded_here(self, student: str) -> bool:
        """Whether ``coursekit grade`` graded ``student`` last: its report is there and so is the autograded
        notebook that run wrote. Stock ``nbgrader autograde`` replaces (or, abandoning a regrade, removes) that
        notebook and leaves the report. A report from before reports kept the notebook's digest is trusted."""
        stored = self._stored_report(student)
        if stored is None:
            return False
        recorded = stored.get("autograded_sha256", "")
        if not recorded:
            return True
        notebook = (self.course.root / self.course.autograded / student / self.assignment
                    / f"{self.spec.notebook}.ipynb")
        try:
            return hashlib.sha256(notebook.read_bytes()).hexdigest() == recorded
        except OSError:
            return False

    def _warn(self, *lines: str) -> None:
        self.log.write("\n" + "!" * 78 + "\nWARNING: " + "\n".join(lines) + "\n" + "!" * 78 + "\n")

    def run(self) -> list[SubmissionReport]:
        """Grade every pending submission; returns the reports of this run, sorted by student."""
        options = self.options
        self._check_isolation()
        remove_stale_groups()
        students = self.pending()
        skipped = sorted(set(self.submissions()) - set(students))
        if skipped:
            self.log.write(self._already_graded(skipped))
        if self.failed_before:
            shown = ", ".join(self.failed_before[:10]) + (", ..." if len(self.failed_before) > 10 else "")
            self.log.write(f"{len(self.failed_before)} submission(s) whose last grading failed in the grader "
                           f"(grader_error), graded again: {shown}\n")
        if self.resubmitted:
            shown = ", ".join(self.resubmitted[:10]) + (", ..." if len(self.resubmitted) > 10 else "")
            self.log.write(f"{len(self.resubmitted)} submission(s) resubmitted after grading (timestamp.txt newer "
                           f"than the graded one), regraded: {shown}\n")
        executor = make_executor(options.executor, options.jobs)
        use_sandbox: bool | None = True if options.require_sandbox else None
        prepared: dict[str, PreparedNotebook] = {}
        if options.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=len(students), desc=f"grading {self.assignment}", unit="sub", file=self.log)
        start = len(self.reports)

        def done(student: str, run: RawRun | Exception) -> None:
            self._finished(student, prepared.pop(student, None), run)

        executor.run(self._jobs(students, prepared), options.limits, use_sandbox, done)
        if self._bar is not None:
            self._bar.close()
        return sorted(self.reports[start:], key=lambda r: r.student)


def grade_assignment(course_dir: Path, assignment: str, options: GradeOptions | None = None,
                     log: TextIO = sys.stderr) -> list[SubmissionReport]:
    """Grade ``assignment``'s submissions in the nbgrader course at ``course_dir``.

    Args:
        course_dir: the course directory (holds nbgrader_config.py, submitted/, autograde/).
        assignment: the assignment id.
        options: see :class:`GradeOptions`.
        log: where warnings and the progress bar go.

    Returns:
        One report per submission graded in this run, sorted by student.

    Raises:
        SandboxUnavailable: ``require_sandbox`` and no sandbox, or no safe way to keep student code from root
            (see :class:`SandboxUnavailable`).
        LookupError: unknown assignment or student.
        ValueError: the spec does not match the gradebook.
    """
    return Grader(course_dir, assignment, options or GradeOptions(), log).run()


def format_table(reports: list[SubmissionReport]) -> str:
    """The end-of-run table: student, score, max score, outcome.

    Example:
        >>> print(format_table([SubmissionReport("ada", "a1", 7.5, 10.0, "graded")]))
        student  score  max score  outcome
        ada        7.5       10.0  graded
    """
    header = ("student", "score", "max score", "outcome")
    rows = [(r.student, f"{r.score:.1f}", f"{r.max_score:.1f}", r.outcome) for r in reports]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip()
        )
    return "\n".join(lines)

