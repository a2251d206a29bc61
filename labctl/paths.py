"""Every default place and every exit status, spelled once.

Exit statuses have two vocabularies, because two kinds of caller read them:
- a command run by hand or by a script (Ansible's meanings): 0 all well, 1 labctl could not do
  its job, 2 bad input or a host failed, 4 a host was unreachable, 130 interrupted;
- `labctl nightly`, read by cron or CI: 0 all well, 1 a regression, 2 the run itself failed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# labctl's own data: playbooks/, workloads/, fixtures/, templates/, hosts/ (and roles/, if
# any), side by side, because provision.yml names ../workloads and ../fixtures from its own
# directory. Run from a checkout (an editable install, the tests), they are the checkout's
# top-level directories; installed from a wheel or sdist, the copies pyproject.toml ships
# inside the package, labctl/data/ (docs/install.md). Every user finds them through here.
_PACKAGE_DIR = Path(__file__).resolve().parent


def _project_dir() -> Path:
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "playbooks").is_dir():
        return checkout
    return _PACKAGE_DIR / "data"


PROJECT_DIR = _project_dir()
PLAYBOOKS = PROJECT_DIR / "playbooks"
EXPERIMENT_FILES = PROJECT_DIR / "experiments"  # experiments declared in YAML (issue 20)
PROVISION_PLAYBOOK = PLAYBOOKS / "provision.yml"
ROLES = PROJECT_DIR / "roles"  # a role a playbook names is looked for here last
# The project's own templates (the nightly HTML report); a playbook's `template` tasks look
# here last, after their role's and their playbook's templates/ (docs/playbooks.md).
TEMPLATES = PROJECT_DIR / "templates"
DEFAULT_SUITE = "playbooks/nightly.yml"  # relative: the working directory's, else PROJECT_DIR's
LOCAL_INVENTORY = PROJECT_DIR / "hosts" / "local.yml"

# On a lab host: everything labctl makes there is under HOST_DIR
HOST_DIR = "/root/labctl"
HOST_BIN_DIR = f"{HOST_DIR}/bin"  # pkt-gen's link, to the netmap build in use
HOST_RUN_DIR = f"{HOST_DIR}/run"  # pidfiles and logs of background programs
HOST_EXPERIMENT_RUN_DIR = f"{HOST_RUN_DIR}/experiments"  # an experiment run's workloads

# A command's exit status
EXIT_ERROR = 1  # labctl could not do its job (the lab needs root, a run failed)
EXIT_FAILED = 2  # bad input (one line naming file and line), or a host failed
EXIT_UNREACHABLE = 4  # a host could not be reached
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, after cleaning up

# `labctl nightly`'s exit status
NIGHTLY_OK = 0
NIGHTLY_REGRESSION = 1
NIGHTLY_FAILED = 2


def default_log_dir() -> Path:
    """Where a failed step's whole output goes: $LABCTL_LOG_DIR, else the XDG state dir."""
    given = os.environ.get("LABCTL_LOG_DIR")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "labctl" / "logs"


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    """`scheme://...` (a results store on a server): never a path, never made absolute."""
    return bool(_URL.match(text))


def without_password(text: str) -> str:
    """`postgresql://me:secret@db/x` as it may be shown: `postgresql://me:***@db/x`."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^@/]*@", r"\1***@", text)
