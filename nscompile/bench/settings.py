"""What one `nscompile bench` run measures: batch sizes, device, repetitions; checked input."""

from __future__ import annotations

from dataclasses import dataclass

from nscompile.bench import timing as benchkit
from nscompile.errors import InputError

DEVICES = ("cpu", "cuda")
#: How `nscompile bench` builds its `torch.compile` peer; "off" leaves it out.
TORCH_COMPILE_BACKENDS = ("inductor", "aot_eager", "off")
MAX_BATCH = 1_000_000


@dataclass(frozen=True)
class Settings:
    """What one run measures and how long it tries."""

    batches: tuple[int, ...] = (1, 256, 4096)
    #: The batch sizes of conv layers (images: 4096 of 64 x 32 x 32 would be 1 GiB per input).
    conv_batches: tuple[int, ...] = (1, 64)
    device: str = "cpu"
    reps: int = 15
    warmup: int = 3
    min_rep_s: float = 0.02
    max_inner: int = 200
    compile_reps: int = 5
    export_reps: int = 2
    seed: int = 0
    #: The backend of the `torch.compile(unfused)` peer (see TORCH_COMPILE_BACKENDS).
    torch_compile: str = "inductor"


def parse_batches(text: str) -> tuple[int, ...]:
    """`1,256,4096` -> (1, 256, 4096); InputError for anything else."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise InputError(
            f"--batch '{text}' is not a comma-separated list of positive integers",
            hint="for example --batch 1,256,4096",
        )
    values = sorted({int(p) for p in parts})
    if values[0] < 1 or values[-1] > MAX_BATCH:
        raise InputError(f"--batch sizes must be between 1 and {MAX_BATCH:,}, got '{text}'")
    return tuple(values)


def check_device(device: str) -> None:
    """InputError for an unknown device, or for CUDA where torch has none."""
    if device not in DEVICES:
        raise InputError(f"unknown device '{device}'", hint=f"one of {', '.join(DEVICES)}")
    if device == "cuda":
        reason = benchkit.cuda_unavailable()
        if reason:
            raise InputError(f"CUDA was asked for, but {reason}", hint="use --device cpu")
