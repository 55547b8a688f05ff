"""Stand-ins for the reference functions that the sandbox's copy of ``coursekit`` withholds.

While an assignment is graded, every ``coursekit`` module that defines one of
its answers is replaced, in the sandbox, by a module of the same name whose
public names are made here (see :mod:`coursekit.grading.package_view`). They
import as usual and compute nothing: calling one records the name and raises
:class:`ReferenceWithheld`, so a graded call that reaches the reference ends
with the status ``withheld`` and its question earns nothing.

Example:
    >>> token_nll = tripwire("coursekit.losses.nll.token_nll")
    >>> token_nll(1, 2)
    Traceback (most recent call last):
    ...
    coursekit.grading.withheld.ReferenceWithheld: coursekit.losses.nll.token_nll is withheld while this assignment is graded
    >>> reached()[-1]
    'coursekit.losses.nll.token_nll'

A module that imports a withheld one cannot be in the sandbox either (it would
compute with the stand-ins), so it is replaced by a module whose import raises
:class:`NotAvailable`, an ``ImportError`` that says why; nothing is recorded,
since such a use is no use of the reference:

    >>> unavailable("coursekit.train", "coursekit.losses.smoothing")
    Traceback (most recent call last):
    ...
    coursekit.grading.withheld.NotAvailable: coursekit.train is not available while this assignment is graded: it needs coursekit.losses.smoothing, which defines answers of this assignment
"""

from __future__ import annotations

from typing import Any, Callable, NoReturn

_REACHED: list[str] = []


class ReferenceWithheld(BaseException):
    """Raised by a withheld reference (a BaseException, so ``except Exception`` does not hide it)."""


def tripwire(qualified_name: str) -> Callable[..., Any]:
    """A callable named like the withheld ``qualified_name`` that records each call and raises.

    Args:
        qualified_name: ``module.name`` of the withheld function or class.

    Returns:
        The stand-in.
    """

    def withheld(*args: Any, **kwargs: Any) -> Any:
        _REACHED.append(qualified_name)
        raise ReferenceWithheld(f"{qualified_name} is withheld while this assignment is graded")

    withheld.__name__ = withheld.__qualname__ = qualified_name.rsplit(".", 1)[-1]
    withheld.__module__ = qualified_name.rsplit(".", 1)[0]
    return withheld


def reached() -> list[str]:
    """Every withheld name called so far in this process, in order."""
    return list(_REACHED)


class NotAvailable(ImportError):
    """Raised on importing a part of ``coursekit`` that needs a withheld module (see :func:`unavailable`)."""


def unavailable(name: str, needs: str) -> NoReturn:
    """Raise :class:`NotAvailable` for ``name``, a module or a package's name that needs the withheld ``needs``.

    Args:
        name: what was imported or asked for (``coursekit.train``, ``coursekit.losses.label_smoothed_nll``).
        needs: the withheld module it needs.

    Raises:
        NotAvailable: always.
    """
    raise NotAvailable(f"{name} is not available while this assignment is graded: it needs {needs}, "
                       "which defines answers of this assignment", name=name)
