"""wrk (Debian's package) with fixed threads, connections and duration; its summary read from a Lua `done` hook."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk")

DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # connect, read, write and timeout errors, and non-2xx/3xx answers
    p50_s: float
    p99_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_missing() -> str | None:
    return None if WRK else "wrk is not installed (scripts/ensure-debian-packages wrk)"


def run_wrk(url: str, threads: int, connections: int, duration_s: float, folder: Path) -> WrkResult:
    assert WRK is not None
    script = folder / "done.lua"
    if not script.exists():
        script.write_text(DONE_HOOK)
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=duration_s + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(data["requests"], data["duration_us"] / 1e6, errors, data["p50_us"] / 1e6, data["p99_us"] / 1e6)
