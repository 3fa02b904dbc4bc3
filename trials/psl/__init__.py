"""Pareto set learning (``method: psl``): ONE network conditioned on the preference vector, trained on
preferences drawn every step, gives a continuous front for about the cost of one model.

Every other method buys its front one model per trade-off (K members cost K model-epochs per epoch and give
K points). Here each step draws P preferences (Dirichlet), evaluates the conditioned model at each and
minimizes the drawn preferences' scalarized losses (sampling.py, scalarization.py); every epoch the model is
evaluated at N fixed preferences and each is a point of the trial on the global front (population.py).

How the preference enters the model (conditioning.py), each with its paper:

- ``lowrank``: a shared base network plus rank-r deltas of every Linear/Conv2d weight generated from the
  preference (Chen & Kwok, "Efficient Pareto Manifold Learning with Low-Rank Structure", ICML 2024);
- ``hyper``: a hypernetwork generating every parameter of the network (Navon et al., "Learning the Pareto
  Front with Hypernetworks", ICLR 2021);
- ``film``: feature-wise scale and shift of the trunk's output from the preference (Dosovitskiy & Djolonga,
  "You Only Train Once", ICLR 2020; Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep
  Multi-Objective Learning" (COSMOS), ICDM 2021, whose cosine-penalized loss is ``scalarization: cosmos``).
"""

from trials.psl.population import PSLPopulation

__all__ = ["PSLPopulation"]
