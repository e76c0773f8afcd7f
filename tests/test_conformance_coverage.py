"""Every model class runs the conformance suite: a new model without a conformance test fails here.

The test files are imported and every ``RecommenderConformance`` subclass is asked for its model; the classes
they cover must include every class in the model registry (what ``mfrec.load`` can rebuild) and every
``Recommender`` the package exports. ImplicitALS must be covered with each of its solvers.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import mfrec
from mfrec.models.base import Recommender
from mfrec.persist import MODEL_REGISTRY, _ensure_registry
from model_conformance import RecommenderConformance

TESTS = Path(__file__).parent


def _conformance_models() -> list:
    models = []
    for path in sorted(TESTS.glob("test_*.py")):
        try:
            module = importlib.import_module(path.stem)
        except pytest.skip.Exception:  # an optional extra this environment lacks
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, RecommenderConformance) and obj is not RecommenderConformance:
                models.append(obj().make_model())
    return models


@pytest.fixture(scope="module")
def covered() -> list:
    return _conformance_models()


def test_every_registered_and_exported_model_class_runs_the_conformance_suite(covered):
    _ensure_registry()
    exported = {obj for obj in vars(mfrec).values()
                if inspect.isclass(obj) and issubclass(obj, Recommender) and not inspect.isabstract(obj)
                and obj.__name__ in MODEL_REGISTRY}
    # test modules register their own toy classes; the contract is about mfrec's
    classes = {c for c in MODEL_REGISTRY.values() if c.__module__.startswith("mfrec.")} | exported
    # a test may subclass a model only to pass its attribute tables to fit(data): that runs the class's code
    missing = sorted(c.__name__ for c in classes if not any(isinstance(m, c) for m in covered))
    assert not missing, f"model classes without a conformance test: {missing}"


def test_every_implicit_solver_and_sgd_variant_is_covered(covered):
    solvers = {m.solver for m in covered if isinstance(m, mfrec.ImplicitALS)}
    assert solvers == {"cg", "cholesky", "gd"}
    variants = {bool(m.implicit_feedback) for m in covered if isinstance(m, mfrec.SGDFactorization)}
    assert variants == {False, True}, "SGDFactorization plain and SVD++ (implicit_feedback=True)"
