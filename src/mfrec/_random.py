"""The one seed entry point: int / SeedSequence / Generator / None -> numpy Generator."""

from __future__ import annotations

import numpy as np

from mfrec import _aligned
from mfrec.exceptions import InvalidParameterError

SeedLike = int | np.random.SeedSequence | np.random.Generator | None


def rng(seed: SeedLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed`` (a Generator is passed through unchanged)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise InvalidParameterError(f"seed must be >= 0, got {seed}")
        return np.random.default_rng(int(seed))
    raise InvalidParameterError(f"seed must be an int, SeedSequence, Generator or None, got {type(seed).__name__}")


def int_seed(seed: SeedLike) -> int:
    """A 32-bit int derived from ``seed``, for kernels that seed their own generator."""
    return int(rng(seed).integers(0, 2**31 - 1))


#: values per independently seeded block of :func:`normal_matrix` (fixed: the values must not depend on threads)
NORMAL_BLOCK = 1 << 20


def normal_matrix(gen: np.random.Generator, rows: int, cols: int, scale: float, dtype, threads: int = 1) -> np.ndarray:
    """A C-contiguous ``(rows, cols)`` array of ``N(0, scale^2)`` draws in ``dtype`` (factor initialisation).

    The draws are numpy's float32 normals (its float32 ziggurat, about twice as fast as float64 draws) for every
    ``dtype``, so a float32 and a float64 fit with the same seed start from the same values. The array is
    filled in blocks of whole rows of about :data:`NORMAL_BLOCK` values, block ``j`` from the ``j``-th child
    generator of ``gen`` (:meth:`numpy.random.Generator.spawn`), on up to ``threads`` threads (numpy releases
    the GIL while it fills): the values depend on the seed and the shape only, never on ``threads``.
    (200k x 128 float32: 0.83 s as float64 draws converted, 0.42 s as float32 draws, 0.20 s on 2 threads.)
    """
    return _block_matrix(gen, rows, cols, scale, dtype, threads, "standard_normal")


def uniform_matrix(gen: np.random.Generator, rows: int, cols: int, scale: float, dtype, threads: int = 1) -> np.ndarray:
    """As :func:`normal_matrix`, with draws uniform on ``[0, scale)`` (implicit's ALS initialisation).

    All-positive starting factors share one direction, which the first half-steps turn into the dominant
    (popularity) factor; on implicit's checkerboard test at d = 64, lambda = 0.05 this reaches implicit's
    15-iteration loss in 15 iterations where ``N(0, 0.01^2)`` needed about 20 (docs/benchmarks.md).
    """
    return _block_matrix(gen, rows, cols, scale, dtype, threads, "random")


def _block_matrix(gen, rows, cols, scale, dtype, threads, method: str) -> np.ndarray:
    """``scale`` times float32 draws of ``Generator.<method>`` in thread-independent blocks of rows."""
    return BlockDraws(gen, rows, cols, scale, dtype, method).full(threads)


class BlockDraws:
    """The recipe of one :func:`normal_matrix` / :func:`uniform_matrix` draw, whose rows can be drawn piecewise.

    Made from ``gen`` exactly as the whole-matrix functions use it (the same children spawned, so ``gen`` ends in
    the same state), it produces rows ``lo:hi`` of that matrix alone (:meth:`rows`), from fresh copies of the
    children that cover them: a distributed fit starts each block of rows from the values a local fit starts
    from, without any process holding the whole matrix.
    """

    def __init__(self, gen: np.random.Generator, rows: int, cols: int, scale: float, dtype, method: str) -> None:
        self.n_rows, self.cols, self.scale, self.dtype, self.method = int(rows), int(cols), scale, np.dtype(dtype), method
        self.step = max(1, NORMAL_BLOCK // max(self.cols, 1))
        n_children = len(range(0, self.n_rows, self.step))
        bit = gen.bit_generator
        self._bit_type = type(bit)
        self._children = bit.seed_seq.spawn(n_children)  # what Generator.spawn does

    def _fill(self, j: int, out: np.ndarray, skip: int = 0) -> None:
        """Rows of child ``j`` from its ``skip``-th on into ``out`` (float32)."""
        child = np.random.Generator(self._bit_type(self._children[j]))
        if skip:
            head = np.empty((skip, self.cols), dtype=np.float32)
            getattr(child, self.method)(out=head, dtype=np.float32)
        getattr(child, self.method)(out=out, dtype=np.float32)

    def _finish(self, out: np.ndarray) -> np.ndarray:
        out *= np.float32(self.scale)
        return _aligned.aligned(out, self.dtype)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of the matrix, equal to ``full()[lo:hi]``."""
        out = _aligned.empty((hi - lo, self.cols), np.float32)
        r = lo
        while r < hi:
            j, skip = divmod(r, self.step)
            take = min(hi - r, self.step - skip)
            self._fill(j, out[r - lo:r - lo + take], skip)
            r += take
        return self._finish(out)

    def full(self, threads: int = 1) -> np.ndarray:
        """The whole ``(rows, cols)`` matrix, child ``j`` filling rows ``j * step:`` on up to ``threads`` threads."""
        out = _aligned.empty((self.n_rows, self.cols), np.float32)
        starts = range(0, self.n_rows, self.step)

        def fill(j: int) -> None:
            lo = starts[j]
            self._fill(j, out[lo:lo + self.step])

        if threads > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
                list(pool.map(fill, range(len(starts))))
        else:
            for j in range(len(starts)):
                fill(j)
        return self._finish(out)
