"""nbgrader configuration of the course "seqloss".

Run every nbgrader command from this directory. Defaults, all overridable:
  * gradebook: SQLite file gradebook.db here; set COURSEKIT_DB_URL (e.g.
    postgresql://user@host/seqloss) for a database shared by several graders;
  * exchange: /srv/nbgrader/exchange; set COURSEKIT_EXCHANGE to use another directory.
The settings themselves live in coursekit.course.config so that the tests and
`python -m coursekit.course student-versions` use exactly the same ones.
"""

import os

from coursekit.course import configure

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
configure(c, os.path.dirname(os.path.abspath(__file__)))
