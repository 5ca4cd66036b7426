"""The checker's diagnostics: every code with its message and hint, one table.

`fold` (the compiler's constant folding) has its own codes and asserts they do not overlap.
"""

from __future__ import annotations

from nscompile.errors import Span, SpecError
from nscompile.lang import syntax as s

FUNCTIONS = (*s.ELEMENTWISE, s.CP_NAME, *s.FORMS)
ORDERS = f"a whole number from 1 to {s.MAX_ORDER}"

#: code -> (message, hint), both `str.format` templates over the fields passed to `_error`.
ERRORS = {
    # declarations
    "E100": ("the spec declares no neuron or network",
             "declare a neuron, e.g. 'neuron lin {{ y = <w, x> + b }}'"),
    "E101": ("'{name}' is declared twice", "the first '{name}' is on line {line}; rename one"),
    "E102": ("'{name}' cannot name a declaration", "{reason}"),
    "E103": ("neuron '{name}' is named like an activation",
             "'dense 8 {name}' would mean the activation; choose another name"),
    # neurons
    "E110": ("neuron '{name}' has no 'y = ...'", "add its aggregation, e.g. 'y = <w, x> + b'"),
    "E111": ("an assignment after 'y = ...'",
             "'y = ...' is the neuron's output and comes last; name intermediates before it "
             "(z = <w, x> + b), or join the terms with '+'"),
    "E112": ("the neuron ends with '{name} = ...'",
             "a neuron ends with its output: write 'y = ...' (earlier assignments name "
             "intermediates)"),
    "E113": ("a second 'rank'", "a neuron has one rank"),
    "E114": ("rank must be from 1 to {high}, got {value}",
             "the rank is the number of CP components; 8 is a good start"),
    "E115": ("a cp term needs the neuron's rank", "add 'rank 8' to the neuron"),
    "E116": ("'{name}' is already {what}", "{hint}"),
    "E117": ("{what} '{name}' is never used",
             "use it in a later assignment or in y, or remove it"),
    # expressions
    "E120": ("unknown name '{name}'",
             "a name in an expression is x (the input), b (the bias), a per-unit scalar "
             "('scalar {name}') or an intermediate named before; weights go in <w, x>"),
    "E121": ("the bias appears twice",
             "a neuron has one bias b; for more per-unit constants declare them, "
             "'scalar br, bg', and use them by name"),
    "E122": ("an inner product of a learnable term",
             "the argument of <w, ...> is a function of x alone; "
             "multiply projections instead: <w1, x> * <w2, x>"),
    "E123": ("an inner product of a constant",
             "the argument of <w, ...> must contain x; to scale, write {arg} * <{name}, x>"),
    "E124": ("'{name}' cannot name a weight", "name the weight, e.g. <w1, x>"),
    "E125": ("weight '{name}' is used twice",
             "'{name}' is already used on line {line}; give each inner product its own weight"),
    "E126": ("cp takes 2 arguments, got {count}", "write cp(x, k) for the order-k interaction"),
    "E127": (f"cp order must be {ORDERS}, got {{value}}",
             "cp(x, k) multiplies k projections of x; k = 2 is pairwise"),
    "E128": ("cp({arg}, {order}) appears twice",
             "one cp term already holds all its rank's components; raise the rank instead"),
    "E129": ("unknown function '{name}'", f"functions are {', '.join(FUNCTIONS)}"),
    "E130": ("{name} takes 1 argument, got {count}", "write {name}(x)"),
    "E131": ("'{arg}' is outside an inner product",
             "x must be inside an inner product <w, x> or cp(x, k), e.g. <w, {arg}>"),
    "E132": (f"exponent must be {ORDERS}, got {{value}}", "x**k takes a whole power, e.g. x**2"),
    "E133": ("y has no learnable term",
             "y needs an inner product <w, x>, a cp(x, k) term or the bias b"),
    "E134": ("number too large for float32",
             f"the model computes in float32: numbers must lie within +-{s.MAX_NUMBER:.4g}"),
    "E135": ("the first argument of cp must be a function of x alone",
             "write cp(x, k), or of an elementwise function: cp(x**2, 2)"),
    "E118": ("{name} takes an input-wide expression and a weight's name, got {got}",
             "write {name}(x, W): W is a new weight, one {what} per unit"),
    "E138": ("y does not depend on the input",
             "y needs an inner product <w, x> or a cp(x, k) term; the bias alone is a constant"),
    # networks
    "E140": ("a network starts with 'input D'",
             "add 'input D' first, D the number of features (or 'input C x H x W' for images)"),
    "E141": ("a second 'input'", "a network has one 'input', its first statement"),
    "E142": ("{what} must be from 1 to {high}, got {value}", "{why}"),
    "E143": ("network '{name}' has no dense layer", "add a layer, e.g. 'dense 1' for one output"),
    "E144": ("unknown {what} '{name}'", "declared neurons: {names}"),
    "E145": ("unknown activation '{name}'", f"activations are {', '.join(s.ACTIVATIONS)}"),
    "E146": ("a second 'task'", "a network has one task"),
    "E147": ("a statement after 'task'", "'task' is the last statement of a network"),
    "E148": ("unknown task '{name}'", f"tasks are {', '.join(s.TASKS)}"),
    "E149": ("a classification head needs 2 to {high} classes, got {value}",
             "the last dense layer has one unit per class; or use 'task regression'"),
    "E150": ("{value} classes, but the last layer has width {width}",
             "the last dense layer has one unit per class: 'dense {value}'"),
    "E151": ("a regression task has no class count", "write 'task regression'"),
    # image layers (lang/layers.py)
    "E180": ("unknown setting '{name}' of {what}", "{what} settings: see the grammar's header"),
    "E181": ("'{name}' is given twice", "give each option of a layer once"),
    "E182": ("{name} must be a whole number, got '{value}'", "write e.g. {name}=1"),
    "E183": ("a dense layer after an image of {shape}",
             "add 'flatten' before it ({flat} features) or 'globalpool' ({channels} features)"),
    "E184": ("{what} needs an image, but the network carries {shape} here",
             "image layers come before 'flatten' or 'globalpool', in a network with "
             "'input C x H x W'"),
    "E185": ("{name} must be from {low} to {high}, got {value}",
             "kernel, stride and padding are small whole numbers"),
    "E186": ("pooling padding {value} is more than half the kernel {kernel}",
             "pooling pads at most half its kernel"),
    "E187": ("kernel {kernel} is larger than the feature map {shape} padded by {padding} "
             "({padded})",
             "use a smaller kernel, more padding, or fewer strides and pools before this layer"),
    "E188": ("a residual add of mismatched shapes: the block's input is {shape}, its output {out}",
             "drop 'shortcut=identity': a 1 x 1 conv shortcut matches them"),
    "E189": ("'{name}' takes a name here, got '{value}'",
             "first= and second= take a neuron or 'plain'; shortcut= takes identity or conv"),
    "E190": ("a second {what} '{name}' in one layer", "the layer already has '{first}'"),
    "E191": ("network '{name}' ends with an image of {shape}",
             "end it with 'globalpool' or 'flatten' and a dense layer"),
    "E192": ("unknown BatchNorm mode 'bn={value}'",
             "bn=terms: a BatchNorm per term of the neuron's sum; bn=sum (or bn): one after it"),
    "E193": ("'bn=terms' on {what}",
             "write 'bn' for one BatchNorm after the conv, or give the layer a neuron, "
             "e.g. 'conv 16 td bn=terms'"),
}  # fmt: skip


def error(code: str, span: Span | None, hint: str | None = None, **fields: object) -> SpecError:
    """The SpecError for `code`, its templates filled from `fields`; `hint` overrides."""
    message, default_hint = ERRORS[code]
    return SpecError(code, message.format(**fields), span, hint or default_hint.format(**fields))
