"""The in-kernel scorer of the derived hidden blocks (coursekit.course.hidden_score), without nbgrader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import coursekit.losses as losses
from coursekit.course.hidden_score import INSTRUCTOR, grading_place, question_points, question_result
from coursekit.course.kernel_seed import CHECK_SEED_VARIABLE, FOLDER_VARIABLE, SEED_VARIABLE
from coursekit.grading.gradebook import course_layout, load_course
from coursekit.grading.secret import SECRET_VARIABLE
from coursekit.grading.spec import check_seed, hidden_seed, load_spec, prepare_calls
from conftest import GRADING_SECRET

ASSIGNMENT = "a1_sequence_loss"


def token_nll(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100) -> torch.Tensor:
    """A student's answer: the log-softmax by hand (the question bans PyTorch's)."""
    log_probs = logits - logits.logsumexp(-1, keepdim=True)
    kept = targets != ignore_index
    picked = log_probs.gather(-1, torch.where(kept, targets, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(kept, -picked, torch.zeros_like(picked))


@pytest.fixture
def course(tmp_path: Path, repo_root: Path) -> Path:
    """A course folder with a1's spec and the folders nbgrader runs kernels in."""
    root = tmp_path / "course"
    (root / "autograde").mkdir(parents=True)
    shutil.copy(repo_root / "assignments" / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copy(repo_root / "assignments" / "autograde" / f"{ASSIGNMENT}.py", root / "autograde" / f"{ASSIGNMENT}.py")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    (root / "autograded" / "ada" / ASSIGNMENT).mkdir(parents=True)
    return root


@pytest.fixture(autouse=True)
def ada_seed(course: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """ada's seed in the environment, as the course's nbgrader hands it to her kernel (computed here by the spec)."""
    seed = hidden_seed(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"), load_course(course).course_id, "ada",
                       GRADING_SECRET)
    monkeypatch.setenv(SEED_VARIABLE, str(seed))
    monkeypatch.setenv(CHECK_SEED_VARIABLE, str(check_seed(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"),
                                                           GRADING_SECRET)))
    return seed


def test_grading_place_reads_the_student_from_the_autograded_folder(course: Path) -> None:
    place = grading_place(course / "autograded" / "ada" / ASSIGNMENT)
    assert (place.student, place.course_id) == ("ada", load_course(course).course_id)
    assert place.spec_path == course.resolve() / "autograde" / f"{ASSIGNMENT}.py"
    assert grading_place(course / "source" / ASSIGNMENT).student == INSTRUCTOR


@pytest.mark.parametrize("extra", [
    "",
    'c.CourseDirectory.course_id = "seqloss-2027"\nc.CourseDirectory.autograded_directory = "graded"\n'
    'c.CourseDirectory.source_directory = "masters"\n',
])
def test_the_kernels_course_layout_is_what_nbgrader_reads(course: Path, extra: str) -> None:
    """The hidden blocks read the course without nbgrader (course_layout); nbgrader must read it the same."""
    with (course / "nbgrader_config.py").open("a", encoding="utf-8") as config:
        config.write(extra)
    layout, settings = course_layout(course), load_course(course)
    assert (layout.root, layout.course_id, layout.autograded, layout.source) == (
        settings.root, settings.course_id, settings.autograded, settings.source)
    if extra:
        assert (layout.course_id, layout.autograded, layout.source) == ("seqloss-2027", "graded", "masters")
        (course / "graded" / "ada" / ASSIGNMENT).mkdir(parents=True)
        assert grading_place(course / "graded" / "ada" / ASSIGNMENT).course_id == "seqloss-2027"


@pytest.mark.slow
def test_a_hidden_block_imports_no_nbgrader_nor_nbformat_into_the_kernel(course: Path) -> None:
    """Each student's kernel scores its hidden blocks: importing nbgrader there cost 2.5 s of CPU per notebook."""
    folder = course / "autograded" / "ada" / ASSIGNMENT
    probe = ("import sys; from pathlib import Path; "
             "from coursekit.course.hidden_score import grading_place; "
             f"grading_place(Path({str(folder)!r})); "
             "print(sorted(m for m in ('nbgrader', 'nbformat', 'nbconvert', 'jsonschema') if m in sys.modules))")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "[]"


def test_grading_place_refuses_a_folder_outside_the_course_layout(course: Path, tmp_path: Path) -> None:
    (course / "release" / ASSIGNMENT).mkdir(parents=True)
    with pytest.raises(ValueError, match="autograded/<student>/<assignment>"):
        grading_place(course / "release" / ASSIGNMENT)
    with pytest.raises(FileNotFoundError, match="nbgrader_config.py"):
        grading_place(tmp_path)


def test_the_hidden_block_finds_its_place_from_the_handed_folder_wherever_the_notebook_moved_the_cwd(
        course: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r5, finding 6: an answer cell ran ``os.chdir(tempfile.mkdtemp())``; every later hidden block
    found no course and scored 0 under nbgrader autograde. The folder nbgrader handed the kernel decides."""
    monkeypatch.setenv(FOLDER_VARIABLE, str(course / "autograded" / "ada" / ASSIGNMENT))
    monkeypatch.chdir(tmp_path)
    assert question_points("test_token_nll", {"token_nll": token_nll}) == 3.0


def test_without_a_handed_folder_the_instructors_source_run_finds_its_place_from_the_cwd(
        course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FOLDER_VARIABLE, raising=False)
    monkeypatch.delenv(SEED_VARIABLE)
    monkeypatch.chdir(course / "source" / ASSIGNMENT)
    assert question_result("test_token_nll", {"token_nll": token_nll}).passed > 0


def test_the_reference_earns_every_point_of_its_question(course: Path) -> None:
    workdir = course / "autograded" / "ada" / ASSIGNMENT
    namespace = {"token_nll": token_nll, "perplexity": losses.perplexity}
    assert question_points("test_token_nll", namespace, workdir) == 3.0
    assert question_points("test_perplexity", namespace, workdir) == 1.0


def test_scores_equal_coursekit_grade_partial_credit_for_the_same_student(course: Path) -> None:
    workdir = course / "autograded" / "ada" / ASSIGNMENT

    def wrong_on_float32(logits: torch.Tensor, targets: torch.Tensor, **kwargs: object) -> torch.Tensor:
        out = token_nll(logits, targets, **kwargs)
        return out * 1.5 if logits.dtype == torch.float32 else out

    result = question_result("test_token_nll", {"token_nll": wrong_on_float32}, workdir)
    calls = prepare_calls(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"),
                          course=load_course(course).course_id, student="ada",
                          secret=GRADING_SECRET)["test_token_nll"]
    float64 = sum(1 for c in calls if c.call["args"] and c.call["args"][0].get("dtype") == "float64")
    assert 0 < result.passed < result.total == len(calls)
    assert result.passed >= float64
    assert result.score == round(3.0 * result.passed / result.total, 3)


def test_whole_numbers_stored_for_a_value_question_earn_its_points(course: Path) -> None:
    # Grader review r11, F9: a1 asks for "tensors or floats"; `halves_bits = 2` passed the visible check and lost
    # the hidden one. Stock autograde reads the variables as coursekit grade does (run_graded_call, score_question).
    workdir = course / "autograded" / "ada" / ASSIGNMENT
    namespace = {"fox_total": 1, "fox_mean": 0.25, "fox_perplexity": torch.tensor(0.25).exp(),
                 "halves_total": torch.tensor(6 * 0.6931471805599453), "halves_bits": 2,
                 "halves_perplexity": torch.tensor(4)}
    assert question_points("test_fox", namespace, workdir) == 2.0
    result = question_result("test_fox", {**namespace, "halves_bits": True}, workdir)
    assert (result.passed, result.total) == (5, 6) and result.messages == [
        "1 of 6 hidden checks of the answer: halves_bits: wrong answer"]


def test_a_missing_function_scores_zero_with_its_reason_printed(course: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert question_points("test_token_nll", {}, course / "source" / ASSIGNMENT) == 0.0
    printed = capsys.readouterr().out
    assert "raised NameError (is it defined?)" in printed and "0 of 3 points" in printed


def test_an_unknown_grade_id_is_an_error_naming_it(course: Path) -> None:
    with pytest.raises(ValueError, match="grade_id must name a question of a1_sequence_loss's spec, got 'test_nope'"):
        question_points("test_nope", {}, course / "source" / ASSIGNMENT)


def test_warnings_of_the_graded_calls_change_nothing_and_reach_no_stream(
        course: Path, capfd: pytest.CaptureFixture[str]) -> None:
    def noisy(logits: torch.Tensor, targets: torch.Tensor, **kwargs: object) -> torch.Tensor:
        warnings.warn("a harmless warning from the student's code", RuntimeWarning)
        return token_nll(logits, targets, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # Python's own display (to stderr), not pytest's recorder: what a kernel would show.
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        noisy(torch.zeros(1, 2), torch.tensor([0]))
        shown = capfd.readouterr().err
        points = question_points("test_token_nll", {"token_nll": noisy}, course / "source" / ASSIGNMENT)
    assert "harmless warning" in shown
    assert points == 3.0
    captured = capfd.readouterr()
    assert "harmless warning" not in captured.out + captured.err


def test_a_students_notebook_without_the_handed_seed_is_an_error_naming_the_configuration(
        course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grader review r5, finding 1: the kernel never reads the secret; without the seed it refuses, even with the
    secret at hand (here in the environment, as the test session sets it)."""
    monkeypatch.delenv(SEED_VARIABLE)
    with pytest.raises(RuntimeError, match=f"{SEED_VARIABLE} is not set in the kernel of ada's notebook.*"
                                           "nbgrader_config.py"):
        question_points("test_token_nll", {"token_nll": token_nll}, course / "autograded" / "ada" / ASSIGNMENT)


def test_the_instructors_source_run_draws_its_cases_from_the_secret_without_a_seed(
        course: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SEED_VARIABLE)
    assert os.environ.get(SECRET_VARIABLE) == GRADING_SECRET.hex()
    result = question_result("test_token_nll", {"token_nll": token_nll}, course / "source" / ASSIGNMENT)
    calls = prepare_calls(load_spec(course / "autograde" / f"{ASSIGNMENT}.py"),
                          course=load_course(course).course_id, student=INSTRUCTOR,
                          secret=GRADING_SECRET)["test_token_nll"]
    assert result.total == len(calls) and result.score == 3.0
