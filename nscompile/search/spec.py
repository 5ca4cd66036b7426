"""The search's result as a spec AST: a neuron (with a provenance comment) and a network."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from nscompile import syntax
from nscompile.structure import network_for, neuron_from_structure

NEURON_NAME = "td"


def spec_for(
    structure: Mapping[str, Any],
    input_width: int,
    task: str,
    outputs: int,
    hidden: Sequence[int],
    comments: Sequence[str],
) -> syntax.Spec:
    """A Spec with neuron `td` of `structure` and network `net` for the data's width and task.

    `comments` are provenance lines without the leading "# ".
    """
    neuron = neuron_from_structure(
        {
            "pure_indices": list(structure["pure"]),
            "interact_indices": list(structure["interact"]),
            "rank": int(structure["rank"]),
        },
        name=NEURON_NAME,
    )
    if comments:
        lines = tuple(f"# {line}" for line in comments)
        neuron = dataclasses.replace(neuron, comments=syntax.Comments(leading=lines))
    network = network_for(NEURON_NAME, input_width, list(hidden), outputs, task)
    return syntax.Spec((neuron, network))
