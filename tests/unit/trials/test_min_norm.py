"""The min-norm solver: exact for two vectors, KKT-optimal for more, bounded with reasons."""

from __future__ import annotations

import pytest
import torch

from trials.min_norm import gram_matrix, min_norm_element, min_norm_weights, two_vector_weight


def _kkt_violation(vectors: torch.Tensor, weights: torch.Tensor) -> float:
    """Largest violation of the min-norm optimality conditions, relative to max_t ‖g_t‖²:
    ⟨d, g_t⟩ ≥ ‖d‖² for all t, with equality where w_t > 0."""
    g = vectors.to(torch.float64)
    d = weights @ g
    inner, sq = g @ d, d @ d
    below = float((sq - inner).clamp_min(0).max())
    off = float((inner[weights > 0] - sq).abs().max())
    return max(below, off) / float((g * g).sum(1).max())


def _random_problems(count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        tasks = int(torch.randint(3, 9, (1,), generator=g))
        dim = int(torch.randint(2, 60, (1,), generator=g))  # includes dim < tasks (degenerate hulls)
        scales = torch.rand(tasks, 1, generator=g, dtype=torch.float64) * 10
        common = torch.randn(1, dim, generator=g, dtype=torch.float64) * 3 * torch.rand(1, generator=g).item()
        yield torch.randn(tasks, dim, generator=g, dtype=torch.float64) * scales + common


def test_two_vectors_closed_form_is_exact() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(100):
        v = torch.randn(2, 7, generator=g, dtype=torch.float64) * torch.rand(2, 1, generator=g, dtype=torch.float64)
        d, result = min_norm_element(v)
        assert result.reason == "closed_form" and result.iterations == 0
        # the exact minimizer over the segment, from the 1-D quadratic's vertex
        diff = v[0] - v[1]
        a = float(((v[1] - v[0]) @ v[1]) / (diff @ diff))
        a = min(max(a, 0.0), 1.0)
        assert torch.allclose(d, a * v[0] + (1 - a) * v[1], rtol=0, atol=1e-14)
        assert _kkt_violation(v, result.weights) < 1e-12
        # nothing on a fine grid of the segment is shorter
        grid = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None]
        assert float((grid * v[0] + (1 - grid) * v[1]).norm(dim=1).min()) >= float(d.norm()) - 1e-12


def test_two_vector_edge_cases() -> None:
    assert two_vector_weight(1.0, 2.0, 9.0) == 1.0  # g1 is the short end: ⟨g1, g2⟩ ≥ ‖g1‖²
    assert two_vector_weight(9.0, 2.0, 1.0) == 0.0
    assert two_vector_weight(4.0, 4.0, 4.0) == 0.5  # identical vectors: any weight, the midpoint
    assert two_vector_weight(1.0, -1.0, 1.0) == 0.5  # opposite unit vectors meet at 0 halfway


def test_many_vectors_satisfy_the_kkt_conditions() -> None:
    for vectors in _random_problems(200):
        result = min_norm_weights(gram_matrix(vectors))
        w = result.weights
        assert result.reason == "converged"
        assert bool((w >= 0).all()) and abs(float(w.sum()) - 1.0) < 1e-12
        assert _kkt_violation(vectors, w) < 1e-9


def test_three_vectors_beat_a_simplex_grid() -> None:
    g = torch.Generator().manual_seed(3)
    steps = 60
    a, b = torch.meshgrid(torch.arange(steps + 1), torch.arange(steps + 1), indexing="ij")
    keep = a + b <= steps
    grid = torch.stack([a[keep], b[keep], steps - a[keep] - b[keep]], dim=1).to(torch.float64) / steps
    for _ in range(20):
        v = torch.randn(3, 5, generator=g, dtype=torch.float64)
        d, _ = min_norm_element(v)
        assert float(d.norm()) <= float((grid @ v).norm(dim=1).min()) + 1e-12


def test_zero_and_single_and_capped_runs_say_why() -> None:
    assert min_norm_weights(torch.zeros(3, 3)).reason == "zero"
    single = min_norm_weights(torch.tensor([[4.0]]))
    assert single.reason == "single" and single.weights.tolist() == [1.0]
    # a problem that needs more than one step from the best pair, cut off after one
    vectors = next(v for v in _random_problems(50, seed=7) if min_norm_weights(gram_matrix(v)).iterations > 1)
    capped = min_norm_weights(gram_matrix(vectors), max_iter=1)
    assert capped.reason == "max_iter" and capped.iterations == 1 and capped.gap > 1e-10
    assert bool((capped.weights >= 0).all()) and abs(float(capped.weights.sum()) - 1.0) < 1e-12


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"square \(T, T\) Gram matrix"):
        min_norm_weights(torch.ones(2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        min_norm_weights(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        min_norm_weights(torch.eye(3), max_iter=0)
