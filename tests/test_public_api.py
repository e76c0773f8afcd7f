"""The public surface is pinned: adding or removing a name is a deliberate change of this test."""

import importlib

import mfrec

EXPECTED = {
    "__version__", "Interactions", "read_interactions", "Attributes", "ImplicitFeedback", "PseudoRatingRule",
    "confidence", "explicit_to_implicit", "events_to_implicit", "events_to_explicit", "seed_example", "datasets",
    "split", "Split", "Recommender", "FactorModel", "ImplicitALS", "ExplicitALS", "SGDFactorization", "Popularity",
    "Biases", "GlobalLinear", "PureSVD", "ContentBased", "HybridALS", "clone", "load", "metrics", "evaluate", "cross_validate", "GridSearch", "RandomSearch", "MfrecError",
    "InvalidDataError", "InvalidParameterError", "NotFittedError", "UnknownIdError", "ModelFitError",
    "ModelFileError", "DatasetError", "MissingExtraError",
}


def test_exported_members():
    assert set(mfrec.__all__) == EXPECTED
    assert len(mfrec.__all__) == len(set(mfrec.__all__))
    for name in mfrec.__all__:
        assert hasattr(mfrec, name), name


def test_public_modules_import_as_modules():
    for module in ("mfrec.split", "mfrec.metrics", "mfrec.datasets"):
        importlib.import_module(module)
    assert callable(mfrec.split.per_user_split)
    assert callable(mfrec.metrics.ndcg_at_k)


def test_no_competitor_is_imported_at_run_time():
    import sys

    import mfrec.cli  # noqa: F401
    import mfrec.serve  # noqa: F401

    for name in ("implicit", "surprise", "pyspark"):
        assert name not in sys.modules
