"""Smoke test: torch and spikingjelly 2.0 give a stateless IF neuron with an ATan surrogate."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, neuron, surrogate


def test_if_neuron_with_atan_surrogate_fires_and_passes_gradients():
    node = neuron.IFNode(
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=True,
    )
    x = torch.tensor([0.2, 0.99, 1.0, 3.0], requires_grad=True)
    spikes = node(x)
    assert spikes.tolist() == [0.0, 0.0, 1.0, 1.0]  # Heaviside(v - threshold), >= fires
    spikes.sum().backward()
    # ATan'(u) = alpha / 2 / (1 + (pi/2 * alpha * u)^2), u = v - threshold: largest at threshold.
    grad = x.grad
    assert torch.all(grad > 0)
    assert torch.isclose(grad[2], torch.tensor(1.0))
    assert grad[1] > grad[0] and grad[2] > grad[3]
    functional.reset_net(node)
    assert float(node.v) == 0.0
