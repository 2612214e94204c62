"""How many worker slots a Sandbox takes by default: this process's share of the CPUs it may
run on (the machine's training processes from the launcher's environment), capped."""

from __future__ import annotations

import os

import pytest

from reft.sandbox import ProgramResult, Sandbox
from reft.sandbox.workers import DEFAULT_MAX_WORKERS, default_workers, local_world_size
from tests.sandbox.sandbox_helpers import assert_no_strays


@pytest.mark.parametrize("cpus, local, want", [
    (1, 1, 1),
    (2, 1, 2),
    (8, 1, 8),
    (8, 2, 4),
    (8, 3, 2),           # the share rounds down
    (4, 8, 1),           # more processes than CPUs: still one slot each
    (64, 8, 8),
    (64, 1, DEFAULT_MAX_WORKERS),
    (512, 1, DEFAULT_MAX_WORKERS),   # once an error past 256 CPUs
    (512, 8, DEFAULT_MAX_WORKERS),
    (512, 32, 16),
    (0, 1, 1),
])
def test_share_of_the_cpus_capped(cpus, local, want):
    assert default_workers(cpus, local) == want


@pytest.mark.parametrize("env, want", [
    ({}, 1),
    ({"LOCAL_WORLD_SIZE": "4"}, 4),                       # torchrun, accelerate launch
    ({"LOCAL_SIZE": "2"}, 2),                             # DeepSpeed's launcher
    ({"OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, 3),             # Open MPI
    ({"LOCAL_WORLD_SIZE": "8", "LOCAL_SIZE": "2"}, 8),    # torchrun's first
    ({"LOCAL_WORLD_SIZE": "many"}, 1),
    ({"LOCAL_WORLD_SIZE": "0", "LOCAL_SIZE": "2"}, 2),
    ({"LOCAL_WORLD_SIZE": "-4"}, 1),
])
def test_local_world_size_from_the_launcher(env, want):
    assert local_world_size(env) == want


def test_defaults_read_the_affinity_and_the_environment(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    for var in ("LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_workers() == 12
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_workers() == DEFAULT_MAX_WORKERS


def test_a_sandbox_on_a_big_machine_starts(monkeypatch, secret_env):
    """Once ``Sandbox()`` took every visible CPU and refused more than 256."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(1024)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "512")
    with Sandbox(timeout_s=1) as sb:
        assert sb.settings["workers"] == 2
        assert sb.run(["def solution():\n    return 3\n"]) == [ProgramResult(3.0)]
    assert_no_strays([sb])
