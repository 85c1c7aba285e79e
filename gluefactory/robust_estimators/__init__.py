from .base_estimator import (
    BaseEstimator,
    get_estimator,
    list_estimators,
    load_estimator,
)

__all__ = ["BaseEstimator", "get_estimator", "list_estimators", "load_estimator"]
