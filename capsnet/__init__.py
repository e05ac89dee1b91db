"""capsnet: the CapsNet of "Dynamic Routing Between Capsules" (Sabour, Frosst, Hinton, 2017)."""

__version__ = "0.2.0"

from .checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    checkpoint_meta,
    load_model,
    resolve_checkpoint,
    save_checkpoint,
)
from .model import (
    CapsNet,
    CapsOutput,
    count_parameters,
    dynamic_routing,
    margin_loss,
    primary_position,
    receptive_field,
    reconstruction_loss,
    squash,
    training_loss,
)

__all__ = [
    "__version__",
    "DEFAULT_CHECKPOINT",
    "CapsNet",
    "CapsOutput",
    "CheckpointError",
    "checkpoint_meta",
    "count_parameters",
    "dynamic_routing",
    "load_model",
    "margin_loss",
    "primary_position",
    "receptive_field",
    "reconstruction_loss",
    "resolve_checkpoint",
    "save_checkpoint",
    "squash",
    "training_loss",
]
