"""A question's scope in the sandbox's kernel: the notebook's names as they stood at its test cell.

Stock ``nbgrader autograde`` runs a test cell's hidden block where the cell
stands, so it scores the functions and values bound at that moment. The
sandbox makes the hidden calls after the last cell; to score the same
definitions, the kernel keeps a shallow copy of its namespace after each test
cell (:func:`snapshot`), and a question's adapters and calls run in a scope
built from its cell's copy (:func:`question_scope`). In that scope every
function the notebook defined is a copy of itself whose globals are the scope,
so a helper it looks up by name when called is the one bound at the test
cell too, not whatever a later cell (a scratch cell, say) bound to that name.

What a shallow copy cannot give back, the two graders still see differently:

* an object changed in place after the test cell (a list appended to, a
  model trained further, a tensor written into) is seen as it is at the end;
* code reached otherwise than through a plain function's globals looks names
  up in the notebook's namespace as it is at the end: methods of a class the
  notebook defined, functions held in a closure (the function a decorator
  wrapped), in a ``functools.partial``, or in a container.

The copy holds references, not objects: its memory is one dict entry per name.
The objects it refers to stay alive until the calls are done, where a later
cell would have dropped them (they were alive at the test cell, where stock
nbgrader calls them).

Everything here runs in the kernel, next to the student's code, so nothing
here is trusted: which cells are copied, and which copy each call runs in, is
the runner's choice (:class:`~coursekit.grading.protocol.RunCell`'s
``snapshot``, :class:`~coursekit.grading.protocol.RunCall`'s ``scope``).
"""

from __future__ import annotations

import copy
import types
from typing import Any


def snapshot(namespace: dict[str, Any]) -> dict[str, Any]:
    """The names bound in ``namespace`` now, each to the object it holds now (a shallow copy).

    Args:
        namespace: the notebook's globals.

    Returns:
        A new dict with the same items.

    Example:
        >>> namespace = {"answer": "A"}
        >>> kept = snapshot(namespace)
        >>> namespace["answer"] = "B"
        >>> kept["answer"]
        'A'
    """
    return dict(namespace)


def _rebound(function: types.FunctionType, scope: dict[str, Any]) -> types.FunctionType:
    """A copy of ``function`` that looks its global names up in ``scope``.

    The copy has the same code, defaults (keyword-only ones included),
    closure, name, qualified name, docstring, annotations and attributes.

    Args:
        function: a plain Python function.
        scope: the globals of the copy.

    Returns:
        The copy.

    Example:
        >>> namespace = {"helper": lambda: "late"}
        >>> exec("def f(*, k=1):\\n    return helper(), k", namespace)
        >>> _rebound(namespace["f"], {"helper": lambda: "early"})(k=2)
        ('early', 2)
    """
    copied = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                                function.__closure__)
    copied.__kwdefaults__ = copy.copy(function.__kwdefaults__)
    copied.__qualname__ = function.__qualname__
    copied.__doc__ = function.__doc__
    copied.__annotations__ = dict(function.__annotations__)
    copied.__dict__.update(function.__dict__)
    return copied


def question_scope(kept: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    """The scope a question's adapters and calls run in: ``kept``, with the notebook's functions rebound to it.

    A function counts as the notebook's when its globals are ``namespace``
    (the library's functions keep theirs). A function bound to several names
    is rebound once, so the names still hold one object.

    Args:
        kept: the :func:`snapshot` taken after the question's test cell.
        namespace: the notebook's globals (as they are now).

    Returns:
        A new dict; running code in it changes neither ``kept`` nor ``namespace``.

    Example:
        >>> namespace = {}
        >>> exec("def helper():\\n    return 'at the test cell'\\n"
        ...      "def answer():\\n    return helper()\\n", namespace)
        >>> kept = snapshot(namespace)
        >>> exec("def helper():\\n    return 'in a later cell'\\n", namespace)
        >>> namespace["answer"](), question_scope(kept, namespace)["answer"]()
        ('in a later cell', 'at the test cell')
    """
    scope = dict(kept)
    copies: dict[int, types.FunctionType] = {}
    for name, value in kept.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            if id(value) not in copies:
                copies[id(value)] = _rebound(value, scope)
            scope[name] = copies[id(value)]
    return scope
