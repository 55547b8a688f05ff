"""``coursekit grade``: a sandboxed, parallel, tamper-proof auto-grader on top of nbgrader.

Modules, in the order a submission meets them:

* :mod:`~coursekit.grading.notebook` checks the submitted notebook against the
  released cells and restores tampered or missing ones;
* :mod:`~coursekit.grading.spec` loads the assignment's private grading spec and
  generates the hidden inputs and reference answers;
* :mod:`~coursekit.grading.sandbox` runs the student's cells and the hidden calls
  in bubblewrap under rlimits (:mod:`~coursekit.grading.runner` is the process
  inside), on this machine or through :mod:`~coursekit.grading.executors` on Dask;
* :mod:`~coursekit.grading.wire` is the strict JSON format results come back in;
* :mod:`~coursekit.grading.verdicts` compares them with the references;
* :mod:`~coursekit.grading.gradebook` and :mod:`~coursekit.grading.driver` write
  nbgrader's autograded/ tree, the gradebook and the per-student reports.

Nothing is imported eagerly here: the sandboxed runner imports
``coursekit.grading.wire`` and must not pull in nbgrader.
"""
