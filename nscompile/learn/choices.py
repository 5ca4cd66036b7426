"""The choice lists of training that the command line offers before it imports torch."""

from __future__ import annotations

#: The MLP baselines of a network of features.
MLP_BASELINES = ("mlp", "mlp-params")
#: The baselines of an image network: the same network without neurons, and one of about its
#: parameter count (`train.plain`).
IMAGE_BASELINES = ("plain", "plain-params")
BASELINES = (*MLP_BASELINES, *IMAGE_BASELINES)
#: How training images are augmented (`train.core.augment`); "auto" is "crop".
AUGMENTS = ("auto", "none", "crop", "crop+flip")
