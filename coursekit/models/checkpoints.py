"""Saving and loading models as plain tensors plus a JSON-like config.

A checkpoint is a dict of tensors, strings, numbers, lists and dicts only, so
it loads with ``torch.load(weights_only=True)``: no pickled code runs when a
checkpoint is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from coursekit.models.rnn import RNNLM
from coursekit.models.seq2seq import Seq2Seq
from coursekit.models.transformer import TransformerLM

MODEL_CLASSES: dict[str, type[nn.Module]] = {"RNNLM": RNNLM, "TransformerLM": TransformerLM, "Seq2Seq": Seq2Seq}
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def save_checkpoint(model: nn.Module, path: str | Path, *, metadata: Mapping[str, object] | None = None) -> Path:
    """Write ``model`` (one of :data:`MODEL_CLASSES`) with its config and optional metadata.

    Args:
        model: an :class:`RNNLM`, :class:`TransformerLM` or :class:`Seq2Seq`.
        path: the ``.pt`` file to write (parent folders are created).
        metadata: plain data to keep alongside (vocabularies, scores, seeds).

    Returns:
        The path written.

    Raises:
        TypeError: the model is not one of the known classes.
    """
    kind = type(model).__name__
    if kind not in MODEL_CLASSES:
        raise TypeError(f"model must be one of {sorted(MODEL_CLASSES)}, got {kind}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    torch.save({"kind": kind, "config": dict(model.config), "state_dict": state,  # type: ignore[arg-type]
                "metadata": dict(metadata or {})}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, object]]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``.

    Returns:
        ``(model in eval mode, metadata)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a coursekit checkpoint.

    Example:
        >>> import tempfile
        >>> model = RNNLM(vocab_size=5, embed_dim=2, hidden_size=3)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = save_checkpoint(model, Path(folder) / "m.pt", metadata={"note": "demo"})
        ...     loaded, meta = load_checkpoint(Path(folder) / "m.pt")
        >>> type(loaded).__name__, meta, torch.equal(loaded.out.weight, model.out.weight)
        ('RNNLM', {'note': 'demo'}, True)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("kind") not in MODEL_CLASSES:
        raise ValueError(f"path {str(path)!r} is not a coursekit checkpoint (no known 'kind')")
    config = dict(data["config"])
    model = MODEL_CLASSES[data["kind"]](**config)
    model.load_state_dict(data["state_dict"])
    return model.eval(), dict(data.get("metadata", {}))


def shipped_checkpoint(name: str) -> Path:
    """Path of a checkpoint shipped with the package (made by ``python -m coursekit.models.pretrain``).

    Raises:
        ValueError: no shipped checkpoint has that name.
    """
    path = CHECKPOINT_DIR / f"{name}.pt"
    if not path.is_file():
        available = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
        raise ValueError(f"name must be one of the shipped checkpoints {available}, got {name!r}")
    return path
