"""Kernels on plain arrays (no ids, no pandas): the compiled row solves, epochs and top-k, and their numpy drivers.

The hot loops are C++ in ``_native/`` (one nanobind module, :mod:`mfrec.kernels._native`, built by pip; see
``docs/kernels.md``). Each module here wraps them with the documented signatures and the math: ``als_implicit``,
``als_explicit``, ``hybrid``, ``sgd``, ``topk``; ``dense`` holds the numpy/LAPACK solves, ``linalg`` the compiled
small helpers, ``threads`` the size of the kernels' thread pool.
"""
