"""Load once, before the first task, what every task's worker would otherwise load again.

Ansible runs each task on each host in a worker process forked from ansible-playbook. A
worker starts with what its parent holds, and the parent never loads the Jinja filters
and tests (only workers template), nor, under Mitogen, the installed collections' Python
packages (Mitogen's planner lists them for every collection module it runs, importing each
collection and parsing its meta/runtime.yml). So every fork did that work again: on the
lab's no-op deploy it was about a fifth of the run's CPU. Loading both here, in the
parent, once the playbook and its roles are loaded (their plugin folders are known), lets
every fork start with them. A folder added later (a dynamic include_role) clears Ansible's
own caches, so a worker then loads as before: this changes time, never results.

Enabled without configuration (CALLBACK_NEEDS_ENABLED is False): ansible.cfg names this
folder, so plain ansible-playbook runs get it too.
"""

from __future__ import annotations

import time

from ansible import constants as C
from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

DOCUMENTATION = """
    name: airlock_warm
    type: aggregate
    short_description: load Jinja plugins and collections once in the parent process
    description:
      - Before the first task, loads every Jinja filter and test, and under Mitogen every
        installed collection's package, in ansible-playbook itself, so that the worker
        processes it forks for each task start with them instead of loading them again.
    requirements: []
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "airlock_warm"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_start(self, playbook):
        from ansible.plugins.loader import filter_loader, test_loader

        start = time.monotonic()
        jinja = sum(1 for loader in (filter_loader, test_loader) for _ in loader.all())
        collections = 0
        if str(C.DEFAULT_STRATEGY).startswith("mitogen"):
            from ansible.collections.list import list_collection_dirs

            collections = sum(1 for _ in list_collection_dirs())
        display.vvv(f"airlock_warm: {jinja} Jinja plugins and {collections} collections "
                    f"loaded in {time.monotonic() - start:.2f} s before the first task")
