"""CPU time and peak memory of the processes under load, from /proc (Linux)."""

import os
import resource
from collections.abc import Callable
from pathlib import Path

import asyncpg

from services.core.db import APPLICATION_PREFIX

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, which may hold spaces:
    [0] is field 3 (state), so field n of proc(5) is [n - 3]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """User plus system time of the process (and of its children that exited)."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICKS_PER_SECOND


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for process {pid}")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
    return found


def _with_children(pid: int, measure: Callable[[int], float]) -> float:
    """`measure` of the process plus that of each of its children alive now."""
    total = measure(pid)
    for child in children(pid):
        try:
            total += measure(child)
        except OSError:
            continue  # exited while we looked: counted with its parent once reaped
    return total


def tree_cpu_seconds(pid: int) -> float:
    """The process and its children, those that exited included: a service and its
    workers (stations' analyst), or PostgreSQL's server and its backends."""
    return _with_children(pid, lambda p: cpu_seconds(p, with_reaped_children=True))


def tree_peak_rss_mib(pid: int) -> float:
    """The process's peak and that of each child alive now, added: what they could
    hold together. A worker that came and went (stations' analyst) is not in it."""
    return _with_children(pid, peak_rss_mib)


async def local_postmaster(database_url: str) -> int | None:
    """The PostgreSQL server's pid if it runs on this machine (it is the parent of
    our connection's backend), else None."""
    conn = await asyncpg.connect(database_url)
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        parent = int(_stat_fields(backend)[1])
        return parent if _is_postgres(backend) and _is_postgres(parent) else None
    except OSError:
        return None
    finally:
        await conn.close()


def _is_postgres(pid: int) -> bool:
    return Path(f"/proc/{pid}/comm").read_text().startswith("postgres")


def reaped_children_cpu_seconds() -> float:
    """CPU of our child processes that have exited and been waited for: around one
    k6 run, the difference is that run's."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Columns of PostgreSQL's time spent for one client: "pg stations-relay".
PG_PREFIX = "pg "


async def postgres_clients(database_url: str) -> dict[int, str]:
    """Our connections' backends, by pid: what each spends is PostgreSQL's time on
    that client's behalf (stations, stations-relay, stock, ...)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT pid, application_name FROM pg_stat_activity
               WHERE starts_with(application_name, $1)""",
            APPLICATION_PREFIX,
        )
    finally:
        await conn.close()
    return {row["pid"]: row["application_name"].removeprefix(APPLICATION_PREFIX) for row in rows}


class Usage:
    """CPU seconds of named processes, read together; with the PostgreSQL server's
    pid, also the server's, and with its clients' backends, the server's per client."""

    def __init__(
        self,
        processes: dict[str, int],
        postmaster: int | None,
        clients: dict[int, str] | None = None,
    ) -> None:
        self.processes = processes
        self.postmaster = postmaster
        self.clients = clients or {}

    def cpu(self) -> dict[str, float]:
        now = {name: tree_cpu_seconds(pid) for name, pid in self.processes.items()}
        if self.postmaster is not None:
            now["postgres"] = tree_cpu_seconds(self.postmaster)
        return now

    def client_cpu(self) -> dict[int, float]:
        """CPU seconds of each client backend still there."""
        now = {}
        for pid in self.clients:
            try:
                now[pid] = cpu_seconds(pid)
            except OSError:
                continue  # the connection closed
        return now

    def by_client(
        self, before: dict[int, float], after: dict[int, float], postgres: float | None
    ) -> dict[str, float]:
        """PostgreSQL's CPU seconds for each client between two readings, over the
        backends in both, as "pg <client>"; with the server's own seconds spent in
        `postgres`, the rest as "pg other": background processes, and connections
        not ours or opened in between."""
        spent_by: dict[str, float] = {}
        for pid, seconds in after.items():
            if pid in before:
                name = PG_PREFIX + self.clients[pid]
                spent_by[name] = spent_by.get(name, 0.0) + seconds - before[pid]
        if postgres is not None and spent_by:
            spent_by[PG_PREFIX + "other"] = postgres - sum(spent_by.values())
        return spent_by

    def peak_rss_mib(self) -> dict[str, float]:
        return {name: tree_peak_rss_mib(pid) for name, pid in self.processes.items()}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}
