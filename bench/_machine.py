"""
The machine the benchmarks ran on, and how busy the rest of it was.

Shared machines are noisy, so every comparison records the load around
it: the load average, and the CPU time the whole machine spent busy
(from ``/proc/stat``) minus our own process's CPU time.  What is left is
what *other* processes used while we measured, in cores.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
import time

from pathlib import Path

import attrs


PEERS = (
    "tenacity",
    "stamina",
    "purgatory",
    "aiobreaker",
    "circuitbreaker",
    "redress",
    "pyresilience",
    "hyx",
)
LIBRARIES = ("resilient-mcp", "trio", "anyio", "mcp", "hdrhistogram", "attrs")


def _busy_and_total() -> tuple[float, float, float] | None:
    """Busy, total and stolen CPU seconds of the machine, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return None
    ticks = [int(field) for field in first.split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is in user)
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks[:8])
    steal = ticks[7] if len(ticks) > 7 else 0
    hertz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hertz, total / hertz, steal / hertz


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def _own_cpu() -> float:
    # Our process, plus children we waited for (the stdio MCP servers).
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@attrs.frozen(kw_only=True)
class LoadSample:
    """The load during one measurement."""

    wall_s: float
    own_cores: float  # our CPU seconds per wall second
    others_cores: float | None  # everybody else's, or None if unknown
    steal_cores: float | None  # taken by the hypervisor for other guests
    loadavg_before: tuple[float, float, float] | None
    loadavg_after: tuple[float, float, float] | None


@attrs.define
class LoadMeter:
    """Measures the load between :meth:`start` and :meth:`stop`."""

    wall: float
    own: float
    machine: tuple[float, float, float] | None
    loadavg: tuple[float, float, float] | None

    @classmethod
    def start(cls) -> LoadMeter:
        return cls(
            wall=time.perf_counter(),
            own=_own_cpu(),
            machine=_busy_and_total(),
            loadavg=load_average(),
        )

    def stop(self) -> LoadSample:
        wall = max(time.perf_counter() - self.wall, 1e-9)
        own = _own_cpu() - self.own
        machine = _busy_and_total()
        others = steal = None
        if self.machine is not None and machine is not None:
            busy = machine[0] - self.machine[0]
            others = max(busy - own, 0.0) / wall
            steal = (machine[2] - self.machine[2]) / wall
        return LoadSample(
            wall_s=wall,
            own_cores=own / wall,
            others_cores=others,
            steal_cores=steal,
            loadavg_before=self.loadavg,
            loadavg_after=load_average(),
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


@attrs.frozen(kw_only=True)
class MachineInfo:
    """What the report's header says about the machine and software."""

    cores: int
    usable_cores: int
    cpu: str
    python: str
    platform: str
    revision: str
    versions: dict[str, str]
    peers: dict[str, str]


def machine_info() -> MachineInfo:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return MachineInfo(
        cores=os.cpu_count() or 1,
        usable_cores=usable,
        cpu=_cpu_model(),
        python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        platform=platform.platform(),
        revision=_git_revision(),
        versions={name: _version(name) for name in LIBRARIES},
        peers={name: _version(name) for name in PEERS},
    )


def rss_bytes() -> int:
    """This process's resident set size now, from /proc (0 if unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
