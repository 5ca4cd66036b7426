"""The naming authority: which spec identifiers are allowed, and fresh names for generated ones.

Spec identifiers reach generated code only as attribute names (`self.w1`) and, for neurons and
networks, as class names derived here. The grammar already limits them to `[A-Za-z_][A-Za-z0-9_]*`;
this module rejects the rest of what could change the meaning of generated code: Python keywords,
builtins, names the generated module itself uses, `nn.Module` attributes, and any name starting
with an underscore (dunders, and the prefix reserved for compiler temporaries).
"""

from __future__ import annotations

import builtins
import keyword
import re

IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

#: Names the generated module uses itself.
GENERATED = frozenset(
    {
        "torch",
        "nn",
        "F",
        "math",
        "self",
        "x",
        "h",
        "y",
        "build",
        "NETWORKS",
        "FUSED",
        "TERMS",
        "in_features",
        "out_features",
        "reset_parameters",
        "formula",
    }
)

#: Public attributes of `torch.nn.Module` (torch 2.13); a test checks this list is complete.
MODULE_ATTRIBUTES = frozenset(
    [
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
    ]
)

RESERVED = (
    frozenset(keyword.kwlist)
    | frozenset(keyword.softkwlist)
    | frozenset(dir(builtins))
    | GENERATED
    | MODULE_ATTRIBUTES
)


def why_not_allowed(name: str) -> str | None:
    """Return why `name` cannot be a spec identifier, or None when it can."""
    if name.startswith("_"):
        return "names starting with '_' are reserved for the compiler"
    if not IDENTIFIER.match(name):
        return "a name is a letter followed by letters, digits and '_'"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"'{name}' is a Python keyword"
    if name in dir(builtins):
        return f"'{name}' is a Python builtin"
    if name in RESERVED:
        return f"'{name}' is used by the generated module"
    return None


def class_name(name: str, suffix: str = "") -> str:
    """`phoneme_net` -> `PhonemeNet`, plus suffix (`td` -> `TdLayer`)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) + suffix


def unique_class_names(
    names: list[str], suffixes: dict[str, str], taken: set[str] | None = None
) -> dict[str, str]:
    """Map each spec name to a distinct class name, deterministically (in sorted order),
    none of them in `taken`."""
    taken = set(taken or ())
    result: dict[str, str] = {}
    for name in sorted(names):
        base = class_name(name, suffixes.get(name, ""))
        candidate, n = base, 2
        while candidate in taken or candidate in RESERVED:
            candidate, n = f"{base}{n}", n + 1
        taken.add(candidate)
        result[name] = candidate
    return result


class Namer:
    """Hands out fresh identifiers that avoid every name already taken."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken: set[str] = set(taken or ())

    def fresh(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.taken or candidate in RESERVED:
            candidate, n = f"{base}_{n}", n + 1
        self.taken.add(candidate)
        return candidate


def layer_key(index: int, parameter: str | None = None) -> str:
    """The name of a network's `index`-th layer (from 1) in generated code: the attribute
    `layer{index}`, or with `parameter` its state-dict key `layer{index}.{parameter}`.

    The torch module, the ONNX initializers, the IR evaluator and saved weights all use it.
    """
    name = f"layer{index}"
    return name if parameter is None else f"{name}.{parameter}"
