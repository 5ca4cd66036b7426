"""`nscompile train/fit ... --nproc N`: the same command under torchrun, on this machine.

It is torchrun's own launcher (`torch.distributed.run`, as `torchrun --standalone
--nproc-per-node N -m nscompile ...`) called in this process, so that a failed rank ends in
one line of ours, not in the launcher's traceback. Each process gets an equal share of the
machine's cores as its torch threads (OMP_NUM_THREADS) unless the variable is set.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from nscompile.errors import InputError

#: What the launcher hides: the processes' own messages say what went wrong.
_QUIET = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")


def without_nproc(argv: Sequence[str]) -> list[str]:
    """`argv` without its `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def launch(argv: Sequence[str], processes: int, device: str, sync_bn: bool) -> int:
    """Run `nscompile ARGV` in `processes` processes under torchrun; the exit code (1 when a
    process failed: its message is printed above by the process itself)."""
    from nscompile.learn.train.distributed import check_device

    check_device(device, processes, sync_bn)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    options = parse_args(
        ["--standalone", f"--nproc-per-node={processes}", "-m", "nscompile", *without_nproc(argv)]
    )
    for name in [*logging.root.manager.loggerDict, *_QUIET]:
        if name.startswith(_QUIET):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(options)
    except SignalException as signalled:  # the agent stopped the processes, then itself
        if signalled.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise InputError(
            f"stopped by {signal.Signals(signalled.sigval).name}",
            hint="continue with the same command and --resume",
        ) from None
    except ChildFailedError as failed:
        rank, first = failed.get_first_failure()
        if first.exitcode == 1:  # an error of ours, printed by the process that met it
            return 1
        how = f"exit code {first.exitcode}"
        if first.exitcode < 0:
            how = f"signal {signal.Signals(-first.exitcode).name}"
        raise InputError(
            f"training process of rank {rank} ended by {how}; the others were stopped",
            hint="the run directory is left as it was after the last finished epoch: "
            "continue with --resume",
        ) from None
    print(f"nscompile: {processes} processes finished", file=sys.stderr)
    return 0
