"""Data-parallel training under `torchrun`: which process this is, and what the ranks share.

`torchrun --standalone --nproc-per-node N -m nscompile train SPEC DATA -o RUN` starts N
processes with `RANK`, `LOCAL_RANK` and `WORLD_SIZE` in their environment; `start` reads them
and joins the process group (`gloo` on the CPU, `nccl` on CUDA with one GPU per local rank).
Every rank then runs the same run: the same split and standardisation (both are drawn from the
seed), the same initial weights (seeded, and broadcast by DistributedDataParallel), the same
batch order. What differs is only which rows of each batch a rank computes (`bounds`).

Same results. A batch of B rows is cut into N contiguous pieces, one per rank; each rank's loss
is the sum over its piece times N / B, so that DDP's gradient average is the gradient of the
batch's mean loss, exactly what one process with batch B computes, up to the order in which
floating-point sums are taken. torch's `DistributedSampler` is not used: it shards the rows
once per epoch in its own order and pads the last shard with repeated rows, so N processes
would not train the network one process trains. Image batches are augmented whole on every
rank with the shared generator, then cut, for the same reason. Validation and test rows are
cut likewise and their outputs gathered, so every rank computes the same metrics and takes the
same early-stopping decision. BatchNorm normalises each rank's piece (B / N rows) unless
`--sync-bn` asks for SyncBatchNorm (torch implements it on GPUs only); the running statistics
are rank 0's (`sync_buffers`) whenever the network is evaluated or saved.

Files. Only rank 0 reads or writes the run directory; what it reads (a checkpoint to resume, a
finished seed) it sends to the others (`share`), so the run directory need not be on a shared
file system. An error rank 0 meets there (an existing RUN_DIR, say) reaches every rank.

Faults. torchrun ends every process when one dies; collectives time out after `timeout`
seconds (`--timeout`, 30 minutes by default: long enough for rank 0 to run the structure search
of `nscompile fit` alone while the others wait) instead of waiting for ever.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from nscompile.errors import InputError

T = TypeVar("T")

#: Seconds a collective waits for the other ranks before the run fails (`--timeout`).
TIMEOUT = 1800
#: The environment torchrun gives each process.
ENVIRONMENT = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run; `Ranks()` is a run of one process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # "cpu" or "cuda:LOCAL_RANK"
    sync_bn: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the one process that reads and writes files and prints."""
        return self.rank == 0

    def bounds(self, rows: int) -> tuple[int, int]:
        """This rank's contiguous piece [lo, hi) of `rows` rows (pieces differ by one row at
        most; a piece is empty when there are fewer rows than ranks)."""
        return rows * self.rank // self.world, rows * (self.rank + 1) // self.world

    def share(self, make: Callable[[], T]) -> T:
        """`make()` run on rank 0, its result on every rank; an InputError it raises is raised
        on every rank (any other exception becomes one on the other ranks)."""
        if self.world == 1:
            return make()
        box: list[object] = [None]
        error: BaseException | None = None
        if self.main:
            try:
                box[0] = ("value", make())
            except InputError as raised:
                error, box[0] = raised, ("input", raised.message, raised.hint)
            except Exception as raised:  # noqa: BLE001 (re-raised below, after the others know)
                error, box[0] = raised, ("other", f"{type(raised).__name__}: {raised}", None)
        dist.broadcast_object_list(box, src=0)
        kind, *rest = box[0]  # type: ignore[misc]
        if error is not None:
            raise error
        if kind == "value":
            return rest[0]  # type: ignore[return-value]
        echo = InputError(rest[0], hint=rest[1]) if kind == "input" else InputError(rest[0])
        echo.from_rank0 = True  # type: ignore[attr-defined] (rank 0 prints it; the CLI does not again)
        raise echo

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` on this rank's device; with several ranks inside DistributedDataParallel
        (with SyncBatchNorm when asked), which averages the gradients over the ranks."""
        model.to(self.device)
        if self.world == 1:
            return model
        if self.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [self.local_rank] if self.device.startswith("cuda") else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """`value` summed over the ranks (in place)."""
        if self.world > 1:
            dist.all_reduce(value)
        return value

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm's running statistics, which each rank
        updated from its own rows since the last forward pass)."""
        if self.world > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def gather(self, piece: np.ndarray, rows: int) -> np.ndarray:
        """Every rank's `piece` (its `bounds(rows)` rows of an output) in rank order."""
        if self.world == 1:
            return piece
        size = -(-rows // self.world)  # the largest piece; all_gather wants equal ones
        local = torch.zeros((size, *piece.shape[1:]), dtype=torch.float32, device=self.device)
        local[: len(piece)] = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))
        pieces = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(pieces, local)
        parts = []
        for rank, part in enumerate(pieces):
            lo, hi = Ranks(rank, self.world).bounds(rows)
            parts.append(part[: hi - lo].cpu().numpy())
        return np.concatenate(parts)

    def check(self, train_rows: int, batch_size: int) -> None:
        """InputError when some rank would have no rows to train on."""
        if self.world == 1:
            return
        if train_rows < self.world:
            raise InputError(
                f"{self.world} processes but only {train_rows} training rows",
                hint="use fewer processes than training rows",
            )
        if batch_size < self.world:
            raise InputError(
                f"{self.world} processes share each batch of {batch_size} rows: some would "
                "have none",
                hint="use at most as many processes as the batch has rows",
            )


def under_torchrun() -> bool:
    return all(name in os.environ for name in ENVIRONMENT)


def message_prefix() -> str:
    """ "rank R: " in a process of rank R > 0 of torchrun's run, else ""."""
    rank = os.environ.get("RANK", "0") if under_torchrun() else "0"
    return f"rank {rank}: " if rank != "0" else ""


def check_device(device: str, processes: int = 1, sync_bn: bool = False) -> None:
    """InputError when `device` cannot run `processes` processes on this machine (or
    SyncBatchNorm, asked for several processes, on the CPU)."""
    if sync_bn and device == "cpu" and processes > 1:
        raise InputError(
            "--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only",
            hint="without it each process normalises its own share of the batch",
        )
    if device == "cpu":
        return
    if device != "cuda":
        raise InputError(f"unknown device '{device}'", hint="use cpu or cuda")
    if not torch.cuda.is_available():
        built = "with" if torch.version.cuda else "without"
        raise InputError(
            "--device cuda, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, built {built} CUDA)",
            hint="train on the CPU (--device cpu), or install a CUDA build of torch",
        )
    count = torch.cuda.device_count()
    if processes > count:
        raise InputError(
            f"{processes} processes on this machine but {count} GPU(s): one GPU per process",
            hint=f"use --nproc-per-node {count} or fewer",
        )


def start(device: str = "cpu", sync_bn: bool = False, timeout: float = TIMEOUT) -> Ranks:
    """This process's Ranks: one process, or a rank of torchrun's run (joining its process
    group). InputError for a device the machine lacks, or SyncBatchNorm on the CPU."""
    if not under_torchrun():
        check_device(device)
        return Ranks(device=device)
    rank, local, world = (int(os.environ[name]) for name in ENVIRONMENT)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    check_device(device, local_world, sync_bn and world > 1)
    where = "cpu"
    if device == "cuda":
        torch.cuda.set_device(local)
        where = f"cuda:{local}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout),
        )
    return Ranks(rank, world, local, where, sync_bn)


_LOST = ("gloo", "NCCL", "nccl", "Connection reset", "Connection closed", "timed out")


@contextlib.contextmanager
def lost_ranks() -> Iterator[None]:
    """Turns a failed collective (another rank died, or timed out) into an InputError."""
    try:
        yield
    except RuntimeError as error:
        # DDP's reducer reports a lost peer as a plain RuntimeError from gloo or NCCL.
        if not isinstance(error, dist.DistError) and not any(word in str(error) for word in _LOST):
            raise
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else "no details"
        raise InputError(
            f"{message_prefix()}lost the other training processes ({first})",
            hint="the run directory is left as it was after the last finished epoch: "
            "continue with --resume",
        ) from None


def stop(finished: bool) -> None:
    """Leave the process group. After a finished run all ranks leave together (a barrier
    first: gloo aborts a process that tears its connections down while a peer still uses
    them); after an error the process just ends, as the others may be gone already."""
    if dist.is_initialized() and finished:
        dist.barrier()
        dist.destroy_process_group()
