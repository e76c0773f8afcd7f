// Implicit-feedback ALS row kernels (Hu, Koren & Volinsky 2008; CG after Takacs, Pilaszy & Tikk 2011).
// The math and the Python-facing contract are documented in mfrec/kernels/als_implicit.py.
//
//   A_u = G0 + sum_{i in R(u)} (c_ui - c0) y_i y_i^T,   G0 = c0 Y^T Y + lambda I
//   b_u = sum_{i in R(u)} c_ui p_ui y_i
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "linalg.hpp"
#include "pool.hpp"

namespace mfrec {

// A row number in the lists of rows a half-step solves (row_order's, window_plan's): int32, half an int64 per row
// of the side (the user side's order was 1.5 MB of the implicit benchmark's peak); a side has fewer than 2^31 rows.
using RowId = int32_t;

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define MFREC_SHUFFLE_KERNELS 1
// The eight sums of eight 64-byte vectors in lanes 0..7 of the result: a pairwise transpose-and-add tree, four
// levels of two shuffles and an add (about three instructions per sum, against eight or more for a separate
// horizontal reduction of each vector).
inline void sum8(const float __attribute__((vector_size(64))) * a, float* out) {
  typedef float v16 __attribute__((vector_size(64)));
  v16 b[4], c[2];
  for (int i = 0; i < 4; ++i)
    b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                   31);
  for (int i = 0; i < 2; ++i)
    c[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(b[2 * i], b[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  const v16 e = __builtin_shufflevector(c[0], c[1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
                __builtin_shufflevector(c[0], c[1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const v16 f = __builtin_shufflevector(e, e, 0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14) +
                __builtin_shufflevector(e, e, 1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int q = 0; q < 8; ++q) out[q] = f[q];
}
inline void sum8(const double __attribute__((vector_size(64))) * a, double* out) {
  typedef double v8 __attribute__((vector_size(64)));
  v8 b[4], c[2];
  for (int i = 0; i < 4; ++i)
    b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15);
  for (int i = 0; i < 2; ++i)
    c[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13) +
           __builtin_shufflevector(b[2 * i], b[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15);
  const v8 f = __builtin_shufflevector(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14) +
               __builtin_shufflevector(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15);
  for (int q = 0; q < 8; ++q) out[q] = f[q];
}

// Dot products with one vector x of d = NV 64-byte vectors, held in NV registers: eight rows at a time (eight
// accumulators summed by sum8) or one (a plain horizontal sum).
template <typename T, int NV>
struct RowDots {
  typedef typename Vec64<T>::type vec;
  static constexpr int W = 64 / (int)sizeof(T);
  vec xv[NV];

  explicit RowDots(const T* x) {
    for (int v = 0; v < NV; ++v) xv[v] = load64(x + v * W);
  }
  void eight(const T* const* y, T* s) const {  // s[q] = y[q] . x
    vec acc[8];
    for (int q = 0; q < 8; ++q) acc[q] = load64(y[q]) * xv[0];
    for (int v = 1; v < NV; ++v)
      for (int q = 0; q < 8; ++q) acc[q] += load64(y[q] + v * W) * xv[v];
    sum8(acc, s);
  }
  T one(const T* y) const {
    vec acc = load64(y) * xv[0];
    for (int v = 1; v < NV; ++v) acc += load64(y + v * W) * xv[v];
    T t = 0;
    for (int l = 0; l < W; ++l) t += acc[l];
    return t;
  }
};

// gram_apply for d = NV 64-byte vectors: x stays in NV registers, the eight dot products of a group accumulate
// in eight vectors summed by sum8, each output vector takes the group's eight scaled rows in two chains. The
// factor rows eight entries ahead are prefetched only when `prefetch` (the first pass over a row; later passes
// find its rows in cache and the prefetch instructions would only cost issue slots).
template <typename T, typename I, int NV>
inline void gram_apply_vec(int64_t start, int64_t end, const I* __restrict indices, Strided<T> conf,
                           Strided<T> pref, T c0, const T* __restrict Y, const T* __restrict x, T* __restrict out,
                           bool with_b, bool prefetch) {
  typedef typename RowDots<T, NV>::vec vec;
  constexpr int W = RowDots<T, NV>::W;
  constexpr int d = NV * W;
  const RowDots<T, NV> dx(x);
  int64_t e = start;
  for (; e + 8 <= end; e += 8) {
    if (prefetch) {
      const int64_t pf_end = std::min<int64_t>(e + 16, end);
      for (int64_t f = e + 8; f < pf_end; ++f) prefetch_row(Y + (size_t)indices[f] * d, d);
    }
    const T* y[8];
    for (int q = 0; q < 8; ++q) y[q] = Y + (size_t)indices[e + q] * d;
    T s[8];
    dx.eight(y, s);
    for (int q = 0; q < 8; ++q) {
      s[q] *= conf[e + q] - c0;
      if (with_b) s[q] = conf[e + q] * pref[e + q] - s[q];
    }
    for (int v = 0; v < NV; ++v) {
      vec a = load64(out + v * W), b = s[1] * load64(y[1] + v * W);
      a += s[0] * load64(y[0] + v * W);
      b += s[3] * load64(y[3] + v * W);
      a += s[2] * load64(y[2] + v * W);
      b += s[5] * load64(y[5] + v * W);
      a += s[4] * load64(y[4] + v * W);
      b += s[7] * load64(y[7] + v * W);
      a += s[6] * load64(y[6] + v * W);
      a += b;
      store64(out + v * W, a);
    }
  }
  for (; e < end; ++e) {
    const T* y0 = Y + (size_t)indices[e] * d;
    T s0 = dx.one(y0) * (conf[e] - c0);
    if (with_b) s0 = conf[e] * pref[e] - s0;
    for (int v = 0; v < NV; ++v) {
      vec a = load64(out + v * W) + s0 * load64(y0 + v * W);
      store64(out + v * W, a);
    }
  }
}
#endif

// Sparse Gram term of one row, eight entries per sweep (y_e = Y[indices[e]], w_e = conf[e] - c0):
//   with_b false: out += sum_e w_e (y_e . x) y_e                 (the sparse part of A_u x)
//   with_b true:  out += sum_e (conf_e pref_e - w_e (y_e . x)) y_e  (b_u minus that part)
// Eight independent dot products in flight hide their latency, out is read and written once per eight entries,
// and the factor rows of the next eight entries are prefetched (their misses overlap this sweep's arithmetic).
template <typename T, typename I>
inline void gram_apply(int64_t start, int64_t end, const I* __restrict indices, Strided<T> conf,
                       Strided<T> pref, T c0, const T* __restrict Y, const T* __restrict x,
                       T* __restrict out, int d, bool with_b, bool prefetch = true) {
#ifdef MFREC_SHUFFLE_KERNELS
  constexpr int W = 64 / (int)sizeof(T);
  switch (d / W * (d % W == 0)) {  // whole vectors only
    case 2: return gram_apply_vec<T, I, 2>(start, end, indices, conf, pref, c0, Y, x, out, with_b, prefetch);
    case 4: return gram_apply_vec<T, I, 4>(start, end, indices, conf, pref, c0, Y, x, out, with_b, prefetch);
    case 8: return gram_apply_vec<T, I, 8>(start, end, indices, conf, pref, c0, Y, x, out, with_b, prefetch);
    default: break;
  }
#endif
  int64_t e = start;
  for (; e + 8 <= end; e += 8) {
    const int64_t pf_end = std::min<int64_t>(e + 16, end);
    for (int64_t f = e + 8; f < pf_end; ++f) prefetch_row(Y + (size_t)indices[f] * d, d);
    const T* y0 = Y + (size_t)indices[e] * d;
    const T* y1 = Y + (size_t)indices[e + 1] * d;
    const T* y2 = Y + (size_t)indices[e + 2] * d;
    const T* y3 = Y + (size_t)indices[e + 3] * d;
    const T* y4 = Y + (size_t)indices[e + 4] * d;
    const T* y5 = Y + (size_t)indices[e + 5] * d;
    const T* y6 = Y + (size_t)indices[e + 6] * d;
    const T* y7 = Y + (size_t)indices[e + 7] * d;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (int k = 0; k < d; ++k) {
      const T xk = x[k];
      s0 += y0[k] * xk;
      s1 += y1[k] * xk;
      s2 += y2[k] * xk;
      s3 += y3[k] * xk;
      s4 += y4[k] * xk;
      s5 += y5[k] * xk;
      s6 += y6[k] * xk;
      s7 += y7[k] * xk;
    }
    s0 *= conf[e] - c0;
    s1 *= conf[e + 1] - c0;
    s2 *= conf[e + 2] - c0;
    s3 *= conf[e + 3] - c0;
    s4 *= conf[e + 4] - c0;
    s5 *= conf[e + 5] - c0;
    s6 *= conf[e + 6] - c0;
    s7 *= conf[e + 7] - c0;
    if (with_b) {
      s0 = conf[e] * pref[e] - s0;
      s1 = conf[e + 1] * pref[e + 1] - s1;
      s2 = conf[e + 2] * pref[e + 2] - s2;
      s3 = conf[e + 3] * pref[e + 3] - s3;
      s4 = conf[e + 4] * pref[e + 4] - s4;
      s5 = conf[e + 5] * pref[e + 5] - s5;
      s6 = conf[e + 6] * pref[e + 6] - s6;
      s7 = conf[e + 7] * pref[e + 7] - s7;
    }
    for (int k = 0; k < d; ++k)
      out[k] += s0 * y0[k] + s1 * y1[k] + s2 * y2[k] + s3 * y3[k] + s4 * y4[k] + s5 * y5[k] + s6 * y6[k] +
                s7 * y7[k];
  }
  for (; e < end; ++e) {
    const T* y0 = Y + (size_t)indices[e] * d;
    T s0 = dot(y0, x, d) * (conf[e] - c0);
    if (with_b) s0 = conf[e] * pref[e] - s0;
    axpy(s0, y0, out, d);
  }
}

#ifdef MFREC_SHUFFLE_KERNELS
// observed_row_loss for d = NV 64-byte vectors (x in registers, the eight dots of a group summed by sum8).
template <typename T, typename I, int NV>
inline double observed_row_loss_vec(int64_t start, int64_t end, const I* __restrict indices, Strided<T> conf,
                                    Strided<T> pref, double c0, const T* __restrict Y, const T* __restrict x) {
  constexpr int d = NV * RowDots<T, NV>::W;
  const RowDots<T, NV> dx(x);
  double acc = 0.0;
  int64_t e = start;
  for (; e + 8 <= end; e += 8) {
    const T* y[8];
    for (int q = 0; q < 8; ++q) y[q] = Y + (size_t)indices[e + q] * d;
    T s[8];
    dx.eight(y, s);
    for (int q = 0; q < 8; ++q) {
      const double diff = (double)pref[e + q] - (double)s[q];
      acc += (double)conf[e + q] * diff * diff - c0 * (double)s[q] * (double)s[q];
    }
  }
  for (; e < end; ++e) {
    const double sq = dx.one(Y + (size_t)indices[e] * d), diff = (double)pref[e] - sq;
    acc += (double)conf[e] * diff * diff - c0 * sq * sq;
  }
  return acc;
}
#endif

// sum_{e in [start, end)} [c_e (p_e - s_e)^2 - c0 s_e^2], s_e = x . Y[indices[e]] (dot in T, terms in double):
// the observed part of one row's loss.
template <typename T, typename I>
inline double observed_row_loss(int64_t start, int64_t end, const I* __restrict indices, Strided<T> conf,
                                Strided<T> pref, double c0, const T* __restrict Y, const T* __restrict x,
                                int d) {
#ifdef MFREC_SHUFFLE_KERNELS
  constexpr int W = 64 / (int)sizeof(T);
  switch (d / W * (d % W == 0)) {  // whole vectors only
    case 2: return observed_row_loss_vec<T, I, 2>(start, end, indices, conf, pref, c0, Y, x);
    case 4: return observed_row_loss_vec<T, I, 4>(start, end, indices, conf, pref, c0, Y, x);
    case 8: return observed_row_loss_vec<T, I, 8>(start, end, indices, conf, pref, c0, Y, x);
    default: break;
  }
#endif
  double acc = 0.0;
  int64_t e = start;
  for (; e + 8 <= end; e += 8) {
    const T* y[8];
    for (int q = 0; q < 8; ++q) y[q] = Y + (size_t)indices[e + q] * d;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (int k = 0; k < d; ++k) {
      const T xk = x[k];
      s0 += y[0][k] * xk;
      s1 += y[1][k] * xk;
      s2 += y[2][k] * xk;
      s3 += y[3][k] * xk;
      s4 += y[4][k] * xk;
      s5 += y[5][k] * xk;
      s6 += y[6][k] * xk;
      s7 += y[7][k] * xk;
    }
    const double s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    for (int q = 0; q < 8; ++q) {
      const double diff = (double)pref[e + q] - s[q];
      acc += (double)conf[e + q] * diff * diff - c0 * s[q] * s[q];
    }
  }
  for (; e < end; ++e) {
    const double sq = dot(x, Y + (size_t)indices[e] * d, d);
    const double diff = (double)pref[e] - sq;
    acc += (double)conf[e] * diff * diff - c0 * sq * sq;
  }
  return acc;
}

// The start of a row's CG once its residual r is known: p = r; returns r.r.
template <typename T>
inline T cg_start(const T* __restrict r, T* __restrict p, int d) {
  T s = 0;
  for (int j = 0; j < d; ++j) {
    p[j] = r[j];
    s += r[j] * r[j];
  }
  return s;
}

// One CG step of a row once A p is known: a = r.r / p.A p, x += a p, r -= a A p, p = r' + (r'.r' / r.r) p, rs = r'.r'.
// Returns false, leaving the row as it is, when p.A p is not positive (or NaN): the row stops there.
template <typename T>
inline bool cg_update(T* __restrict x, T* __restrict r, T* __restrict p, const T* __restrict Ap, T& rs, int d) {
  const T pAp = dot(p, Ap, d);
  if (!(pAp > T(0))) return false;
  const T a = rs / pAp;
  T rs_new = 0;
  for (int j = 0; j < d; ++j) {
    x[j] += a * p[j];
    r[j] -= a * Ap[j];
    rs_new += r[j] * r[j];
  }
  const T beta = rs_new / rs;
  for (int j = 0; j < d; ++j) p[j] = r[j] + beta * p[j];
  rs = rs_new;
  return true;
}

//: entries per gathered chunk of a row in implicit_cholesky_rows: 128 x 128 floats = 64 KiB at d = 128 (in L2)
constexpr int GRAM_CHUNK = 128;

// Exact per-row solves for rows[0..n): A_u = G0 + sum (c - c0) y y^T accumulated in T (upper triangle) by
// gram_upper over gathered chunks of GRAM_CHUNK factor rows, factorised and solved in T; a row not positive
// definite in T (float32) is refactorised in double before it is reported in failed. G0 is double (d x d, upper
// triangle read). row_loss: n_rows doubles or null.
template <typename T, typename P, typename I>
void implicit_cholesky_rows(const P* indptr, const I* indices, Strided<T> conf, Strided<T> pref, const T* Y,
                            const double* G0, double c0, const RowId* rows, int64_t n, int n_threads, int d, T* X,
                            uint8_t* failed, double* row_loss) {
  std::atomic<int64_t> next{0};
  const T cz = (T)c0;
  const int ldf = gram_ld<T>(d);
  parallel_workers(n, n_threads, [&](int) {
    const int ld64 = gram_ld<double>(d);
    LineVector<T> Af((size_t)d * ldf), A((size_t)d * ldf), bf(d), b(d), Fc((size_t)GRAM_CHUNK * ldf, T(0)),
        wc(GRAM_CHUNK);
    LineVector<double> A64((size_t)d * ld64), b64(d);
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) break;
      const int64_t u = rows[t];
      std::fill(Af.begin(), Af.end(), T(0));
      std::fill(bf.begin(), bf.end(), T(0));
      const int64_t start = indptr[u], end = indptr[u + 1];
      // A += sum_e w_e y_e y_e^T over chunks (w_e = c_e - c0), b += c_e p_e y_e while gathering
      for (int64_t e0 = start; e0 < end; e0 += GRAM_CHUNK) {
        const int nc = (int)std::min<int64_t>(GRAM_CHUNK, end - e0);
        for (int r = 0; r < nc; ++r) {
          const int64_t e = e0 + r;
          if (e + 8 < end) prefetch_row(Y + (size_t)indices[e + 8] * d, d);  // misses overlap this copy
          const T* y = Y + (size_t)indices[e] * d;
          T* f = Fc.data() + (size_t)r * ldf;  // the padding columns d..ldf stay zero
          const T v = conf[e] * pref[e];
          for (int j = 0; j < d; ++j) {
            f[j] = y[j];
            bf[j] += v * y[j];
          }
          wc[r] = conf[e] - cz;
        }
        gram_upper<T, true>(Fc.data(), wc.data(), nc, d, ldf, Af.data(), ldf);
      }
      for (int j = 0; j < d; ++j) {
        b[j] = bf[j];
        for (int k = j; k < d; ++k)
          A[(size_t)j * ldf + k] = (T)(G0[(size_t)j * d + k] + (double)Af[(size_t)j * ldf + k]);
      }
      T* xu = X + (size_t)u * d;
      if (cholesky_upper(A.data(), d, ldf)) {
        cholesky_upper_solve(A.data(), b.data(), d, ldf);
        std::copy(b.begin(), b.end(), xu);
      } else {
        // not positive definite in the factor dtype: retry in double before giving up on the row
        for (int j = 0; j < d; ++j) {
          b64[j] = bf[j];
          for (int k = j; k < d; ++k)
            A64[(size_t)j * ld64 + k] = G0[(size_t)j * d + k] + (double)Af[(size_t)j * ldf + k];
        }
        if (cholesky_upper(A64.data(), d, ld64)) {
          cholesky_upper_solve(A64.data(), b64.data(), d, ld64);
          for (int j = 0; j < d; ++j) xu[j] = (T)b64[j];
        } else {
          failed[u] = 1;
        }
      }
      if (row_loss) row_loss[u] = observed_row_loss(start, end, indices, conf, pref, c0, Y, xu, d);
    }
  });
}

// What the CG kernels share: one side's pattern and per-entry arrays, the fixed factors Y (n_fixed rows), G0 in T
// (full symmetric), c0, the CG steps and the rows X they solve in place (row_loss: n_rows doubles or null).
template <typename T, typename P, typename I>
struct CgSide {
  const P* indptr;
  const I* indices;
  Strided<T> conf, pref;
  const T* Y;
  int64_t n_fixed;
  const T* G0;
  double c0;
  int steps, d;
  T* X;
  double* row_loss;
};

// Work item g of implicit_cg_rows: single row g for g < n_single, else the group of four rows from
// n_single + 4 (g - n_single). buf: 16 d values of scratch.
template <typename T, typename P, typename I>
void cg_rows_item(const CgSide<T, P, I>& s, const RowId* rows, int64_t n, int64_t n_single, int64_t g, T* buf) {
  const int d = s.d;
  const P* indptr = s.indptr;
  const T cz = (T)s.c0;
  T* x = buf;
  T* r = x + 4 * d;
  T* p = r + 4 * d;
  T* Ap = p + 4 * d;
  T rs[4];
  bool live[4];
  int64_t t0;
  int nq;
  if (g < n_single) {
    t0 = g;
    nq = 1;
  } else {
    t0 = n_single + 4 * (g - n_single);
    nq = (int)std::min<int64_t>(4, n - t0);
  }
  for (int q = 0; q < 4; ++q) {
    if (q >= nq) {  // padding slot: zero vectors, never updated or stored
      std::fill(x + q * d, x + (q + 1) * d, T(0));
      std::fill(p + q * d, p + (q + 1) * d, T(0));
      live[q] = false;
      continue;
    }
    const T* src = s.X + (size_t)rows[t0 + q] * d;
    std::copy(src, src + d, x + q * d);
  }
  // the item's factor rows stay in cache between its passes when they fit in about half a core's L2: then
  // only the first pass prefetches them
  int64_t item_entries = 0;
  for (int q = 0; q < nq; ++q) item_entries += indptr[rows[t0 + q] + 1] - indptr[rows[t0 + q]];
  const bool in_cache = (size_t)item_entries * d * sizeof(T) <= ((size_t)1 << 20);
  // dense part of the first residual, r_q = G0 x_q (negated below)
  if (nq == 1)
    matvec_rows(s.G0, x, r, d);
  else
    matmul_rows4(x, s.G0, r, d);
  for (int q = 0; q < nq; ++q) {
    const int64_t u = rows[t0 + q];
    T* rq = r + q * d;
    T* pq = p + q * d;
    for (int j = 0; j < d; ++j) rq[j] = -rq[j];
    // r = b - A x = sum_i [c p - (c - c0)(y.x)] y_i - G0 x
    gram_apply(indptr[u], indptr[u + 1], s.indices, s.conf, s.pref, cz, s.Y, x + q * d, rq, d, true);
    rs[q] = cg_start(rq, pq, d);
    live[q] = true;
  }
  for (int it = 0; it < s.steps; ++it) {
    int n_live = 0;
    for (int q = 0; q < nq; ++q) {
      if (live[q] && !(rs[q] > T(1e-30))) live[q] = false;  // converged (or NaN): no division by ~0
      n_live += live[q];
    }
    if (n_live == 0) break;
    if (nq == 1)
      matvec_rows(s.G0, p, Ap, d);
    else
      matmul_rows4(p, s.G0, Ap, d);
    for (int q = 0; q < nq; ++q) {
      if (!live[q]) continue;
      const int64_t u = rows[t0 + q];
      T* pq = p + q * d;
      T* Apq = Ap + q * d;
      gram_apply(indptr[u], indptr[u + 1], s.indices, s.conf, s.pref, cz, s.Y, pq, Apq, d, false, !in_cache);
      live[q] = cg_update(x + q * d, r + q * d, pq, Apq, rs[q], d);
    }
  }
  for (int q = 0; q < nq; ++q) {
    const int64_t u = rows[t0 + q];
    std::copy(x + q * d, x + (q + 1) * d, s.X + (size_t)u * d);
    if (s.row_loss)
      s.row_loss[u] = observed_row_loss(indptr[u], indptr[u + 1], s.indices, s.conf, s.pref, s.c0, s.Y, x + q * d, d);
  }
}

// Work items of implicit_cg_rows: n_single single rows, then the groups of four.
inline int64_t cg_rows_items(int64_t n, int64_t n_single) { return n_single + (n - n_single + 3) / 4; }

// Chunk mem[0..K) of implicit_cg_windowed: its rows advance in lock-step over windows of `window` fixed rows.
template <typename T, typename P, typename I>
void cg_windowed_chunk(const CgSide<T, P, I>& s, const RowId* mem, int K, int64_t window) {
  if (K <= 0) return;
  const int d = s.d;
  const P* indptr = s.indptr;
  const I* indices = s.indices;
  const T cz = (T)s.c0;
  const int64_t n_fixed = s.n_fixed;
  LineVector<T> x((size_t)K * d), r((size_t)K * d), p((size_t)K * d), Ap((size_t)K * d), rs(K);
  std::vector<uint8_t> live(K, 1);
  std::vector<int64_t> cur(K);
  std::vector<double> loss(K, 0.0);
  // one pass: mode 0 acc_k += sparse part of A v_k; 1 acc_k += b_k - that; 2 loss_k += observed loss at v_k
  auto pass = [&](int mode, const T* v, T* acc, bool only_live) {
    for (int k = 0; k < K; ++k) cur[k] = indptr[mem[k]];
    for (int64_t w1 = window;; w1 += window) {
      const int64_t lim = std::min<int64_t>(w1, n_fixed);
      for (int k = 0; k < K; ++k) {
        if (only_live && !live[k]) continue;
        const int64_t s0 = cur[k], end = indptr[mem[k] + 1];
        int64_t e = s0;
        while (e < end && (int64_t)indices[e] < lim) ++e;
        if (e == s0) continue;
        cur[k] = e;
        if (mode == 2)
          loss[k] += observed_row_loss(s0, e, indices, s.conf, s.pref, s.c0, s.Y, v + (size_t)k * d, d);
        else
          gram_apply(s0, e, indices, s.conf, s.pref, cz, s.Y, v + (size_t)k * d, acc + (size_t)k * d, d, mode == 1);
      }
      if (lim == n_fixed) break;
    }
  };
  // the dense products of all the chunk's rows, four at a time (a row that stopped gets one it never uses)
  auto dense = [&](const T* src, T* dst) {
    int k = 0;
    for (; k + 4 <= K; k += 4) matmul_rows4(src + (size_t)k * d, s.G0, dst + (size_t)k * d, d);
    for (; k < K; ++k) matvec_rows(s.G0, src + (size_t)k * d, dst + (size_t)k * d, d);
  };
  for (int k = 0; k < K; ++k)
    std::copy(s.X + (size_t)mem[k] * d, s.X + (size_t)(mem[k] + 1) * d, x.data() + (size_t)k * d);
  dense(x.data(), r.data());
  for (size_t q = 0; q < (size_t)K * d; ++q) r[q] = -r[q];
  pass(1, x.data(), r.data(), false);  // r = b - A x
  for (int k = 0; k < K; ++k) rs[k] = cg_start(r.data() + (size_t)k * d, p.data() + (size_t)k * d, d);
  for (int it = 0; it < s.steps; ++it) {
    int n_live = 0;
    for (int k = 0; k < K; ++k) {
      if (live[k] && !(rs[k] > T(1e-30))) live[k] = 0;  // converged (or NaN)
      n_live += live[k];
    }
    if (n_live == 0) break;
    dense(p.data(), Ap.data());
    pass(0, p.data(), Ap.data(), true);
    for (int k = 0; k < K; ++k) {
      if (live[k])
        live[k] = cg_update(x.data() + (size_t)k * d, r.data() + (size_t)k * d, p.data() + (size_t)k * d,
                            Ap.data() + (size_t)k * d, rs[k], d);
    }
  }
  for (int k = 0; k < K; ++k)
    std::copy(x.data() + (size_t)k * d, x.data() + (size_t)(k + 1) * d, s.X + (size_t)mem[k] * d);
  if (s.row_loss) {
    pass(2, x.data(), nullptr, false);
    for (int k = 0; k < K; ++k) s.row_loss[mem[k]] = loss[k];
  }
}

// steps CG iterations on A_u x_u = b_u per row, warm-started from X[u]. rows[0..n_single) are solved one at a
// time, the rest in groups of four consecutive rows advanced in lock-step (one 4 x d by d x d product reads G0 once
// per group). Work item g is single row g for g < n_single, else group g - n_single, taken from an atomic counter.
// G0 is in T (full symmetric). A row stops (keeps its current x) once r.r <= 1e-30 (or NaN) or p.Ap <= 0.
template <typename T, typename P, typename I>
void implicit_cg_rows(const P* indptr, const I* indices, Strided<T> conf, Strided<T> pref, const T* Y, const T* G0,
                      double c0, int steps, const RowId* rows, int64_t n, int64_t n_single, int n_threads, int d,
                      T* X, double* row_loss) {
  const CgSide<T, P, I> s{indptr, indices, conf, pref, Y, 0, G0, c0, steps, d, X, row_loss};
  const int64_t n_items = cg_rows_items(n, n_single);
  std::atomic<int64_t> next{0};
  parallel_workers(n_items, n_threads, [&](int) {
    LineVector<T> buf((size_t)16 * d);
    for (int64_t g; (g = next.fetch_add(1, std::memory_order_relaxed)) < n_items;)
      cg_rows_item(s, rows, n, n_single, g, buf.data());
  });
}

// The CG of implicit_cg_rows for rows too long for their factors to stay in cache between the passes, windowed:
// rows[chunk_start[c] .. chunk_start[c + 1]) form chunk c (a work item), whose rows advance in lock-step, and
// each CG pass runs over windows of `window` consecutive fixed rows (columns), every live row of the chunk taking
// its entries inside the window before the next window starts. The window's factor rows (window * d values, in
// L2) are then read from memory once per pass for all the chunk's rows that touch them, where a long row on its
// own streams its factors from memory on every pass. The chunk's x, r, p, A p (4 K d values) stay in L2 too.
// Per row the terms are added in increasing column order, as in implicit_cg_rows (the sums differ only in where
// the eight-entry groups of gram_apply start), whatever the chunks or threads.
template <typename T, typename P, typename I>
void implicit_cg_windowed(const P* indptr, const I* indices, Strided<T> conf, Strided<T> pref, const T* Y,
                          int64_t n_fixed, const T* G0, double c0, int steps, const RowId* rows,
                          const int64_t* chunk_start, int64_t n_chunks, int64_t window, int n_threads, int d, T* X,
                          double* row_loss) {
  const CgSide<T, P, I> s{indptr, indices, conf, pref, Y, n_fixed, G0, c0, steps, d, X, row_loss};
  window = std::max<int64_t>(1, window);
  std::atomic<int64_t> next{0};
  parallel_workers(n_chunks, n_threads, [&](int) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;)
      cg_windowed_chunk(s, rows + chunk_start[c], (int)(chunk_start[c + 1] - chunk_start[c]), window);
  });
}

// Both in one job: the windowed chunks (work items 0 .. n_chunks) first, then implicit_cg_rows' items over
// short[0..n_short), from one atomic counter: a thread that finished its chunk takes short rows, so a half-step
// needs no more chunks than its long rows' share of the work (one chunk reads each window of Y once per pass).
template <typename T, typename P, typename I>
void implicit_cg_mixed(const P* indptr, const I* indices, Strided<T> conf, Strided<T> pref, const T* Y,
                       int64_t n_fixed, const T* G0, double c0, int steps, const RowId* long_rows,
                       const int64_t* chunk_start, int64_t n_chunks, int64_t window, const RowId* short_rows,
                       int64_t n_short, int64_t n_single, int n_threads, int d, T* X, double* row_loss) {
  const CgSide<T, P, I> s{indptr, indices, conf, pref, Y, n_fixed, G0, c0, steps, d, X, row_loss};
  window = std::max<int64_t>(1, window);
  const int64_t n_items = n_chunks + (n_short ? cg_rows_items(n_short, n_single) : 0);
  std::atomic<int64_t> next{0};
  parallel_workers(n_items, n_threads, [&](int) {
    LineVector<T> buf((size_t)16 * d);
    for (int64_t g; (g = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
      if (g < n_chunks)
        cg_windowed_chunk(s, long_rows + chunk_start[g], (int)(chunk_start[g + 1] - chunk_start[g]), window);
      else
        cg_rows_item(s, short_rows, n_short, n_single, g - n_chunks, buf.data());
    }
  });
}

}  // namespace mfrec
