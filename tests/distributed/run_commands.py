"""Run several ``reft`` commands one after another in this interpreter; the test launcher
for multi-process runs (``accelerate launch ... run_commands.py JSON``), so that the
processes start (and import torch) once for many commands.

JSON: a list of argument lists, e.g. ``[["ppo", "--model", "m", ...], ["eval", ...]]``.
Exits with the first non-zero status. The process group is torn down before exit: gloo's
threads left running at interpreter exit can abort a process ("terminate called without an
active exception"), seen once in CI.
"""

import json
import sys

from reft.cli import main


def _teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    for argv in json.loads(sys.argv[1]):
        rc = main(argv)
        if rc:
            sys.exit(rc)
    _teardown()
