"""The command line that executes a run: one process, or torchrun with one process per device."""

from __future__ import annotations

import sys

from engine.jobs.launch import execute_command, with_processes


def test_one_device_is_one_plain_process() -> None:
    assert execute_command(5, 2) == [sys.executable, "-m", "engine", "execute", "5", "--attempt", "2"]
    assert execute_command(5, 2, 1) == execute_command(5, 2)


def test_several_devices_are_started_by_torchrun_standalone_without_restarts() -> None:
    assert execute_command(7, 1, 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                        "--nproc-per-node=4", "--max-restarts=0", "-m", "engine", "execute", "7",
                                        "--attempt", "1"]
    # A script instead of a module (the tests' stand-in child): the script and its arguments follow.
    assert with_processes(["py", "child.py", "run", "3"], 2)[-3:] == ["child.py", "run", "3"]
