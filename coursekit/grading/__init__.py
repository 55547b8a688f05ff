"""``coursekit grade``: a sandboxed, parallel, tamper-proof auto-grader on top of nbgrader.

The modules, in the order a submission meets them:

* :mod:`~coursekit.grading.notebook` checks the submitted notebook against the
  released cells and restores tampered or missing ones;
* :mod:`~coursekit.grading.spec` loads the assignment's private grading spec and
  draws each student's hidden inputs and reference answers;
* :mod:`~coursekit.grading.package_view` decides what the sandbox's copy of
  ``coursekit`` holds (every module but those holding the answers and those that need them);
* :mod:`~coursekit.grading.reruns` runs a submission, again without a cell or a
  function that killed it, within one time budget; each attempt is
  :func:`~coursekit.grading.sandbox.run_job`, which puts together a uid
  (:mod:`~coursekit.grading.uids`), cgroups (:mod:`~coursekit.grading.cgroups`),
  a seccomp filter (:mod:`~coursekit.grading.seccomp`) and bubblewrap
  (:mod:`~coursekit.grading.bwrap`) under the limits of :mod:`~coursekit.grading.limits`;
* inside, the trusted :mod:`~coursekit.grading.runner` supervises the
  :mod:`~coursekit.grading.kernel` that runs the student's code, and talks to the
  grader in the messages of :mod:`~coursekit.grading.protocol` (values in the
  format of :mod:`~coursekit.grading.wire`);
* :mod:`~coursekit.grading.executors` run attempts on this machine or on Dask;
* :mod:`~coursekit.grading.verdicts` compares what came back with the references,
  :mod:`~coursekit.grading.outcomes` names the outcome, and
  :mod:`~coursekit.grading.autograded`, :mod:`~coursekit.grading.gradebook` and
  :mod:`~coursekit.grading.driver` write nbgrader's autograded/ tree, the
  gradebook and the per-student reports.

Nothing is imported eagerly here: the sandboxed runner imports
``coursekit.grading.protocol`` and must not pull in nbgrader.
"""
