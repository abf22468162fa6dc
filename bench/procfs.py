"""Reading CPU time and resident memory of process groups from /proc, for
the benchmarks (Linux only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after `(comm)`: state is [0], pgrp [2], utime..cstime [11:15]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def cpu_ticks(pids: Sequence[int]) -> int:
    """utime + stime (+ reaped children's) of these processes, in clock ticks."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(value) for value in fields[11:15])
    return total


def _sum_kb(pids: Sequence[int], name: str, key: str) -> int:
    """The `key` line ("VmRSS:", "Pss:" ...) of /proc/PID/<name>, a figure
    in kB, summed over the processes, in bytes."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key):
                total += int(line.split()[1]) * 1024
                break
    return total


def rss_bytes(pids: Sequence[int]) -> int:
    return _sum_kb(pids, "status", "VmRSS:")


def pss_bytes(pids: Sequence[int]) -> int:
    """Proportional set size: a page shared by n processes counts 1/n in
    each, so a group sharing memory (Kamailio's shared-memory pool, mapped
    by all of its processes) counts it once, where summed VmRSS counts it
    in every process that touched it. For a lone process it is its VmRSS
    less part of the pages it shares with others (libraries)."""
    return _sum_kb(pids, "smaps_rollup", "Pss:")
