"""The fit workflow, shared by `nscompile fit` and the scikit-learn estimators.

Both take the same steps, each from its one home: a spec, given or found by the structure search
on the data (`search_spec`); the generated module (`nscompile.learn.loader`); a seeded split
(`train.split`); standardisation fitted on the data (`preprocess.Scaler`); training under the
protocol (`train.core.fit_seed`). `fit_run` is the command line's workflow: search, train every
seed into a run directory (`train.train_run`), and compare the deployed ONNX model with torch.
`fit_network` is the estimators': the network for the data, one seed, in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nscompile.compiler.pipeline import compile_text, front_end, to_torch
from nscompile.errors import SpecError
from nscompile.lang import syntax
from nscompile.lang.parser import parse
from nscompile.lang.structure import network_for
from nscompile.lang.unparse import unparse
from nscompile.learn.loader import load_source
from nscompile.learn.progress import Progress
from nscompile.learn.train import RunResult
from nscompile.learn.train.core import Protocol, SeedRun, fit_seed
from nscompile.learn.train.distributed import Ranks
from nscompile.learn.train.split import validation_rows

# The search (tensor decompositions) and the deployed model (onnxruntime) load in the functions
# that use them: an estimator without search=True needs neither.
if TYPE_CHECKING:
    from nscompile.learn.data import Supervised
    from nscompile.learn.search import SearchResult
    from nscompile.learn.table import Table

# The file name `nscompile fit` gives the spec it found, in the run directory and in messages.
SPEC_FILE = "spec.ns"

# (spec text, spec file, extra files for the run directory) -> the finished run.
TrainFn = Callable[[str, str, dict[str, str]], RunResult]


def search_spec(
    features: np.ndarray,
    target: np.ndarray,
    task: str,
    seeds: Sequence[int],
    name: str,
    options: dict[str, Any],
    show_progress: bool = True,
) -> SearchResult:
    """The structure search on the data (`nscompile.learn.search.search`), with a progress bar
    on a terminal when `show_progress`. Raises InputError for bad data or options."""
    from nscompile.learn.search import search

    bar: Progress | None = None

    def progress(done: int, total: int, seed: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total * len(seeds), f"search {name}")
        bar.advance()

    try:
        return search(
            features,
            target,
            seeds=seeds,
            progress=progress if show_progress else None,
            task=task,
            name=name,
            **options,
        )
    finally:
        if bar is not None:
            bar.close()


@dataclass(frozen=True)
class FitRun:
    """What `nscompile fit` did: the search's result, the spec it wrote, the training run, and
    the largest relative difference between the run's model.onnx and torch on every row."""

    found: SearchResult
    spec: str
    run: RunResult
    difference: float


def fit_run(
    data: Supervised,
    table: Table,
    seeds: Sequence[int],
    search_options: dict[str, Any],
    train: TrainFn,
    ranks: Ranks | None = None,
) -> FitRun:
    """Search a structure on `data`, train its spec with `train`, and score the run's deployed
    model with both engines on `table` (the rows `data` came from). With several `ranks`
    (torchrun) rank 0 searches and scores alone; the others train with it (`difference` 0)."""
    from nscompile.learn.deploy import evaluate, load_run

    ranks = ranks or Ranks()
    found = ranks.share(
        lambda: search_spec(data.features, data.target, data.task, seeds, data.name, search_options)
    )
    text = unparse(found.spec)
    front_end(text, SPEC_FILE)  # the spec we write must compile
    run = train(text, SPEC_FILE, {SPEC_FILE: text})
    difference = evaluate(load_run(run.path), table).difference if ranks.main else 0.0
    return FitRun(found, text, run, difference)


@functools.lru_cache(maxsize=32)
def compiled_source(text: str, file: str) -> str:
    """The generated PyTorch source of `text` (cached: an estimator's fits repeat it)."""
    return to_torch(compile_text(text, file))


@dataclass(frozen=True)
class NetworkChoice:
    """How to shape the network for the data: used when the spec has none that fits."""

    task: str
    width: int  # the data's inputs
    outputs: int  # classes, or 1
    neuron: str | None  # the spec's neuron to build from (None: the first); given, always used
    hidden: tuple[int, ...]


def network_spec(text: str, file: str, choice: NetworkChoice) -> tuple[str, str]:
    """(spec text to compile, network name): the spec's own network when its input width, task
    and outputs fit the data (and no neuron is asked for), else the neuron + hidden + a linear
    head. Raises ValueError for a bad spec (its rendered SpecError) or when neither can be had.
    """
    try:
        spec = parse(text, file)
    except SpecError as error:
        raise ValueError(error.render(text)) from error
    for net in spec.networks.values():
        task, layers = net.task, net.layers
        if (
            choice.neuron is None
            and net.input_width == choice.width
            and task is not None
            and task.kind == choice.task
            and layers
            and layers[-1].width == choice.outputs
        ):
            return text, net.name
    neurons = spec.neurons
    if not neurons:
        have = ", ".join(
            f"'{n.name}' takes {n.input_width} inputs and has "
            f"{n.layers[-1].width if n.layers else 0} outputs"
            for n in spec.networks.values()
        )
        raise ValueError(
            f"the spec has no network for this data ({choice.width} features, {choice.outputs} "
            f"outputs for {choice.task}): {have or 'no network'}; and no neuron to build one from"
        )
    name = choice.neuron if choice.neuron is not None else next(iter(neurons))
    if name not in neurons:
        raise ValueError(f"the spec has no neuron '{name}'; neurons: {sorted(neurons)}")
    net_name = "net"
    while net_name in neurons:
        net_name += "_"
    network = network_for(
        name, choice.width, list(choice.hidden), choice.outputs, choice.task, name=net_name
    )
    return unparse(syntax.Spec((*neurons.values(), network))), net_name


@dataclass(frozen=True)
class FittedNetwork:
    """One network trained in memory: its spec, generated source and the trained module."""

    spec: str
    network: str
    source: str
    model: nn.Module  # in eval mode, holding the best state
    run: SeedRun


def fit_network(
    text: str,
    file: str,
    choice: NetworkChoice,
    data: tuple[np.ndarray, np.ndarray],
    protocol: Protocol,
    seed: int,
    validation_fraction: float,
) -> FittedNetwork:
    """Compile the network for `data` (standardised inputs, class codes or the standardised
    target), train it with `seed` on all but a validation share (per class), which early
    stopping watches. torch's global random state is left as it was.

    Raises ValueError for a bad spec (its rendered SpecError) or no fitting network, Diverged
    for a NaN loss.
    """
    text, net_name = network_spec(text, file, choice)
    try:
        source = compiled_source(text, file)
    except SpecError as error:
        raise ValueError(error.render(text)) from error
    module = load_source(source)
    x, y = data
    train_rows, val_rows = validation_rows(y, choice.task, seed, validation_fraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = module.build(net_name)
        run = fit_seed(
            model,
            choice.task,
            (x[train_rows], y[train_rows]),
            (x[val_rows], y[val_rows]),
            protocol,
            seed,
            what=f"'{net_name}'",
        )
    model.eval()
    return FittedNetwork(text, net_name, source, model, run)
