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

// Sparse Gram term of one row, eight entries per sweep (y_e = Y[indices[e]], w_e = conf[e] - c0):
//   with_b false: out += sum_e w_e (y_e . x) y_e                 (the sparse part of A_u x)
//   with_b true:  out += sum_e (conf_e pref_e - w_e (y_e . x)) y_e  (b_u minus that part)
// Eight independent dot products in flight hide their latency, out is read and written once per eight entries,
// and the factor rows of the next eight entries are prefetched (their misses overlap this sweep's arithmetic).
template <typename T, typename I>
inline void gram_apply(int64_t start, int64_t end, const I* __restrict indices, const T* __restrict conf,
                       Strided<T> pref, T c0, const T* __restrict Y, const T* __restrict x,
                       T* __restrict out, int d, bool with_b) {
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

// sum_{e in [start, end)} [c_e (p_e - s_e)^2 - c0 s_e^2], s_e = x . Y[indices[e]] (dot in T, terms in double):
// the observed part of one row's loss.
template <typename T, typename I>
inline double observed_row_loss(int64_t start, int64_t end, const I* __restrict indices, const T* __restrict conf,
                                Strided<T> pref, double c0, const T* __restrict Y, const T* __restrict x,
                                int d) {
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

//: entries per gathered chunk of a row in implicit_cholesky_rows: 128 x 128 floats = 64 KiB at d = 128 (in L2)
constexpr int GRAM_CHUNK = 128;

// Exact per-row solves for rows[0..n): A_u = G0 + sum (c - c0) y y^T accumulated in T (upper triangle) by
// gram_upper over gathered chunks of GRAM_CHUNK factor rows, factorised and solved in T; a row not positive
// definite in T (float32) is refactorised in double before it is reported in failed. G0 is double (d x d, upper
// triangle read). row_loss: n_rows doubles or null.
template <typename T, typename P, typename I>
void implicit_cholesky_rows(const P* indptr, const I* indices, const T* conf, Strided<T> pref, const T* Y,
                            const double* G0, double c0, const int64_t* rows, int64_t n, int n_threads, int d, T* X,
                            uint8_t* failed, double* row_loss) {
  std::atomic<int64_t> next{0};
  const T cz = (T)c0;
  const int ldf = gram_ld<T>(d);
  parallel_workers(n, n_threads, [&](int) {
    const int ld64 = gram_ld<double>(d);
    std::vector<T> Af((size_t)d * ldf), A((size_t)d * ldf), bf(d), b(d), Fc((size_t)GRAM_CHUNK * ldf, T(0)),
        wc(GRAM_CHUNK);
    std::vector<double> A64((size_t)d * ld64), b64(d);
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

// steps CG iterations on A_u x_u = b_u per row, warm-started from X[u]. rows[0..n_single) are solved one at a
// time, the rest in groups of four consecutive rows advanced in lock-step (one 4 x d by d x d product reads G0 once
// per group). Work item g is single row g for g < n_single, else group g - n_single, taken from an atomic counter.
// G0 is in T (full symmetric). A row stops (keeps its current x) once r.r <= 1e-30 (or NaN) or p.Ap <= 0.
template <typename T, typename P, typename I>
void implicit_cg_rows(const P* indptr, const I* indices, const T* conf, Strided<T> pref, const T* Y, const T* G0,
                      double c0, int steps, const int64_t* rows, int64_t n, int64_t n_single, int n_threads, int d,
                      T* X, double* row_loss) {
  const int64_t n_items = n_single + (n - n_single + 3) / 4;
  const T cz = (T)c0;
  std::atomic<int64_t> next{0};
  parallel_workers(n_items, n_threads, [&](int) {
    std::vector<T> buf((size_t)16 * d);
    T* x = buf.data();
    T* r = x + 4 * d;
    T* p = r + 4 * d;
    T* Ap = p + 4 * d;
    T rs[4];
    bool live[4];
    for (;;) {
      const int64_t g = next.fetch_add(1, std::memory_order_relaxed);
      if (g >= n_items) break;
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
        const T* src = X + (size_t)rows[t0 + q] * d;
        std::copy(src, src + d, x + q * d);
      }
      // dense part of the first residual, r_q = G0 x_q (negated below)
      if (nq == 1)
        matvec_rows(G0, x, r, d);
      else
        matmul_rows4(x, G0, r, d);
      for (int q = 0; q < nq; ++q) {
        const int64_t u = rows[t0 + q];
        T* rq = r + q * d;
        T* pq = p + q * d;
        for (int j = 0; j < d; ++j) rq[j] = -rq[j];
        // r = b - A x = sum_i [c p - (c - c0)(y.x)] y_i - G0 x
        gram_apply(indptr[u], indptr[u + 1], indices, conf, pref, cz, Y, x + q * d, rq, d, true);
        T s = 0;
        for (int j = 0; j < d; ++j) {
          pq[j] = rq[j];
          s += rq[j] * rq[j];
        }
        rs[q] = s;
        live[q] = true;
      }
      for (int it = 0; it < steps; ++it) {
        int n_live = 0;
        for (int q = 0; q < nq; ++q) {
          if (live[q] && !(rs[q] > T(1e-30))) live[q] = false;  // converged (or NaN): no division by ~0
          n_live += live[q];
        }
        if (n_live == 0) break;
        if (nq == 1)
          matvec_rows(G0, p, Ap, d);
        else
          matmul_rows4(p, G0, Ap, d);
        for (int q = 0; q < nq; ++q) {
          if (!live[q]) continue;
          const int64_t u = rows[t0 + q];
          T* pq = p + q * d;
          T* Apq = Ap + q * d;
          gram_apply(indptr[u], indptr[u + 1], indices, conf, pref, cz, Y, pq, Apq, d, false);
          const T pAp = dot(pq, Apq, d);
          if (!(pAp > T(0))) {
            live[q] = false;
            continue;
          }
          const T a = rs[q] / pAp;
          T* xq = x + q * d;
          T* rq = r + q * d;
          T rs_new = 0;
          for (int j = 0; j < d; ++j) {
            xq[j] += a * pq[j];
            rq[j] -= a * Apq[j];
            rs_new += rq[j] * rq[j];
          }
          const T beta = rs_new / rs[q];
          for (int j = 0; j < d; ++j) pq[j] = rq[j] + beta * pq[j];
          rs[q] = rs_new;
        }
      }
      for (int q = 0; q < nq; ++q) {
        const int64_t u = rows[t0 + q];
        std::copy(x + q * d, x + (q + 1) * d, X + (size_t)u * d);
        if (row_loss) row_loss[u] = observed_row_loss(indptr[u], indptr[u + 1], indices, conf, pref, c0, Y, x + q * d, d);
      }
    }
  });
}

}  // namespace mfrec
