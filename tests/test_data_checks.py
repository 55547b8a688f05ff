"""The shared argument checks of coursekit.data, coursekit.models and the training loop, at their public boundary."""

from __future__ import annotations

import ast
import pathlib
import random
import re

import numpy as np
import pytest
import torch

from coursekit.data import frame_task
from coursekit.data._checks import require_one_of
from coursekit.data.batching import (
    pad_batch,
    seq2seq_batch,
    stream_values,
    tbptt_windows,
    token_budget_batches,
    token_stream,
)
from coursekit.data.translation import number_to_words, preference_pairs, translation_task
from coursekit.data.vocab import Vocab
from coursekit.models.ctc import ctc_best_path, ctc_prefix_beam_search
from coursekit.models.ngram import NGramLM
from coursekit.losses._checks import require_choice
from coursekit.models.rnn import RNNLM
from coursekit.models.seq2seq import Seq2Seq
from coursekit.models.transformer import TransformerLM

pytestmark = pytest.mark.models


@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_an_int_beyond_the_float_range_is_a_value_error_naming_the_argument(huge: int) -> None:
    size = f"{'a negative' if huge < 0 else 'an'} int of {huge.bit_length()} bits"
    with pytest.raises(ValueError, match=rf"dropout must be a number in the float range, got {size}$"):
        RNNLM(vocab_size=10, dropout=huge)


def test_a_huge_int_below_the_minimum_is_described_by_its_size_not_printed() -> None:
    # str() of an int of more than 4300 digits raises a ValueError of its own, about the digits.
    # The sign stays: "must be an int >= 2, got an int of 16610 bits" would read as a large positive value.
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 2, got a negative int of 16610 bits$"):
        RNNLM(vocab_size=-(10**5000))


def test_a_small_int_is_still_printed_as_it_was_given() -> None:
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 2, got 1$"):
        RNNLM(vocab_size=1)


HUGE = 10**5000
HUGE_TEXT = "an int of 16610 bits"

#: Every coursekit.data message that shows a received int it formats itself, called with an int of
#: more than 4300 digits: each must name its argument and describe the int, not raise str()'s error.
HUGE_INT_MESSAGES = [
    ("number_to_words", lambda: number_to_words(HUGE), rf"number must lie in \[0, 9999\], got {HUGE_TEXT}$"),
    ("translation_task target_noise", lambda: translation_task(target_noise=10**300),
     r"target_noise must lie in \[0, 1\], got an int of 997 bits, which is 1e\+300 as a float$"),
    ("translation_task num_train", lambda: translation_task(num_train=HUGE),
     rf"num_train \+ num_valid \+ num_test must be <= \d+ \(.*\), got {HUGE_TEXT}$"),
    ("translation_task num_ood", lambda: translation_task(num_ood=HUGE), rf"num_ood must be <= \d+ \(.*\), got {HUGE_TEXT}$"),
    ("translation_task max_in_distribution_words", lambda: translation_task(max_in_distribution_words=HUGE),
     rf"num_ood must be <= 0 \(the numbers whose source has more than max_in_distribution_words words, here "
     rf"{HUGE_TEXT}\), got 500$"),
    ("token_budget_batches negative length", lambda: token_budget_batches([3, -HUGE], 8, seed=0),
     rf"lengths\[1\] must be >= 0, got a negative int of 16610 bits$"),
    ("token_budget_batches long length", lambda: token_budget_batches([3, HUGE], 8, seed=0),
     rf"lengths\[1\] must be <= max_tokens=8 \(an example must fit a batch on its own\), got {HUGE_TEXT}$"),
    ("tbptt_windows step", lambda: tbptt_windows(torch.zeros(1, 4, dtype=torch.long), HUGE, 1),
     rf"bptt must be >= step={HUGE_TEXT} .*, got 1$"),
    ("token_stream batch_size", lambda: token_stream([[5, 6]], HUGE), rf"batch_size={HUGE_TEXT} is too large"),
    ("stream_values batch_size", lambda: stream_values([[0.5, 0.1]], HUGE), rf"batch_size={HUGE_TEXT} is too large"),
    ("Vocab.id_token", lambda: Vocab(["a", "b"]).id_token(HUGE), rf"token_id must lie in \[0, \d+\), got {HUGE_TEXT}$"),
    ("Vocab.decode", lambda: Vocab(["a", "b"]).decode([HUGE]), rf"ids\[0\] must lie in \[0, \d+\), got {HUGE_TEXT}$"),
    ("pad_batch id", lambda: pad_batch([[4], [5, HUGE]]), rf"sequences\[1\]\[1\] must lie in \[0, 2\*\*63\), got {HUGE_TEXT}$"),
]


@pytest.mark.parametrize(("case", "call", "message"), HUGE_INT_MESSAGES, ids=[c[0] for c in HUGE_INT_MESSAGES])
def test_every_data_message_describes_a_huge_int_by_its_size(case, call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_a_data_message_still_prints_a_small_int_as_given() -> None:
    with pytest.raises(ValueError, match=r"number must lie in \[0, 9999\], got 10000$"):
        number_to_words(10000)
    with pytest.raises(ValueError, match=r"bptt must be >= step=3 .*, got 2$"):
        tbptt_windows(torch.zeros(1, 4, dtype=torch.long), 3, 2)


def test_frame_task_takes_a_numpy_float_noise_as_its_python_float() -> None:
    # np.float64 subclasses float and always passed; np.float32 did not ("must be a number, got float32").
    small = dict(num_train=3, num_valid=1, num_test=1)
    got, want = frame_task(**small, noise=np.float32(0.1)), frame_task(**small, noise=float(np.float32(0.1)))
    assert all(torch.equal(a.features, b.features) for a, b in zip(got.train, want.train, strict=True))


@pytest.mark.parametrize("value", [np.float32(-0.5), np.int64(-1)], ids=repr)
def test_a_negative_numpy_noise_is_a_value_error_showing_its_number(value) -> None:
    with pytest.raises(ValueError, match=rf"^noise must be >= 0.0, got {float(value) if isinstance(value, np.floating) else int(value)}$"):
        frame_task(noise=value)


@pytest.mark.parametrize("value", [np.True_, True, np.complex64(0.1)], ids=repr)
def test_a_bool_or_complex_noise_is_a_type_error_naming_it(value) -> None:
    with pytest.raises(TypeError, match=r"^noise must be a real number \(int, float or a NumPy real scalar\), got "):
        frame_task(noise=value)



def test_a_numpy_integer_size_gives_the_task_of_its_python_int() -> None:
    # Refused before with the self-contradicting "num_train must be an int, got int64 np.int64(3)".
    got = frame_task(num_train=np.int64(3), num_valid=np.int32(1), num_test=np.uint8(1), num_labels=np.int16(4),
                     max_silence=np.int64(1), labels_per_example=(np.int64(2), np.int64(3)))
    want = frame_task(num_train=3, num_valid=1, num_test=1, num_labels=4, max_silence=1, labels_per_example=(2, 3))
    assert type(got.num_classes) is int and got.num_classes == want.num_classes
    assert all(torch.equal(a.features, b.features) for a, b in zip(got.train, want.train, strict=True))
    assert [a.labels for a in got.test] == [b.labels for b in want.test]


@pytest.mark.parametrize(
    ("value", "received"),
    [(np.True_, type(np.True_).__name__), (True, "bool"),
     (torch.tensor(3), "a tensor of shape () and dtype torch.int64"), (3.0, "float"), (np.float32(3), "float32")],
    ids=["numpy bool", "bool", "int tensor", "float", "numpy float"],
)
def test_a_size_that_is_no_python_or_numpy_integer_is_a_type_error_naming_its_type(value, received) -> None:
    with pytest.raises(TypeError, match=rf"^num_train must be an int, got {re.escape(received)}$"):
        frame_task(num_train=value)


def test_a_numpy_integer_seed_is_a_type_error_as_in_torch_manual_seed() -> None:
    # the rule the check follows: every seed reaches one of these two, and both refuse a NumPy integer
    with pytest.raises(TypeError):
        torch.Generator().manual_seed(np.int64(3))
    with pytest.raises(TypeError):
        random.Random(np.int64(3))
    with pytest.raises(TypeError, match=r"^seed must be a Python int, got int64$"):
        frame_task(seed=np.int64(3))


@pytest.mark.parametrize(
    ("value", "shown_as"),
    [(float("inf"), "inf"), (float("-inf"), "-inf"), (np.float32("inf"), "inf"), (float("nan"), "nan"),
     (np.longdouble("1e400"), str(np.longdouble("1e400")))],
    ids=["inf", "-inf", "float32 inf", "nan", "longdouble 1e400"],
)
def test_a_non_finite_noise_is_a_value_error_naming_it(value, shown_as) -> None:
    # inf was taken (every feature inf), and a longdouble beyond the float range became inf.
    with pytest.raises(ValueError, match=rf"^noise must be a finite number, got {re.escape(shown_as)}$"):
        frame_task(noise=value)


def test_a_numpy_float_in_a_message_is_shown_as_given_not_widened() -> None:
    with pytest.raises(ValueError, match=r"^noise must be >= 0.0, got -0.1$"):
        frame_task(noise=np.float32(-0.1))


HUGE_INT_INSIDE = [
    ("num_train tuple", lambda: frame_task(num_train=(HUGE,)), TypeError, r"^num_train must be an int, got tuple$"),
    ("noise tuple", lambda: frame_task(noise=(HUGE,)), TypeError, r"^noise must be a real number \(int, float or a NumPy real scalar\), got tuple$"),
    ("noise list", lambda: frame_task(noise=[HUGE]), TypeError, r"^noise must be a real number \(int, float or a NumPy real scalar\), got list$"),
    ("nested bound", lambda: frame_task(labels_per_example=((HUGE,), 1)), TypeError,
     r"^labels_per_example must be \(low, high\) ints, got \(tuple, int\)$"),
    ("three bounds", lambda: frame_task(labels_per_example=(HUGE, 1, 2)), TypeError,
     r"^labels_per_example must be \(low, high\) ints, got a tuple of 3 items$"),
    ("seq2seq three items", lambda: seq2seq_batch([([HUGE], [1], [2])]), TypeError,
     r"^pairs\[0\] must be a \(source ids, target ids\) pair, got a tuple of 3 items$"),
    ("preference three items", lambda: preference_pairs([("x", "1", HUGE)]), TypeError,
     r"^pairs\[0\] must be a \(source, reference\) pair of str, got a tuple of 3 items$"),
    ("preference int reference", lambda: preference_pairs([("x", HUGE)]), TypeError,
     r"^pairs\[0\]\[1\] must be a str of digits, got int$"),
    ("one_of tuple", lambda: RNNLM(vocab_size=10, cell=(HUGE,)), ValueError, r"^cell must be one of .*, got tuple$"),
]


@pytest.mark.parametrize(("case", "call", "error", "message"), HUGE_INT_INSIDE, ids=[c[0] for c in HUGE_INT_INSIDE])
def test_a_container_holding_a_huge_int_is_named_by_its_type(case, call, error, message) -> None:
    # repr of the container raised Python's digit-limit ValueError, which names no argument.
    with pytest.raises(error, match=message):
        call()


#: A container of more than sys.maxsize items: len() raises OverflowError, which names no argument.
HUGE_RANGE = range(2**64)


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: frame_task(labels_per_example=HUGE_RANGE), r"^labels_per_example must be \(low, high\) ints, got range$"),
     (lambda: seq2seq_batch([HUGE_RANGE]), r"^pairs\[0\] must be a \(source ids, target ids\) pair, got range$"),
     (lambda: preference_pairs([HUGE_RANGE]), r"^pairs\[0\] must be a \(source, reference\) pair of str, got range$")],
    ids=["frame_task range", "seq2seq_batch pair", "preference_pairs pair"],
)
def test_a_container_too_long_for_len_is_a_type_error_naming_the_argument(call, message) -> None:
    # items_text called len(), which raised "Python int too large to convert to C ssize_t"
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: seq2seq_batch([frozenset([(4,), (5,)])]),
      r"^pairs\[0\] must be a \(source ids, target ids\) pair, got a frozenset of 2 items, whose order varies "
      r"between processes$"),
     (lambda: preference_pairs([{"twelve", "1 2"}]),
      r"^pairs\[0\] must be a \(source, reference\) pair of str, got a set of 2 items, whose order varies "
      r"between processes$"),
     (lambda: preference_pairs([{"twelve": "1 2", "three": "3"}]),
      r"^pairs\[0\] must be a \(source, reference\) pair of str, got a dict of 2 items, which unpacks into its keys$"),
     # losses review r25: dict.keys() is a Set, and the message blamed an order that is the dict's own
     (lambda: preference_pairs([{"twelve": "1 2", "three": "3"}.keys()]),
      r"^pairs\[0\] must be a \(source, reference\) pair of str, got a dict_keys of 2 items, a view of a "
      r"mapping's entries$"),
     (lambda: seq2seq_batch([{"src": [4], "tgt": [5]}.values()]),
      r"^pairs\[0\] must be a \(source ids, target ids\) pair, got a dict_values of 2 items, a view of a "
      r"mapping's entries$")],
    ids=["frozenset", "set", "dict", "dict_keys", "dict_values"],
)
def test_a_pair_given_as_a_set_or_mapping_is_a_type_error_naming_it(call, message) -> None:
    # a set of two str unpacked in hash order, so preference_pairs chose a different reference in each process
    with pytest.raises(TypeError, match=message):
        call()


LONG_TEXT = "the cat " * 10000


@pytest.mark.parametrize(
    ("call", "name"),
    [(lambda: require_one_of("level", LONG_TEXT, ("word", "char")), "level"),
     (lambda: Vocab(["a"]).encode("a", on_unknown=LONG_TEXT), "on_unknown")],
    ids=["require_one_of", "encode on_unknown"],
)
def test_a_long_str_that_is_no_choice_is_shown_by_its_start_and_length(call, name) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{name} must be one of ") and len(message) < 200, message
    assert message.endswith("'the cat the cat the cat the cat the cat '... (80000 characters)")


def test_translation_task_sizes_given_as_small_numpy_ints_do_not_overflow() -> None:
    import numpy as np

    from coursekit.data.translation import translation_task

    for dtype in (np.int8, np.uint8):
        task = translation_task(seed=0, num_train=dtype(100), num_valid=dtype(100), num_test=dtype(100), num_ood=dtype(2))
        assert (len(task.train), len(task.valid), len(task.test), len(task.ood)) == (100, 100, 100, 2), dtype


@pytest.mark.parametrize(("value", "shown_as"), [(np.float32(1.5), "1.5"), (1.5, "1.5"), (np.int64(2), "2")], ids=repr)
def test_translation_task_shows_a_target_noise_above_one_as_given(value, shown_as) -> None:
    # the upper bound showed repr: "got np.float32(1.5)", where every other data message shows "1.5"
    with pytest.raises(ValueError, match=rf"^target_noise must lie in \[0, 1\], got {re.escape(shown_as)}$"):
        translation_task(target_noise=value)


@pytest.mark.parametrize(("value", "shown_as"), [(-0.1, "-0.1"), (np.float32(-0.1), "-0.1"), (np.float32(1.1), "1.1")],
                         ids=repr)
def test_translation_task_has_one_range_message_for_a_target_noise_below_zero_and_above_one(value, shown_as) -> None:
    # a negative target_noise read "must be >= 0.0" where one above 1 read "must lie in [0, 1]"
    with pytest.raises(ValueError, match=rf"^target_noise must lie in \[0, 1\], got {re.escape(shown_as)}$"):
        translation_task(target_noise=value)


@pytest.mark.parametrize(
    ("value", "received"),
    [(np.int64(1), "1"), (np.float32(0.5), "0.5"), (np.uint8(7), "7"), (np.float64(0.5), "0.5"),
     (np.float64("nan"), "nan")],
    ids=repr,
)
def test_require_one_of_shows_a_numpy_number_by_its_value(value, received) -> None:
    # it showed the type alone ("got int64") in a ValueError about the value, and np.float64, a float
    # subclass, by its repr ("got np.float64(0.5)")
    with pytest.raises(ValueError, match=rf"^cell must be one of 'elman', 'gru', 'lstm', got {received}$"):
        RNNLM(vocab_size=10, cell=value)


@pytest.mark.parametrize(
    ("build", "value", "shown_as"),
    [
        (lambda dropout: RNNLM(10, dropout=dropout), 1.5, "1.5"),
        (lambda dropout: RNNLM(10, dropout=dropout), np.float32(2), "2.0"),
        (lambda dropout: TransformerLM(10, dropout=dropout), 1.5, "1.5"),
        (lambda dropout: Seq2Seq(10, 10, dropout=dropout), np.int64(3), "3"),
        (lambda dropout: RNNLM(10, dropout=dropout), -0.1, "-0.1"),
    ],
    ids=["RNNLM-1.5", "RNNLM-float32", "TransformerLM-1.5", "Seq2Seq-int64", "RNNLM-negative"],
)
def test_a_dropout_above_one_is_refused_with_the_package_message(build, value, shown_as) -> None:
    # it passed the check (from below only) and reached nn.Dropout's own message; a negative one is described
    # by the same range (losses review r18, finding 1: it said "must be >= 0.0")
    with pytest.raises(ValueError, match=rf"^dropout must lie in \[0, 1\], got {re.escape(shown_as)}$"):
        build(value)


def test_require_one_of_shows_a_numpy_str_by_its_value_as_require_choice_does() -> None:
    # it showed repr: "got np.str_('xyz')", where the losses' require_choice shows "got 'xyz'"
    with pytest.raises(ValueError, match=r"^cell must be one of 'elman', 'gru', 'lstm', got 'xyz'$"):
        RNNLM(vocab_size=10, cell=np.str_("xyz"))
    with pytest.raises(ValueError, match=r"^reduction must be one of 'mean', 'sum', got 'xyz'$"):
        require_choice("reduction", np.str_("xyz"), ("mean", "sum"))


def test_require_one_of_returns_a_numpy_str_as_a_plain_str() -> None:
    # a model's config kept the np.str_, which a checkpoint then pickled as a NumPy scalar
    chosen = require_one_of("cell", np.str_("gru"), ("elman", "gru", "lstm"))
    assert type(chosen) is str and chosen == "gru"
    assert type(RNNLM(vocab_size=10, cell=np.str_("gru")).config["cell"]) is str


@pytest.mark.parametrize(
    ("value", "received"),
    [(np.array(["lstm", "gru"]), "ndarray"), (np.array("gru"), "ndarray"),
     (torch.tensor([1, 2]), "a tensor of shape (2,) and dtype torch.int64")],
    ids=["array", "0-d array", "tensor"],
)
def test_require_one_of_refuses_an_array_or_tensor_with_a_type_error_naming_the_argument(value, received) -> None:
    # `value in choices` raised NumPy's "truth value of an array ... is ambiguous", naming no argument
    with pytest.raises(TypeError, match=rf"^cell must be one of 'elman', 'gru', 'lstm', got {re.escape(received)}$"):
        RNNLM(vocab_size=10, cell=value)


def test_a_bound_failed_only_by_the_float_shows_that_float() -> None:
    tiny = np.longdouble("1e-400")
    if float(tiny) != 0.0 or tiny == 0.0:
        pytest.skip("this platform's longdouble is float64: 1e-400 is 0 as given")
    # "k must be > 0.0, got 1e-400" contradicted itself: the bound is checked on the float
    with pytest.raises(ValueError, match=rf"^k must be > 0.0, got {re.escape(str(tiny))}, which is 0.0 as a float$"):
        NGramLM(vocab_size=4, k=tiny)


@pytest.mark.parametrize("value", [np.array(3), np.array([3])], ids=["0-d", "1-d"])
def test_a_size_given_as_a_numpy_array_is_a_type_error_as_a_tensor_is(value) -> None:
    # a 0-d array passed through operator.index as 3
    with pytest.raises(TypeError, match=r"^num_train must be an int, got ndarray$"):
        frame_task(num_train=value)


def test_ctc_decoders_take_a_numpy_blank_as_its_python_int() -> None:
    log_probs = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]).log()
    for blank in (np.int8(1), np.uint8(1), np.int64(1)):
        assert ctc_best_path(log_probs, blank=blank) == ctc_best_path(log_probs, blank=1)
        assert ctc_prefix_beam_search(log_probs, blank=blank) == ctc_prefix_beam_search(log_probs, blank=1)


def test_a_ctc_decoder_describes_a_huge_blank_by_its_size() -> None:
    # str() of the int raised Python's digit-limit ValueError, which names no argument
    log_probs = torch.zeros(3, 4).log_softmax(-1)
    with pytest.raises(ValueError, match=rf"^blank must lie in \[0, 4\) \(V = log_probs.shape\[1\]\), got {HUGE_TEXT}$"):
        ctc_best_path(log_probs, blank=HUGE)


#: The checks that return their argument converted (a NumPy number as a Python one, a flag as a bool, a NumPy
#: str as a plain str). ``require_seed`` returns it unchanged, so dropping its result loses nothing. The losses'
#: ``require_choice`` also returns a plain str, but its callers only compare the value and keep none of it.
CONVERTING_CHECKS = {"require_int", "require_number", "require_positive", "require_nonnegative", "require_in_interval",
                     "require_flag", "finite_float", "as_int", "as_index", "as_real", "require_id", "require_one_of"}


def _called_name(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)


def _lost_conversions(path: pathlib.Path) -> list[str]:
    """Where ``path`` converts an argument and then keeps using the raw value."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        parameters = {a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs}
        returns_a_value = any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(function))
        for node in ast.walk(function):
            # a check called for its exception alone, its result dropped (also inside a comprehension)
            if isinstance(node, ast.Expr):
                called = node.value.elt if isinstance(node.value, (ast.ListComp, ast.SetComp, ast.GeneratorExp)) else node.value
                if _called_name(called) in CONVERTING_CHECKS:
                    found.append(f"{path}:{node.lineno} {function.name} drops {_called_name(called)}(...)")
            # a helper that rebinds a parameter to its checked value and returns nothing: the caller keeps
            # the raw one (a constructor consumes what it checks, so it is not such a helper)
            if (isinstance(node, ast.Assign) and _called_name(node.value) in CONVERTING_CHECKS
                    and not returns_a_value and function.name != "__init__"):
                rebound = {t.id for t in node.targets if isinstance(t, ast.Name)} & parameters
                if rebound:
                    found.append(f"{path}:{node.lineno} {function.name} converts {sorted(rebound)} and returns nothing")
    return found


def test_no_checked_argument_is_converted_and_then_thrown_away() -> None:
    # translation_task dropped require_int's results (an np.int8 size sum wrapped), and the CTC decoders'
    # _check_log_probs converted blank for itself only
    package = pathlib.Path(__file__).resolve().parents[1] / "coursekit"
    found = [line for path in sorted(package.rglob("*.py")) for line in _lost_conversions(path)]
    assert found == [], "\n".join(found)


def test_a_str_of_at_most_40_characters_is_shown_whole_escapes_and_all():
    # losses review r29, F1: the repr cut added for containers cut a 39-character str (its repr has 41)
    # and a short str of escapes mid-escape, with the repr's length given as the str's
    from coursekit.data import Vocab
    from coursekit.data._checks import shown

    word = "supercalifragilisticexpialidocious-ness"
    assert shown(word) == repr(word) and shown("\x00" * 10) == repr("\x00" * 10)
    with pytest.raises(ValueError, match=f"^token {word!r} is not in the vocabulary of 5 tokens$"):
        Vocab(["cat"]).token_id(word)


def test_a_numpy_str_is_shown_as_the_str_it_is_and_an_unhashable_start_is_named():
    # data review r30, F1 and F4: a short np.str_ was shown as np.str_('dog'), a long one as a str; ToyLanguage
    # with an unhashable start raised "unhashable type: 'list'", naming no argument
    from coursekit.data import ToyLanguage, Vocab

    with pytest.raises(ValueError, match=r"^token 'dog' is not in the vocabulary of 5 tokens$"):
        Vocab(["cat"]).token_id(np.str_("dog"))
    with pytest.raises(TypeError, match=r"^start must be a state of arcs \(a str\), got list$"):
        ToyLanguage({"s": [("<eos>", 1.0, None)]}, start=["s"])
