"""A real headless Chromium for tests, driven through Playwright's CDP client.

`have_chromium` installs Debian's chromium with apt-get when it is missing (as root,
like the podman tests do for podman); Playwright drives that system browser through
`executable_path`, so no browser is ever downloaded (`playwright install` is never run).
The flags keep it quiet on a machine without internet: no GPU, no QUIC, no background
fetches, no component updates.
"""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium refuses to start as root with its sandbox
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def have_chromium() -> str | None:
    """None if /usr/bin/chromium is there (installing it as root when missing), else why not."""
    if os.access(CHROMIUM, os.X_OK):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "chromium is not installed and this user cannot install it (needs root + apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True,
                       timeout=300)
        subprocess.run(["apt-get", "install", "-y", "chromium"],
                       env=env, check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        return f"installing chromium with apt-get failed: {error}"
    return None if os.access(CHROMIUM, os.X_OK) else \
        "chromium still missing after apt-get install"
