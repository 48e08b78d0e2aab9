"""A network namespace of the test's own, for nftables tests that must not touch the host's ruleset.

`ip netns add fwtest-<pid>` (as root), else an unprivileged `unshare -rn` process entered with `nsenter`; the test
skips, saying why, only where the kernel refuses both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def namespace_nft() -> Iterator[tuple[str, ...]]:
    """The argument list that runs `nft` inside a fresh network namespace, for the duration of the block."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/ensure-debian-packages nftables)")
    name = f"fwtest-{os.getpid()}-{time.monotonic_ns() % 100000}"
    added = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if added.returncode == 0:
        try:
            yield ("ip", "netns", "exec", name, "nft")
        finally:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        return
    holder = subprocess.Popen(["unshare", "-rn", "sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.2)
        command = ("nsenter", "--preserve-credentials", "-U", "-n", "-t", str(holder.pid), "nft")
        probe = subprocess.run([*command, "list", "ruleset"], capture_output=True, text=True, check=False)
        if holder.poll() is not None or probe.returncode != 0:
            pytest.skip(
                f"the kernel refuses a network namespace: ip netns add: {added.stderr.strip()}; "
                f"unshare -rn: {probe.stderr.strip()}"
            )
        yield command
    finally:
        holder.kill()
        holder.wait()
