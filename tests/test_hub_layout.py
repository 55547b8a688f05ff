"""coursekit.hub.layout: what each role's Jupyter reads from the hub's folder, read back by Jupyter's own loaders.

The configuration folders are read the way the single-user servers read them
(``JUPYTER_CONFIG_PATH`` first), through nbgrader's, jupyter_server's and
jupyterlab_server's own loaders; tests/test_hub.py checks the same in a browser.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coursekit.hub.layout import HubLayout, make_folders, write_instructor_config, write_students_config


@pytest.fixture()
def layout(tmp_path: Path) -> HubLayout:
    hub = HubLayout(tmp_path / "hub")
    make_folders(hub)
    return hub


def nbgrader_config_seen_with(folder: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path):
    """The config nbgrader's apps load with ``folder`` as JUPYTER_CONFIG_PATH, started in ``cwd``."""
    from nbgrader.apps import NbGrader

    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(folder))
    monkeypatch.chdir(cwd)
    app = NbGrader()
    app.load_config_file()
    return app.config


def test_exchange_is_world_writable_with_the_sticky_bit_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        hub = HubLayout(tmp_path / "hub")
        make_folders(hub)
    finally:
        os.umask(old)
    assert stat.S_IMODE(hub.exchange.stat().st_mode) == 0o777 | stat.S_ISVTX
    assert stat.S_IMODE(hub.students_config.stat().st_mode) == 0o755


def test_students_nbgrader_uses_the_hubs_exchange_and_the_course_id(layout, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("COURSEKIT_EXCHANGE", raising=False)
    monkeypatch.delenv("COURSEKIT_COURSE_ID", raising=False)
    write_students_config(layout)
    config = nbgrader_config_seen_with(layout.students_config, monkeypatch, tmp_path)
    assert config.Exchange.root == str(layout.exchange)
    assert config.CourseDirectory.course_id == "seqloss"


def test_students_server_loads_the_assignment_list_but_not_the_formgrader(layout, monkeypatch) -> None:
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    write_students_config(layout)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.students_config))
    # what ServerApp.find_server_extensions reads
    extensions = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    assert extensions["nbgrader.server_extensions.formgrader"] is False
    assert extensions["nbgrader.server_extensions.assignment_list"] is True


def test_students_jupyterlab_has_no_formgrader_or_create_assignment_plugin(layout, monkeypatch) -> None:
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_page_config

    write_students_config(layout)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.students_config))
    disabled = get_page_config(jupyter_path("labextensions"))["disabledExtensions"]
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= set(disabled)
    assert "@jupyter/nbgrader:assignment-list" not in disabled


def test_instructors_nbgrader_is_rooted_at_the_course_with_the_hubs_exchange(layout, monkeypatch, tmp_path) -> None:
    course = tmp_path / "seqloss"
    course.mkdir()
    monkeypatch.setenv("COURSEKIT_EXCHANGE", str(layout.exchange))
    write_instructor_config(layout, course)
    config = nbgrader_config_seen_with(layout.instructor_config, monkeypatch, tmp_path)
    assert config.CourseDirectory.root == str(course)
    assert config.Exchange.root == str(layout.exchange)
    assert config.ExchangeFactory.release_feedback == "coursekit.course.exchange.ReleaseFeedbackToExchangeStudents"


def test_instructors_server_may_be_framed_by_the_hubs_own_pages(layout, monkeypatch, tmp_path) -> None:
    from jupyter_server.serverapp import ServerApp

    write_instructor_config(layout, tmp_path)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(layout.instructor_config))
    app = ServerApp()
    app.load_config_file()
    assert app.config.ServerApp.tornado_settings["headers"]["Content-Security-Policy"] == "frame-ancestors 'self'"
