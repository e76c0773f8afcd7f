"""Small in-register linear-algebra helpers for the per-row ALS solves (numba, no allocation).

These work on caller-provided scratch so a parallel kernel allocates once per chunk of rows, never per row.
Reductions are compiled with ``fastmath={"reassoc", "contract"}`` so they vectorise; the NaN/inf checks the
solvers rely on are kept (no ``nnan``/``ninf`` flags), and the tests compare every helper against numpy.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from mfrec.kernels._numba import CACHE

__all__ = [
    "cholesky_inplace",
    "cholesky_solve_inplace",
    "cholesky_upper_inplace",
    "cholesky_upper_solve_inplace",
    "pivot_floor",
    "dot",
    "symv_lower",
    "axpy",
    "matvec_rows",
    "gram_apply",
    "dot8",
    "fetch_add",
    "prefer_wide_vectors",
    "prefetch_row",
]

_FM = {"reassoc", "contract"}



@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit registers where the CPU has them (numba code only).

    LLVM's x86 backend prefers 256-bit vectors on AVX-512 CPUs by default (wide vectors lower the clock of some
    Intel parts, which costs code that uses them only briefly); numba offers no per-function switch, and its
    global one (``NUMBA_CPU_FEATURES``) would change every numba function of the process. This call sets the
    ``"prefer-vector-width"="512"`` attribute on the LLVM function it is compiled into (a prange body becomes its
    own function: call it inside the body) and emits no instruction. The kernels that call it run their inner
    loops for long stretches, where the wider FMAs win. On CPUs without AVX-512 (or not x86) the attribute
    changes nothing.
    """
    sig = types.none()

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        # llvmlite's FunctionAttributes only accepts its list of keyword attributes; string attributes are
        # written into the IR as given, so add it through the underlying set (a hint: if a future llvmlite
        # stores attributes differently, the kernel compiles without it rather than failing)
        try:
            set.add(attrs, '"prefer-vector-width"="512"')
        except TypeError:
            pass
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch_row(typingctx, matrix, row):
    """Ask the CPU to start loading row ``row`` of a C-contiguous 2-D array into cache (numba code only).

    One ``llvm.prefetch`` (read, high locality) per 64-byte cache line the row touches; returns at once and
    never faults (an out-of-range row is the caller's bug, but a prefetch of a bad address is ignored by the
    CPU). The CG kernel issues it for the factor rows it will gather a few entries later, so their cache misses
    overlap the arithmetic on the entries before them instead of stalling it.
    """
    if not (isinstance(matrix, types.Array) and matrix.ndim == 2 and matrix.layout == "C"
            and isinstance(row, types.Integer)):
        return None
    sig = types.none(matrix, row)

    def codegen(context, builder, signature, args):
        aryty, rowty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        r = context.cast(builder, args[1], rowty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r, cgutils.intp_t(0)], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        base = builder.bitcast(ptr, i8p)
        strides = cgutils.unpack_tuple(builder, ary.strides, 2)
        row_bytes = strides[0]  # C-contiguous: a row's bytes
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        # named through llvmlite (".p0i8" with typed pointers, LLVM remangles it where pointers are opaque)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        last = builder.sub(row_bytes, cgutils.intp_t(1))
        # lines at offsets 0, 64, ... < row_bytes, and the row's last byte (a row need not start on a line)
        with cgutils.for_range_slice(builder, cgutils.intp_t(0), row_bytes, cgutils.intp_t(64)) as (off, _):
            builder.call(fn, [builder.gep(base, [off]), i32(0), i32(3), i32(1)])
        builder.call(fn, [builder.gep(base, [last]), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fetch_add(typingctx, counter, index, value):
    """Atomic ``old = counter[index]; counter[index] += value; return old`` on a 1-D int64 array (numba code only).

    An LLVM ``atomicrmw add`` (monotonic ordering: only the counter itself must be consistent). It is the work
    queue of the parallel kernels: each thread takes the next work item from a shared counter, so a thread
    slowed down by other processes on a shared machine takes fewer items instead of holding up the others at
    the end of the parallel loop (as a static split of the rows would). numba's own analysis does not know
    that the call writes ``counter``: use the counter only through this function inside a parallel loop (a
    plain ``counter[0]`` read in the same function may be moved before the loop).
    """
    if not (isinstance(counter, types.Array) and counter.ndim == 1 and counter.dtype == types.int64
            and isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None
    sig = types.int64(counter, index, value)

    def codegen(context, builder, signature, args):
        aryty, idxty, valty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [i], wraparound=False)
        v = context.cast(builder, args[2], valty, types.int64)
        return builder.atomic_rmw("add", ptr, v, "monotonic")

    return sig, codegen


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def dot(a, b, n):
    """``sum_k a[k] b[k]`` over the first ``n`` entries (accumulated in the dtype of ``a``)."""
    s = a.dtype.type(0.0)
    for k in range(n):
        s += a[k] * b[k]
    return s


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def axpy(alpha, x, y, n):
    """``y[:n] += alpha * x[:n]`` in place."""
    for k in range(n):
        y[k] += alpha * x[k]


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def symv_lower(A, x, out, n):
    """``out = A x`` for symmetric ``A`` of which only the lower triangle (``A[i, j]``, ``j <= i``) is valid.

    Row-major traversal: ``out_i = sum_{j<=i} A_ij x_j + sum_{j<i} A_ij x_j`` scattered to ``out_j``.
    """
    for i in range(n):
        out[i] = 0.0
    for i in range(n):
        xi = x[i]
        s = A[i, i] * xi
        for j in range(i):
            a = A[i, j]
            s += a * x[j]
            out[j] += a * xi
        out[i] += s


@njit(nogil=True, cache=CACHE)
def pivot_floor(A, n):
    """``n eps max_k A_kk`` in the dtype of ``A``: a Cholesky pivot at or below it counts as zero.

    A pivot is the part of ``A_kk`` that the earlier columns do not explain; one that small against the largest
    diagonal entry means column ``k`` is, up to rounding, a combination of the earlier ones (the threshold is
    :func:`mfrec.kernels.dense.rank_tolerance`, numpy's ``lstsq`` rank cut-off). Waiting for a pivot that is
    exactly zero or negative misses most singular systems: rounding leaves a tiny positive pivot, and the solve
    returns finite nonsense.
    """
    top = 0.0
    for k in range(n):
        if A[k, k] > top:
            top = A[k, k]
    return n * np.finfo(A.dtype).eps * top


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_inplace(A, n):
    """Overwrite the lower triangle of SPD ``A`` (n x n) with ``L``, ``A = L L^T`` (Cholesky-Crout, row-wise).

    Only ``A[i, j]`` with ``j <= i`` is read. Returns False when a pivot is at most :func:`pivot_floor` (``A``
    singular or numerically so, or NaN), leaving ``A`` partly overwritten: the caller solves such a system by
    minimum-norm least squares (:func:`mfrec.kernels.dense.solve_psd`).
    """
    floor = pivot_floor(A, n)
    for i in range(n):
        for j in range(i + 1):
            s = A[i, j]
            # s = A_ij - sum_{p<j} L_ip L_jp    (contiguous rows i and j: a vectorised dot product)
            for p in range(j):
                s -= A[i, p] * A[j, p]
            if i == j:
                if not s > floor:  # also catches NaN
                    return False
                A[i, i] = np.sqrt(s)
            else:
                A[i, j] = s / A[j, j]
    return True


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_solve_inplace(L, b, n):
    """Solve ``L L^T z = b`` given the factor from :func:`cholesky_inplace`; ``b`` is overwritten by ``z``."""
    for i in range(n):  # L w = b
        s = b[i]
        for p in range(i):
            s -= L[i, p] * b[p]
        b[i] = s / L[i, i]
    for i in range(n - 1, -1, -1):  # L^T z = w
        s = b[i]
        for p in range(i + 1, n):
            s -= L[p, i] * b[p]
        b[i] = s / L[i, i]


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_upper_inplace(A, n):
    """Overwrite the upper triangle of SPD ``A`` (n x n) with ``U``, ``A = U^T U``: blocked right-looking Cholesky.

    Only ``A[i, j]`` with ``j >= i`` is read or written; the arithmetic runs in the dtype of ``A``. Pivots are
    taken eight at a time: the eight pivot rows are factorised and scaled (``U_kj = A_kj / U_kk``) with the
    Schur updates inside the panel applied at once, then every trailing row ``i`` gets the eight rank-1 updates
    in one sweep, ``A_ij -= sum_{q<8} U_{k0+q,i} U_{k0+q,j}`` for ``j >= i``, so each trailing entry is loaded
    and stored once per eight pivots and the inner loop is an axpy over contiguous row segments (no
    reductions; it vectorises). Loops index row *slices* from 0 so numba's negative-index wraparound check
    folds away (a loop ``for j in range(i, n)`` over ``A[i, j]`` does not vectorise).

    Returns False when a pivot is at most :func:`pivot_floor` (``A`` singular or numerically so in its dtype,
    or NaN), leaving ``A`` partly overwritten.
    """
    floor = pivot_floor(A, n)
    k0 = 0
    while k0 < n:
        kb = min(8, n - k0)
        # panel: the kb pivot rows, right-looking within the panel
        for k in range(k0, k0 + kb):
            s = A[k, k]
            if not s > floor:  # also catches NaN
                return False
            ukk = np.sqrt(s)
            A[k, k] = ukk
            inv = 1.0 / ukk
            rk = A[k, k + 1 :]
            for t in range(n - k - 1):
                rk[t] *= inv  # U_kj = A_kj / U_kk
            for i in range(k + 1, k0 + kb):
                a = A[k, i]
                ri = A[i, i:]
                uk = A[k, i:]
                for t in range(n - i):
                    ri[t] -= a * uk[t]  # A_ij -= U_ki U_kj inside the panel
        if kb == 8:
            for i in range(k0 + 8, n):
                a0 = A[k0, i]
                a1 = A[k0 + 1, i]
                a2 = A[k0 + 2, i]
                a3 = A[k0 + 3, i]
                a4 = A[k0 + 4, i]
                a5 = A[k0 + 5, i]
                a6 = A[k0 + 6, i]
                a7 = A[k0 + 7, i]
                ri = A[i, i:]
                u0 = A[k0, i:]
                u1 = A[k0 + 1, i:]
                u2 = A[k0 + 2, i:]
                u3 = A[k0 + 3, i:]
                u4 = A[k0 + 4, i:]
                u5 = A[k0 + 5, i:]
                u6 = A[k0 + 6, i:]
                u7 = A[k0 + 7, i:]
                # A_ij -= sum_q U_qi U_qj over the eight pivots q, j >= i
                for t in range(n - i):
                    ri[t] -= (a0 * u0[t] + a1 * u1[t] + a2 * u2[t] + a3 * u3[t]
                              + a4 * u4[t] + a5 * u5[t] + a6 * u6[t] + a7 * u7[t])
        k0 += kb
    return True


@njit(nogil=True, cache=CACHE, fastmath=_FM)
def cholesky_upper_solve_inplace(U, b, n):
    """Solve ``U^T U z = b`` given the factor from :func:`cholesky_upper_inplace`; ``b`` is overwritten by ``z``.

    Forward ``U^T w = b`` as column axpys over contiguous rows of ``U``; backward ``U z = w`` as row dots.
    """
    for i in range(n):  # U^T w = b: w_i = b_i / U_ii, then b_j -= w_i U_ij for j > i
        wi = b[i] / U[i, i]
        b[i] = wi
        ui = U[i, i + 1 :]
        bt = b[i + 1 :]
        for t in range(n - i - 1):
            bt[t] -= wi * ui[t]
    for i in range(n - 1, -1, -1):  # U z = w: z_i = (w_i - sum_{j>i} U_ij z_j) / U_ii
        ui = U[i, i + 1 :]
        bt = b[i + 1 :]
        s = b[i]
        for t in range(n - i - 1):
            s -= ui[t] * bt[t]
        b[i] = s / U[i, i]


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def matvec_rows(G, p, out, n):
    """``out[:n] = G[:n, :n]^T p`` (``= G p`` for symmetric ``G``), four rows of ``G`` per sweep over ``out``.

    Sweeping ``out`` once per four rows quarters its load/store traffic against one :func:`axpy` per row.
    """
    for k in range(n):
        out[k] = 0.0
    j = 0
    while j + 4 <= n:
        a0 = p[j]
        a1 = p[j + 1]
        a2 = p[j + 2]
        a3 = p[j + 3]
        g0 = G[j]
        g1 = G[j + 1]
        g2 = G[j + 2]
        g3 = G[j + 3]
        for k in range(n):
            out[k] += a0 * g0[k] + a1 * g1[k] + a2 * g2[k] + a3 * g3[k]
        j += 4
    while j < n:
        a0 = p[j]
        g0 = G[j]
        for k in range(n):
            out[k] += a0 * g0[k]
        j += 1


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def dot8(Y, indices, e, x, n):
    """The eight dot products ``Y[indices[e + q], :n] . x[:n]``, ``q = 0..7``, in one sweep over ``x``.

    Eight independent reductions (and eight row gathers) in flight at once hide their latency; accumulated in
    the dtype of ``Y``. The sparse sweeps of the ALS kernels take their entries eight at a time through this.
    """
    zero = Y.dtype.type(0.0)
    y0 = Y[indices[e]]
    y1 = Y[indices[e + 1]]
    y2 = Y[indices[e + 2]]
    y3 = Y[indices[e + 3]]
    y4 = Y[indices[e + 4]]
    y5 = Y[indices[e + 5]]
    y6 = Y[indices[e + 6]]
    y7 = Y[indices[e + 7]]
    s0 = zero
    s1 = zero
    s2 = zero
    s3 = zero
    s4 = zero
    s5 = zero
    s6 = zero
    s7 = zero
    for k in range(n):
        xk = x[k]
        s0 += y0[k] * xk
        s1 += y1[k] * xk
        s2 += y2[k] * xk
        s3 += y3[k] * xk
        s4 += y4[k] * xk
        s5 += y5[k] * xk
        s6 += y6[k] * xk
        s7 += y7[k] * xk
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(nogil=True, cache=CACHE, fastmath=_FM, inline="always")
def gram_apply(start, end, indices, conf, pref, c0, Y, x, out, n, with_b):
    """Sparse Gram term of one row, eight entries per sweep (``y_e = Y[indices[e]]``, ``w_e = conf[e] - c0``).

    ``with_b`` False: ``out[:n] += sum_e w_e (y_e . x) y_e`` (the sparse part of ``A_u x``).
    ``with_b`` True: ``out[:n] += sum_e (conf[e] pref[e] - w_e (y_e . x)) y_e`` (``b_u`` minus that part).

    ``c0`` must have the dtype of ``Y`` (no promotion to float64). Eight independent dot products are in flight
    at once (their reduction latency and eight gathers overlap) and ``out`` is read and written once per eight
    entries instead of once per entry; the remainder goes four, then one entry at a time. (Eight against four
    per sweep: 48 against 53 cycles per entry on L1-resident rows at d = 128 float32.) While a sweep works on
    entries ``e .. e+7`` the rows of ``e+8 .. e+15`` are prefetched (:func:`prefetch_row`): a row's factors
    come from L3 or memory on the first pass, and the misses then overlap the arithmetic (distance 8 beat
    16 and 32 on the issue's matrix).
    """
    e = start
    zero = Y.dtype.type(0.0)
    while e + 8 <= end:
        for f in range(e + 8, min(e + 16, end)):
            prefetch_row(Y, indices[f])
        y0 = Y[indices[e]]
        y1 = Y[indices[e + 1]]
        y2 = Y[indices[e + 2]]
        y3 = Y[indices[e + 3]]
        y4 = Y[indices[e + 4]]
        y5 = Y[indices[e + 5]]
        y6 = Y[indices[e + 6]]
        y7 = Y[indices[e + 7]]
        s0, s1, s2, s3, s4, s5, s6, s7 = dot8(Y, indices, e, x, n)
        s0 = (conf[e] - c0) * s0
        s1 = (conf[e + 1] - c0) * s1
        s2 = (conf[e + 2] - c0) * s2
        s3 = (conf[e + 3] - c0) * s3
        s4 = (conf[e + 4] - c0) * s4
        s5 = (conf[e + 5] - c0) * s5
        s6 = (conf[e + 6] - c0) * s6
        s7 = (conf[e + 7] - c0) * s7
        if with_b:
            s0 = conf[e] * pref[e] - s0
            s1 = conf[e + 1] * pref[e + 1] - s1
            s2 = conf[e + 2] * pref[e + 2] - s2
            s3 = conf[e + 3] * pref[e + 3] - s3
            s4 = conf[e + 4] * pref[e + 4] - s4
            s5 = conf[e + 5] * pref[e + 5] - s5
            s6 = conf[e + 6] * pref[e + 6] - s6
            s7 = conf[e + 7] * pref[e + 7] - s7
        for k in range(n):
            out[k] += (s0 * y0[k] + s1 * y1[k] + s2 * y2[k] + s3 * y3[k]
                       + s4 * y4[k] + s5 * y5[k] + s6 * y6[k] + s7 * y7[k])
        e += 8
    while e + 4 <= end:
        y0 = Y[indices[e]]
        y1 = Y[indices[e + 1]]
        y2 = Y[indices[e + 2]]
        y3 = Y[indices[e + 3]]
        s0 = zero
        s1 = zero
        s2 = zero
        s3 = zero
        for k in range(n):
            xk = x[k]
            s0 += y0[k] * xk
            s1 += y1[k] * xk
            s2 += y2[k] * xk
            s3 += y3[k] * xk
        s0 = (conf[e] - c0) * s0
        s1 = (conf[e + 1] - c0) * s1
        s2 = (conf[e + 2] - c0) * s2
        s3 = (conf[e + 3] - c0) * s3
        if with_b:
            s0 = conf[e] * pref[e] - s0
            s1 = conf[e + 1] * pref[e + 1] - s1
            s2 = conf[e + 2] * pref[e + 2] - s2
            s3 = conf[e + 3] * pref[e + 3] - s3
        for k in range(n):
            out[k] += s0 * y0[k] + s1 * y1[k] + s2 * y2[k] + s3 * y3[k]
        e += 4
    while e < end:
        y0 = Y[indices[e]]
        s0 = zero
        for k in range(n):
            s0 += y0[k] * x[k]
        s0 = (conf[e] - c0) * s0
        if with_b:
            s0 = conf[e] * pref[e] - s0
        for k in range(n):
            out[k] += s0 * y0[k]
        e += 1
