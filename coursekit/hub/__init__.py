"""A JupyterHub for the course on one machine: ``make hub`` (``python -m coursekit.hub``).

* :mod:`coursekit.hub.accounts`: the system accounts ``instructor`` and ``student1`` to ``student3``;
* :mod:`coursekit.hub.layout`: the hub's folder (exchange, each role's Jupyter configuration)
  and the instructor's copy of the course;
* :mod:`coursekit.hub.config`: the JupyterHub settings (PAM, ``LocalProcessSpawner``, the proxy);
* :mod:`coursekit.hub.machine`: the ports (free ones, and the check that the public one is);
* :mod:`coursekit.hub.shared_python`: whether other users can run this Python, and the private mount
  namespace that opens its installation to them when it lies under a closed folder (``/root``);
* :mod:`coursekit.hub.supervisor`: runs ``jupyterhub`` as a child and stops what its tree leaves behind;
* ``python -m coursekit.hub``: puts them together and runs ``jupyterhub`` in the foreground.

The instructors' page (``book/for_instructors.md``) says how this maps to a production hub.
"""
