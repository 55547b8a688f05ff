"""coursekit: reference implementations for the course on sequence-level loss.

The package holds the course's loss functions (:mod:`coursekit.losses`), its
generated data sets (:mod:`coursekit.data`), tiny language models
(:mod:`coursekit.models`), the one training loop (:mod:`coursekit.train`) and the
auto-grader (:mod:`coursekit.grading`). The book's pages import from here and
never redefine a library function.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
