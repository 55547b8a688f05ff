"""The JupyterHub settings of ``make hub``: one machine, system accounts, nbgrader for one course.

:func:`configure_hub` sets, on the ``c`` of a ``jupyterhub_config.py``:

* the public address ``http://127.0.0.1:<port>`` (loopback only) and loopback ports for
  the hub's API and the proxy's, free when the hub starts, so that they rarely collide with
  another program's (a port is probed, then released for JupyterHub to bind);
* ``configurable-http-proxy`` from the npm package the repository pins;
* PAM login for the course's accounts only (:mod:`coursekit.hub.accounts`);
* ``LocalProcessSpawner``: each user's ``jupyterhub-singleuser`` (the course's virtual
  environment) runs as that user, in their home folder, and opens JupyterLab;
* per role, ``JUPYTER_CONFIG_PATH`` pointing at that role's folder
  (:mod:`coursekit.hub.layout`): the instructor gets the course's nbgrader settings and the
  Formgrader, students the course id and exchange and the Assignments tab only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coursekit.course.config import COURSE_ID_ENV, EXCHANGE_ENV
from coursekit.hub.accounts import ACCOUNTS, INSTRUCTOR
from coursekit.hub.layout import HubLayout

#: seconds a single-user server may take to answer: JupyterLab with the nbgrader extensions
#: starts in a few seconds, but on a loaded shared machine far slower than JupyterHub's default.
SERVER_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class HubSettings:
    """What :func:`configure_hub` needs to know about this machine.

    Attributes:
        layout: the hub's folder.
        port: the public port on 127.0.0.1.
        hub_api_port: a free loopback port for the hub's own API.
        proxy_api_port: a free loopback port for the proxy's API.
        proxy_command: the ``configurable-http-proxy`` executable.
        venv_bin: the ``bin`` folder of the course's virtual environment (every user runs it).
        course_id: the nbgrader course id.
    """

    layout: HubLayout
    port: int
    hub_api_port: int
    proxy_api_port: int
    proxy_command: Path
    venv_bin: Path
    course_id: str


def server_environment(settings: HubSettings, user: str) -> dict[str, str]:
    """The environment of ``user``'s single-user server (and of its kernels and terminals).

    Example:
        >>> from pathlib import Path
        >>> s = HubSettings(HubLayout(Path("/srv/hub")), 8000, 8081, 8001, Path("/chp"), Path("/venv/bin"), "seqloss")
        >>> env = server_environment(s, "student1")
        >>> env["JUPYTER_CONFIG_PATH"], env["COURSEKIT_EXCHANGE"]
        ('/srv/hub/jupyter/students', '/srv/hub/exchange')
        >>> server_environment(s, "instructor")["JUPYTER_CONFIG_PATH"]
        '/srv/hub/jupyter/instructor'
    """
    layout = settings.layout
    config = layout.instructor_config if user == INSTRUCTOR else layout.students_config
    return {
        "JUPYTER_CONFIG_PATH": str(config),
        # nbgrader, coursekit and the kernels come from the course's environment, in a terminal too.
        "PATH": os.pathsep.join((str(settings.venv_bin), "/usr/local/bin", "/usr/bin", "/bin")),
        EXCHANGE_ENV: str(layout.exchange),
        COURSE_ID_ENV: settings.course_id,
    }


def configure_hub(c: Any, settings: HubSettings) -> None:
    """Apply the hub's settings to the traitlets config ``c`` of ``jupyterhub_config.py``.

    Args:
        c: the ``Config`` that ``get_config()`` returns in ``jupyterhub_config.py``.
        settings: ports, paths and the course id.

    Example:
        >>> from pathlib import Path
        >>> from traitlets.config import Config
        >>> c = Config()
        >>> configure_hub(c, HubSettings(HubLayout(Path("/srv/hub")), 8000, 8081, 8001, Path("/chp"),
        ...                              Path("/venv/bin"), "seqloss"))
        >>> c.JupyterHub.bind_url, c.JupyterHub.spawner_class, sorted(c.Authenticator.allowed_users)[0]
        ('http://127.0.0.1:8000', 'localprocess', 'instructor')
    """
    layout = settings.layout
    c.JupyterHub.bind_url = f"http://127.0.0.1:{settings.port}"
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub_api_port
    c.JupyterHub.db_url = f"sqlite:///{layout.database}"
    c.JupyterHub.cookie_secret_file = str(layout.root / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.command = [str(settings.proxy_command)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(layout.root / "proxy.pid")

    c.JupyterHub.authenticator_class = "pam"
    c.Authenticator.allowed_users = set(ACCOUNTS)
    # A session (pam_open_session) would need a login manager; authentication is all the hub needs.
    c.PAMAuthenticator.open_sessions = False

    c.JupyterHub.spawner_class = "localprocess"
    c.Spawner.cmd = [str(settings.venv_bin / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = SERVER_START_TIMEOUT_S
    c.Spawner.http_timeout = SERVER_START_TIMEOUT_S

    def set_role_environment(spawner: Any) -> None:
        # A new dict: the one from the config may be shared by every user's spawner.
        spawner.environment = {**spawner.environment, **server_environment(settings, spawner.user.name)}

    c.Spawner.pre_spawn_hook = set_role_environment


def config_file_text(settings: HubSettings) -> str:
    """The ``jupyterhub_config.py`` that ``python -m coursekit.hub`` writes and runs.

    It names this machine's values and calls :func:`configure_hub`, so that what a hub runs
    with can be read in one file.

    Example:
        >>> from pathlib import Path
        >>> text = config_file_text(HubSettings(HubLayout(Path("/srv/hub")), 8000, 8081, 8001, Path("/chp"),
        ...                                     Path("/venv/bin"), "seqloss"))
        >>> "port=8000" in text and "configure_hub(c, settings)" in text
        True
    """
    return (
        '"""JupyterHub configuration written by `python -m coursekit.hub` (see coursekit/hub/config.py)."""\n\n'
        "from pathlib import Path\n\n"
        "from coursekit.hub.config import HubSettings, configure_hub\n"
        "from coursekit.hub.layout import HubLayout\n\n"
        "settings = HubSettings(\n"
        f"    layout=HubLayout(Path({str(settings.layout.root)!r})),\n"
        f"    port={settings.port},\n"
        f"    hub_api_port={settings.hub_api_port},\n"
        f"    proxy_api_port={settings.proxy_api_port},\n"
        f"    proxy_command=Path({str(settings.proxy_command)!r}),\n"
        f"    venv_bin=Path({str(settings.venv_bin)!r}),\n"
        f"    course_id={settings.course_id!r},\n"
        ")\n"
        "c = get_config()  # noqa: F821\n"
        "configure_hub(c, settings)\n"
    )
