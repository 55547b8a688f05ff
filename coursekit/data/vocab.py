"""Vocabularies: the map between tokens (words or characters) and integer ids.

Every vocabulary starts with the same four special tokens, at fixed ids, so
that models, batches and losses agree on them without passing them around:

========  ==  ==========================================================
token     id  role
========  ==  ==========================================================
<pad>     0   fills the end of short sequences in a batch; never counted
<bos>     1   beginning of sequence: the first input of every decoder
<eos>     2   end of sequence: the model must predict it to stop
<unk>     3   stands for a token the vocabulary does not know
========  ==  ==========================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, MappingView, Sequence, Set

from coursekit.data._checks import element_text, id_list, items_text, require_int, require_one_of, row_list, shown
from coursekit.losses._checks import type_text

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
LEVELS = ("word", "char")
ON_UNKNOWN = ("unk", "error")


class Vocab:
    """A token <-> id map with the four special tokens at ids 0-3.

    Args:
        tokens: the ordinary tokens, in id order (duplicates and specials are skipped).
        level: ``"word"`` (a text is split on whitespace) or ``"char"`` (a text is a
            sequence of characters, spaces included).

    Raises:
        TypeError: ``tokens`` is a str, a set (its order, and so the ids, would vary between processes) or
            is not iterable, or one of its tokens is not a str (the message names its position, e.g.
            ``tokens[1]``).
        ValueError: ``level`` is unknown, or a token is empty, contains whitespace
            anywhere (for ``"word"``) or is not one character (for ``"char"``); the message names
            its position.

    Example:
        >>> vocab = Vocab.build(["the cat sat", "the dog"], level="word")
        >>> vocab.encode("the dog sat", add_bos=True, add_eos=True)
        [1, 4, 6, 7, 2]
        >>> vocab.decode([1, 4, 6, 7, 2])
        'the dog sat'
        >>> Vocab.build(["ab"], level="char").encode("ba")
        [5, 4]
    """

    def __init__(self, tokens: Iterable[str], *, level: str = "word") -> None:
        level = require_one_of("level", level, LEVELS)
        if isinstance(tokens, str):
            raise TypeError(f"tokens must be a sequence of str tokens, got a str ({shown(tokens)})")
        if isinstance(tokens, Set) and not isinstance(tokens, MappingView):
            # a set of str iterates in hash order, which differs between processes: so would the ids
            raise TypeError(f"tokens must be a sequence of str tokens in the order of their ids, got "
                            f"{items_text(tokens)}, whose order varies between processes")
        tokens = row_list("tokens", tokens, "str tokens")  # type: ignore[assignment]
        self.level = level
        self._itos: list[str] = list(SPECIALS)
        self._stoi = {token: i for i, token in enumerate(self._itos)}
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"tokens[{position}] must be a str, got {element_text(token)}")
            token = str(token)  # a NumPy str_ would be pickled as NumPy's in a checkpoint, which loading refuses
            if token in self._stoi:  # a duplicate or a special token, at either level
                continue
            if token == "":
                raise ValueError(f"tokens[{position}] must be a non-empty string, got ''")
            if level == "word" and any(character.isspace() for character in token):
                raise ValueError(f"tokens[{position}] must not contain whitespace in a word-level vocabulary, "
                                 f"got {shown(token)}")
            if level == "char" and len(token) != 1:
                raise ValueError(f"tokens[{position}] must be a single character in a char-level vocabulary, "
                                 f"got {shown(token)}")
            self._stoi[token] = len(self._itos)
            self._itos.append(token)

    @classmethod
    def build(cls, texts: Iterable[str], *, level: str = "word", min_count: int = 1) -> "Vocab":
        """Build a vocabulary from texts, most frequent tokens first (ties alphabetical).

        The order depends only on the texts, never on hashing or set order, so the
        same texts give the same ids on every machine.

        Args:
            texts: the training texts.
            level: ``"word"`` or ``"char"``.
            min_count: tokens seen fewer times are left out (they become ``<unk>``).

        Returns:
            The vocabulary.

        Raises:
            TypeError: ``texts`` is a str or is not iterable, or one of its texts is not a str.
            ValueError: ``level`` is unknown or ``min_count < 1``.
        """
        level = require_one_of("level", level, LEVELS)
        min_count = require_int("min_count", min_count, minimum=1)
        if isinstance(texts, str):
            raise TypeError(f"texts must be a sequence of str texts, got a str ({shown(texts)}); "
                            "for one text pass [text]")
        texts = row_list("texts", texts, "str texts")  # type: ignore[assignment]
        counts: Counter[str] = Counter()
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] must be a str, got {type(text).__name__}")
            counts.update(_split(text, level))
        ordered = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                         key=lambda t: (-counts[t], t))
        return cls(ordered, level=level)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, specials first."""
        return list(self._itos)

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens: on whitespace (word level) or into characters.

        Raises:
            TypeError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _split(text, self.level)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Join tokens back into a text (with spaces at word level)."""
        return (" " if self.level == "word" else "").join(tokens)

    def token_id(self, token: str) -> int:
        """The id of ``token``.

        Raises:
            TypeError: ``token`` is not a str.
            ValueError: the token is not in the vocabulary.
        """
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {type_text(token)}")
        if token not in self._stoi:
            raise ValueError(f"token {shown(token)} is not in the vocabulary of {len(self)} tokens")
        return self._stoi[token]

    def id_token(self, token_id: int) -> str:
        """The token whose id is ``token_id``.

        Raises:
            TypeError: ``token_id`` is not a Python or NumPy integer, or is a bool.
            ValueError: the id is outside ``[0, len(vocab))``.
        """
        token_id = require_int("token_id", token_id)
        if not 0 <= token_id < len(self):
            raise ValueError(f"token_id must lie in [0, {len(self)}), got {shown(token_id)}")
        return self._itos[token_id]

    def encode(
        self, text: str, *, add_bos: bool = False, add_eos: bool = False, on_unknown: str = "unk"
    ) -> list[int]:
        """Turn a text into ids.

        Args:
            text: the text to encode.
            add_bos: put ``<bos>`` first.
            add_eos: put ``<eos>`` last.
            on_unknown: ``"unk"`` maps an unknown token to ``<unk>``; ``"error"`` raises.

        Returns:
            The list of ids.

        Raises:
            TypeError: ``text`` is not a str, or ``on_unknown`` is an array or a tensor.
            ValueError: ``on_unknown`` is not ``"unk"`` or ``"error"``, or it is ``"error"`` and the text
                holds a token not in the vocabulary.
        """
        on_unknown = require_one_of("on_unknown", on_unknown, ON_UNKNOWN)
        ids = [BOS_ID] if add_bos else []
        for token in self.tokenize(text):
            if token in self._stoi:
                ids.append(self._stoi[token])
            elif on_unknown == "unk":
                ids.append(UNK_ID)
            else:
                raise ValueError(f"text contains the unknown token {shown(token)} (text={shown(text)})")
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int], *, strip_special: bool = True) -> str:
        """Turn ids back into a text.

        With ``strip_special`` (the default), ``<bos>`` and ``<pad>`` are dropped
        and decoding stops at the first ``<eos>``; ``<unk>`` is kept as text.

        Args:
            ids: Python or NumPy ints (never floats or bools, which ``int()`` would truncate or take as
                0 and 1), or a 1-D tensor or NumPy array of an integer dtype (a row of a model's output).
            strip_special: drop the specials as above.

        Returns:
            The text.

        Raises:
            TypeError: ``ids`` is not a sequence of ints or a 1-D integer tensor or array, or an element
                is not an int (the message names its position).
            ValueError: an id is outside ``[0, len(vocab))``.

        Example:
            >>> import torch
            >>> vocab = Vocab(["the", "dog"])
            >>> vocab.decode(torch.tensor([1, 4, 5, 2, 4]))
            'the dog'
            >>> vocab.decode([4, 4.9])
            Traceback (most recent call last):
            ...
            TypeError: ids[1] must be an int, got float 4.9
        """
        tokens: list[str] = []
        for token_id in id_list("ids", ids, size=len(self)):
            if strip_special:
                if token_id == EOS_ID:
                    break
                if token_id in (PAD_ID, BOS_ID):
                    continue
            tokens.append(self._itos[token_id])
        return self.detokenize(tokens)

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly description (for checkpoints)."""
        return {"level": self.level, "tokens": self._itos[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Vocab":
        """Rebuild a vocabulary from :meth:`to_dict`, with the constructor's checks of its tokens and level.

        Raises:
            TypeError: ``data`` is not a mapping; or as the constructor does.
            ValueError: ``data`` lacks ``"level"`` or ``"tokens"``, or its tokens repeat one or hold a special
                token (which would shift the ids); or as the constructor does (whose messages call
                ``data['tokens']`` ``tokens``).

        Example:
            >>> vocab = Vocab.build(["the cat"])
            >>> Vocab.from_dict(vocab.to_dict()) == vocab
            True
            >>> Vocab.from_dict({"tokens": ["cat"]})
            Traceback (most recent call last):
            ...
            ValueError: data must hold 'level' and 'tokens' (as to_dict writes them), got the keys ['tokens']
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping from to_dict, got {type_text(data)}")
        if "level" not in data or "tokens" not in data:
            keys = sorted(shown(key) if isinstance(key, str) else type_text(key) for key in data)
            listed = ", ".join(keys[:5]) + (f", ... ({len(keys)} keys)" if len(keys) > 5 else "")
            raise ValueError(f"data must hold 'level' and 'tokens' (as to_dict writes them), got the keys [{listed}]")
        tokens = data["tokens"]
        if isinstance(tokens, Iterator):  # read once here, and once more below
            tokens = list(tokens)
        vocab = cls(tokens, level=data["level"])  # type: ignore[arg-type]
        # The constructor skips a repeated or special token; to_dict writes neither, and skipping one here would
        # shift every later id away from the ids the checkpoint was trained with.
        tokens = list(tokens)  # type: ignore[call-overload]
        if vocab._itos[len(SPECIALS):] != tokens:
            position = next(i for i, token in enumerate(tokens) if vocab._stoi.get(token) != len(SPECIALS) + i)
            raise ValueError(f"data['tokens'] must hold each token once and no special token (as to_dict writes "
                             f"them), got {shown(tokens[position])} at position {position}")
        return vocab

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.level == other.level and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocab(level={self.level!r}, size={len(self)})"


def _split(text: str, level: str) -> list[str]:
    return text.split() if level == "word" else list(text)
