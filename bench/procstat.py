"""CPU time and resident memory of a process and all its descendants, read from /proc (Linux)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def family(pid: int, tree: Mapping[int, list[int]] | None = None) -> list[int]:
    """`pid` and every process below it."""
    tree = _children() if tree is None else tree
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            resident = int((_PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * _PAGE
    return total


def matching(fragment: str) -> list[int]:
    """Processes whose command line contains `fragment` (e.g. the PostgreSQL backends of some databases)."""
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if fragment.encode() in cmdline:
                found.append(int(entry.name))
    return found


class Meter:
    """CPU and RSS of named services, each a process tree (a server and its workers).

    `external` names processes found by a command-line fragment, such as the PostgreSQL backends that
    serve the suite's databases: metered beside the services, not counted as theirs.
    """

    def __init__(self, roots: Mapping[str, int], external: Mapping[str, str] | None = None) -> None:
        self.roots = dict(roots)
        self.external = dict(external or {})

    def _families(self) -> dict[str, list[int]]:
        tree = _children()
        return {name: family(pid, tree) for name, pid in self.roots.items()}

    def external_cpu(self) -> dict[str, dict[int, float]]:
        """CPU seconds of each external process, by name and pid: they come and go (connection pools)."""
        return {
            name: {pid: cpu_seconds([pid]) for pid in matching(fragment)} for name, fragment in self.external.items()
        }

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pids) for name, pids in self._families().items()}

    def rss_mb(self) -> dict[str, float]:
        return {name: rss_bytes(pids) / 2**20 for name, pids in self._families().items()}

    def processes(self) -> dict[str, int]:
        return {name: len(pids) for name, pids in self._families().items()}


def spent(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds spent between two readings by the processes alive at the second (those that ended are lost)."""
    return sum(max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items())
