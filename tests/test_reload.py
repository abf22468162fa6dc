"""Reloading the dialplan: the reloader on its own, then a real `pbx serve`
reloading on SIGHUP, on `pbx reload` and on a change to its file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.server.plan_process import PlanProcessError, PlanReader
from pbx.server.reload import CHILD_PROCESS_BYTES, DialplanReloader, files_signature, free_gradually
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan, read_dialplan
from tests.server import RunningServer, run_server
from tests.sipclient import SipClient

DOMAIN = "pbx.example.com"
BASE = """\
domain: pbx.example.com
security: {max_auth_failures: 50, failure_window: 60, block_seconds: 3}
departments:
  sales: {name: Sales}
extensions:
  1001: {name: An, department: sales, password: an-secret-1001}
"""
WITH_1005 = BASE + "  1005: {name: Giang, department: sales, password: giang-secret-1005}\n"
# An extension in a department that does not exist: line 7, column 39.
BROKEN = BASE + "  1006: {name: Hoa, department: sales, departmnt: x, password: hoa-secret-1006}\n"


# ------------------------------------------------------------ the reloader


def _reloader(path: Path) -> tuple[DialplanReloader, list[Dialplan]]:
    applied: list[Dialplan] = []
    return DialplanReloader(path, load_dialplan(path), applied.append), applied


def test_a_valid_change_is_applied_and_a_broken_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    reloader, applied = _reloader(path)

    async def scenario() -> list[bool]:
        results = [await reloader.reload("test")]  # unchanged: nothing applied
        path.write_text(WITH_1005)
        results.append(await reloader.reload("test"))
        path.write_text(BROKEN)
        results.append(await reloader.reload("test"))
        return results

    assert asyncio.run(scenario()) == [False, True, False]
    assert len(applied) == 1 and "1005" in applied[0].extensions
    assert reloader.plan is applied[0], "a broken file must leave the last good plan in place"
    assert reloader.generation == 1


def _plan_including_a_folder(tmp_path: Path) -> Path:
    """plan.yaml, including the folder people/ that holds sales.yaml."""
    (tmp_path / "people").mkdir()
    (tmp_path / "people" / "sales.yaml").write_text(
        "extensions:\n  1001: {name: An, department: sales, password: an-secret-1001}\n")
    path = tmp_path / "plan.yaml"
    path.write_text("domain: pbx.example.com\ninclude: [people]\ndepartments:\n  sales: {name: Sales}\n")
    return path


def test_changes_to_included_files_and_new_files_in_included_folders_are_seen(tmp_path: Path) -> None:
    reloader, applied = _reloader(_plan_including_a_folder(tmp_path))
    assert not reloader.changed()

    (tmp_path / "people" / "more.yaml").write_text(
        "extensions:\n  1002: {name: Binh, department: sales, password: binh-secret-1002}\n")
    assert reloader.changed(), "a file added to an included folder must count as a change"
    assert asyncio.run(reloader.reload("test"))
    assert set(applied[-1].extensions) == {"1001", "1002"}
    assert not reloader.changed()

    # Editors often save by writing a new file and renaming it over the old.
    replacement = tmp_path / "people" / ".sales.yaml.new"
    replacement.write_text("extensions:\n  1001: {name: An Nguyen, department: sales, password: an-secret-1001}\n")
    os.replace(replacement, tmp_path / "people" / "sales.yaml")
    assert reloader.changed()
    assert asyncio.run(reloader.reload("test"))
    assert applied[-1].extensions["1001"].name == "An Nguyen"


def test_other_files_beside_the_plan_are_not_a_change(tmp_path: Path) -> None:
    reloader, _ = _reloader(_plan_including_a_folder(tmp_path))
    # What a database, a load tool and an editor leave beside a plan.
    for stray in ("pbx.sqlite3", "pbx.sqlite3-wal", "sipp_register.log", ".plan.yaml.swp", "people/notes.txt"):
        (tmp_path / stray).write_text("x")
    assert not reloader.changed(), "only the plan's own files are watched"
    (tmp_path / "people" / "sales.yaml").unlink()
    assert reloader.changed(), "a .yaml file gone from an included folder is a change"


def test_one_reader_child_serves_every_read_and_ends_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    children = set()
    with PlanReader() as reader:
        for text in (WITH_1005, BROKEN, BASE):
            path.write_text(text)
            assert reader.read(path) == read_dialplan(path)  # problems and all
            children.add(reader.pid)
    (child,) = children
    assert child is not None
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(child, 0)


def test_a_read_past_its_time_is_ended_and_the_child_reads_on(tmp_path: Path) -> None:
    stuck = tmp_path / "fifo.yaml"
    os.mkfifo(stuck)  # opening it waits for a writer that never comes
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    with PlanReader(timeout=1) as reader:
        with pytest.raises(PlanProcessError, match="took more than 1 s"):
            reader.read(stuck)
        child = reader.pid
        assert reader.read(path) == read_dialplan(path)
        assert reader.pid == child


def test_a_killed_reader_child_is_replaced_at_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    with PlanReader() as reader:
        reader.start()
        first = reader.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert reader.read(path) == read_dialplan(path)
        assert reader.pid not in (None, first)


def test_a_large_plan_reloads_through_the_reader_child(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    people = "".join(f"  {n}:\n    name: Person {n}\n    department: sales\n    password: secret-{n}-xyz\n"
                     for n in range(10000, 14000))
    path.write_text(BASE + people)
    assert path.stat().st_size >= CHILD_PROCESS_BYTES
    reloader, applied = _reloader(path)
    try:
        path.write_text(BASE + people.replace("Person 10000", "Renamed 10000"))
        assert asyncio.run(reloader.reload("test"))
    finally:
        reloader.close()
    assert applied[-1].extensions["10000"].name == "Renamed 10000"
    assert applied[-1] == load_dialplan(path)


def test_a_discarded_plan_is_freed_a_slice_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE + "".join(
        f"  {n}: {{name: N{n}, department: sales, password: secret-{n}-xyz}}\n" for n in range(1002, 1008)))
    holder = [load_dialplan(path)]
    first = holder[0].extensions["1001"]  # freed last: slices go from the end
    held_by_plan = sys.getrefcount(first)

    async def scenario() -> list[int]:
        free_gradually(holder.pop(), asyncio.get_running_loop(), chunk=2)  # the plan itself is gone now
        counts = [sys.getrefcount(first)]
        while counts[-1] == held_by_plan and len(counts) < 100:
            await asyncio.sleep(0)
            counts.append(sys.getrefcount(first))
        return counts

    counts = asyncio.run(scenario())
    # The slices held it, two entries a turn, over several turns; then only this test does.
    assert counts[-1] == held_by_plan - 1
    assert len(counts) > 3 and set(counts[:-1]) == {held_by_plan}


def test_a_missing_file_is_a_change_and_its_reload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    before = files_signature([path])
    path.unlink()
    assert files_signature([path]) != before
    reloader = DialplanReloader(path, Dialplan(domain=DOMAIN), lambda plan: None)
    assert asyncio.run(reloader.reload("test")) is False


# ------------------------------------------------------------ pbx serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    path = tmp_path / "plan.yaml"
    path.write_text(BASE)
    with run_server(path, f"sqlite:///{tmp_path / 'pbx.sqlite3'}", ["udp:127.0.0.1:0"]) as server:
        yield server, path


def _register(server: RunningServer, user: str, password: str) -> int | None:
    with SipClient("udp", ("127.0.0.1", server.udp_port)) as phone:
        response = phone.register(user, password, DOMAIN, expires=120)
    return None if response is None else response.status


def _pbx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pbx", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.e2e
def test_sighup_reloads_and_a_broken_file_keeps_the_running_plan(served: tuple[RunningServer, Path]) -> None:
    server, path = served
    assert _register(server, "1005", "giang-secret-1005") != 200, "1005 is not in the plan yet"

    path.write_text(WITH_1005)
    server.signal(signal.SIGHUP)
    server.wait_lines("dialplan_reloaded")
    assert _register(server, "1005", "giang-secret-1005") == 200

    path.write_text(BROKEN)
    server.signal(signal.SIGHUP)
    rejected = server.wait_lines("dialplan_reload_rejected")
    assert "plan.yaml:7:" in rejected[0], "the log must name the place of the error"
    assert "departmnt" in rejected[0]
    # The running plan (with 1005) stays in force.
    assert _register(server, "1005", "giang-secret-1005") == 200
    assert _register(server, "1001", "an-secret-1001") == 200
    assert server.process.poll() is None


@pytest.mark.e2e
def test_saving_the_file_reloads_it(served: tuple[RunningServer, Path]) -> None:
    server, path = served
    path.write_text(WITH_1005)
    server.wait_lines("dialplan_reloaded")
    assert "file_changed" in server.lines_with("dialplan_reloaded")[0]
    assert _register(server, "1005", "giang-secret-1005") == 200

    path.write_text(BASE)  # 1005 removed again: its password stops working
    server.wait_lines("dialplan_reloaded", 2)
    assert _register(server, "1005", "giang-secret-1005") != 200


@pytest.mark.e2e
def test_pbx_reload_signals_the_server_named_by_the_pid_file(served: tuple[RunningServer, Path]) -> None:
    server, path = served
    path.write_text(BROKEN)
    # With --dialplan the file is checked first: errors, and no signal sent.
    refused = _pbx("reload", "--pid-file", str(server.pid_file), "--dialplan", str(path))
    assert refused.returncode == 1
    assert "plan.yaml:7:" in refused.stderr and "not asked to reload" in refused.stderr

    path.write_text(WITH_1005)
    done = _pbx("reload", "--pid-file", str(server.pid_file), "--dialplan", str(path))
    assert done.returncode == 0, done.stderr
    assert f"pid {server.process.pid}" in done.stdout
    server.wait_lines("dialplan_reloaded")
    assert _register(server, "1005", "giang-secret-1005") == 200


def test_pbx_reload_refuses_a_stale_or_foreign_pid_file(tmp_path: Path) -> None:
    missing = _pbx("reload", "--pid-file", str(tmp_path / "none.pid"))
    assert missing.returncode == 1 and "is pbx serve running?" in missing.stderr

    # This test's own process is alive but is not `pbx serve`: never signal it.
    foreign = tmp_path / "foreign.pid"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        foreign.write_text(f"{sleeper.pid}\n")
        result = _pbx("reload", "--pid-file", str(foreign))
        assert result.returncode == 1 and "is not pbx serve" in result.stderr
        assert sleeper.poll() is None, "the unrelated process must not have been signalled"
    finally:
        sleeper.kill()
        sleeper.wait()

    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not a pid\n")
    result = _pbx("reload", "--pid-file", str(garbage))
    assert result.returncode == 1 and "does not hold a process id" in result.stderr
