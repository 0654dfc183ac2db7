"""Cost models: predict p10/p50/p90 of energy, throughput, latency, memory and accuracy change."""

from recommender.costmodel.base import TARGETS, CostModel, Quantiles

__all__ = ["TARGETS", "CostModel", "Quantiles", "default_cost_model"]


def default_cost_model(model_dir=None) -> CostModel:
    """The shipped learned model when its artifact is present and valid, else the analytic model."""
    from recommender.costmodel.learned import load_default

    return load_default(model_dir)
