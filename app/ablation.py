"""Does routing matter for this input? The model run twice, without routing and with it (torch).

A page that already has a traced forward reads the same two answers from it instead
(`routing_measures.Ablation.from_trace`); this runner is the check that they agree.
"""

from __future__ import annotations

import numpy as np
import torch

from app.routing_measures import Ablation


def ablation(model, x, iterations: int = 3, routing_gain: float = 1.0) -> Ablation:
    """Run `model` on one input without routing (1 iteration) and with it.

    x: a (28, 28) array or a (1, 1, 28, 28) tensor, pixels in [0, 1]. Two forward passes. The
    first equals iteration 1 of any traced forward (`lengths_per_iter[0]`): a page that already
    has one can read the no-routing lengths from it instead."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(1, 1, 28, 28)
    with torch.no_grad():
        plain = model(x, iterations=1)
        routed = model(x, iterations=iterations, routing_gain=routing_gain)
    return Ablation(
        lengths_no_routing=plain.lengths[0].double().numpy(),
        lengths_routed=routed.lengths[0].double().numpy(),
        iterations=int(iterations),
        routing_gain=float(routing_gain),
    )
