"""The conformance suite over the flagship models: ImplicitALS with each solver, ExplicitALS, SGDFactorization
plain and SVD++ (they were left out while their numba kernels took minutes to compile in every fresh CI)."""

from __future__ import annotations

from model_conformance import RecommenderConformance

from mfrec import ExplicitALS, ImplicitALS, SGDFactorization


class TestImplicitALSCGConformance(RecommenderConformance):
    def make_model(self):
        return ImplicitALS(factors=6, iterations=4, solver="cg", seed=3)


class TestImplicitALSCholeskyConformance(RecommenderConformance):
    def make_model(self):
        return ImplicitALS(factors=6, iterations=4, solver="cholesky", seed=3)


class TestImplicitALSGDConformance(RecommenderConformance):
    def make_model(self):
        return ImplicitALS(factors=6, iterations=4, solver="gd", seed=3)


class TestExplicitALSConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return ExplicitALS(factors=6, iterations=4, seed=3)


class TestSGDFactorizationConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return SGDFactorization(factors=6, epochs=5, seed=3)


class TestSVDppConformance(RecommenderConformance):
    predicts = True

    def make_model(self):
        return SGDFactorization(factors=6, epochs=5, seed=3, implicit_feedback=True)
