import torch

from pipelines.training.gradients import clip_gradients_before_step


def _step_with_large_gradient(max_norm):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    before = layer.weight.detach().clone()
    optimizer = clip_gradients_before_step(torch.optim.SGD(layer.parameters(), lr=1.0), max_norm)
    (layer(torch.full((1, 4), 1000.0)).sum()).backward()
    optimizer.step()
    return torch.linalg.vector_norm(layer.weight.detach() - before).item(), layer


def test_step_is_bounded_by_max_norm():
    moved, _ = _step_with_large_gradient(0.5)
    assert moved <= 0.5 + 1e-6


def test_disabled_clipping_leaves_the_step_alone():
    moved, _ = _step_with_large_gradient(None)
    assert moved > 100.0
