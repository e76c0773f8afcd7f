// Explicit-feedback ALS (ridge per row), its squared error and pair predictions; the hybrid model's prior rows.
// Documented in mfrec/kernels/als_explicit.py and mfrec/kernels/hybrid.py.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "linalg.hpp"
#include "pool.hpp"

namespace mfrec {

#if defined(__GNUC__) || defined(__clang__)
#define MFREC_DUAL_BATCHED 1
// The dual systems of the short rows (0 < n_u < k), eight rows at a time: rows of equal length n share a batch and
// each of the eight lanes of a 64-byte double vector carries one row's system through every step, so the n x n
// Gram, its Cholesky factorisation and the two triangular solves are whole-vector operations with no horizontal
// sums, no remainders and eight independent dependency chains (a lone n = 40 system spends most of its time in
// the latency of its pivots). Rows of one length share D (the count scaling depends on n only). Unused lanes of a
// batch's last group carry zeros (their system is I) and are not written. A lane whose pivot falls to the floor
// (n eps max_e G_ee, as cholesky_upper) is marked in failed, its row left unchanged.
template <typename T, typename P, typename I, typename R>
int64_t explicit_dual_batched(const P* indptr, const I* indices, const R* data, int64_t n_rows, const T* other,
                              const T* other_bias, int d, double mu, double reg, bool frequency_weighted,
                              bool biases, T* target, T* target_bias, uint8_t* failed, double bias_reg,
                              int n_threads) {
  typedef double v8d __attribute__((vector_size(64)));
  constexpr int L = 8;
  const int k = biases ? d + 1 : d;
  // the short rows grouped by length, longest first (the heaviest batches start first)
  std::vector<int64_t> count(k + 1, 0);
  for (int64_t u = 0; u < n_rows; ++u) {
    const int64_t n_u = indptr[u + 1] - indptr[u];
    if (n_u > 0 && n_u < k) ++count[n_u];
  }
  std::vector<int64_t> first(k + 1, 0);
  for (int n = k - 1, at = 0; n >= 1; --n) {
    first[n] = at;
    at += count[n];
  }
  std::vector<int64_t> rows(std::accumulate(count.begin(), count.end(), int64_t(0)));
  {
    std::vector<int64_t> fill(first);
    for (int64_t u = 0; u < n_rows; ++u) {
      const int64_t n_u = indptr[u + 1] - indptr[u];
      if (n_u > 0 && n_u < k) rows[fill[n_u]++] = u;
    }
  }
  std::vector<int64_t> batch_at;  // a batch: up to L rows of one length, rows[batch_at[b] ...]
  std::vector<int> batch_n;
  for (int n = k - 1; n >= 1; --n)
    for (int64_t at = first[n]; at < first[n] + count[n]; at += L) {
      batch_at.push_back(at);
      batch_n.push_back(n);
    }
  const int64_t n_batches = (int64_t)batch_at.size();
  std::atomic<int64_t> next{0}, failures{0};
  parallel_workers(n_batches, n_threads, [&](int) {
    std::vector<v8d> M, G, t(k), z(k);
    const LineVector<T> zero_row(d, T(0));  // what the unused lanes read
    for (;;) {
      const int64_t bi = next.fetch_add(1, std::memory_order_relaxed);
      if (bi >= n_batches) break;
      const int n = batch_n[bi];
      const int64_t at = batch_at[bi];
      const int lanes = (int)std::min<int64_t>(L, first[n] + count[n] - at);
      const double scale = frequency_weighted ? (double)n : 1.0;
      const double isd = 1.0 / std::sqrt(reg * scale);  // D^-1/2, the same for every row of length n
      const double isb = 1.0 / std::sqrt((bias_reg >= 0.0 ? bias_reg : reg) * scale);
      M.assign((size_t)k * n, v8d{});  // M[j n + e] = D_j^-1/2 F_ej (k x n), lane l = row l
      std::fill(t.begin(), t.end(), v8d{});
      double* Ms = reinterpret_cast<double*>(M.data());
      double* ts = reinterpret_cast<double*>(t.data());
      int64_t start[L];
      for (int l = 0; l < L; ++l) start[l] = l < lanes ? indptr[rows[at + l]] : -1;
      for (int e = 0; e < n; ++e) {  // entry e of the eight rows, transposed into whole vectors M[j n + e]
        const T* y[L];
        for (int l = 0; l < L; ++l) {
          if (start[l] < 0) {
            y[l] = zero_row.data();
            continue;
          }
          if (e + 4 < n) prefetch_row(other + (size_t)indices[start[l] + e + 4] * d, d);
          const I i = indices[start[l] + e];
          y[l] = other + (size_t)i * d;
          ts[(size_t)e * L + l] = (double)data[start[l] + e] - mu - (biases ? (double)other_bias[i] : 0.0);
          if (biases) Ms[((size_t)d * n + e) * L + l] = isb;
        }
        for (int j = 0; j < d; ++j) {
          v8d v;
          for (int l = 0; l < L; ++l) v[l] = (double)y[l][j];
          M[(size_t)j * n + e] = v * isd;
        }
      }
      // G = M^T M + I (upper triangle, row e at G[e n]) in 4 x 4 blocks of (e, f) accumulated over j in registers
      // (eight loads per sixteen multiply-adds); a diagonal block computes its lower half too, unused
      G.resize((size_t)n * n);
      for (int e0 = 0; e0 < n; e0 += 4) {
        const int eb = std::min(4, n - e0);
        for (int f0 = e0; f0 < n; f0 += 4) {
          const int fb = std::min(4, n - f0);
          v8d acc[4][4] = {};
          if (eb == 4 && fb == 4) {
            for (int j = 0; j < k; ++j) {
              const v8d* Mj = M.data() + (size_t)j * n;
              const v8d a0 = Mj[e0], a1 = Mj[e0 + 1], a2 = Mj[e0 + 2], a3 = Mj[e0 + 3];
              for (int q = 0; q < 4; ++q) {
                const v8d b = Mj[f0 + q];
                acc[0][q] += a0 * b;
                acc[1][q] += a1 * b;
                acc[2][q] += a2 * b;
                acc[3][q] += a3 * b;
              }
            }
          } else {
            for (int j = 0; j < k; ++j) {
              const v8d* Mj = M.data() + (size_t)j * n;
              for (int p = 0; p < eb; ++p)
                for (int q = 0; q < fb; ++q) acc[p][q] += Mj[e0 + p] * Mj[f0 + q];
            }
          }
          for (int p = 0; p < eb; ++p)
            for (int q = 0; q < fb; ++q)
              if (f0 + q >= e0 + p) G[(size_t)(e0 + p) * n + f0 + q] = acc[p][q];
        }
      }
      for (int e = 0; e < n; ++e) G[(size_t)e * n + e] += 1.0;
      // G = U^T U, right-looking, every lane at once
      v8d top = {};
      for (int e = 0; e < n; ++e) top = G[(size_t)e * n + e] > top ? G[(size_t)e * n + e] : top;
      const v8d floor = top * ((double)n * std::numeric_limits<double>::epsilon());
      const v8d one = v8d{} + 1.0;
      decltype(floor > one) bad = {};  // the lanes' failure flags, all clear
      for (int c = 0; c < n; ++c) {
        v8d* Uc = G.data() + (size_t)c * n;
        v8d s = Uc[c];
        const auto ok = s > floor;  // false on NaN too
        bad = bad | ~ok;
        s = ok ? s : one;  // a failed lane carries on harmlessly; its result is not written
        v8d ucc;
        for (int q = 0; q < L; ++q) ucc[q] = std::sqrt(s[q]);
        const v8d inv = one / ucc;
        Uc[c] = ucc;
        for (int j = c + 1; j < n; ++j) Uc[j] *= inv;
        for (int i = c + 1; i < n; ++i) {
          const v8d a = Uc[i];
          v8d* Gi = G.data() + (size_t)i * n;
          for (int j = i; j < n; ++j) Gi[j] -= a * Uc[j];
        }
      }
      for (int i = 0; i < n; ++i) {  // U^T w = t
        const v8d* Ui = G.data() + (size_t)i * n;
        const v8d wi = t[i] / Ui[i];
        t[i] = wi;
        for (int j = i + 1; j < n; ++j) t[j] -= wi * Ui[j];
      }
      for (int i = n - 1; i >= 0; --i) {  // U w' = w
        const v8d* Ui = G.data() + (size_t)i * n;
        v8d acc = t[i];
        for (int j = i + 1; j < n; ++j) acc -= Ui[j] * t[j];
        t[i] = acc / Ui[i];
      }
      for (int j = 0; j < k; ++j) {  // z_j = D_j^-1/2 (M w)_j
        const v8d* Mj = M.data() + (size_t)j * n;
        v8d acc = {};
        for (int e = 0; e < n; ++e) acc += Mj[e] * t[e];
        z[j] = acc * (j < d ? isd : isb);
      }
      for (int l = 0; l < lanes; ++l) {
        const int64_t u = rows[at + l];
        if (bad[l]) {
          failed[u] = 1;
          failures.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        for (int j = 0; j < d; ++j) target[(size_t)u * d + j] = (T)z[j][l];
        if (biases) target_bias[u] = (T)z[d][l];
      }
    }
  });
  return failures.load();
}
#endif

// z_u = (F_u^T F_u + D_u)^-1 F_u^T t_u per row, F_u rows f_i = [y_i, 1] (biases) or y_i, t_ui = r_ui - mu (- b_i),
// D_u = diag(lambda_u I_d, lambda_bu), lambda_u = reg (x max(n_u, 1) when frequency weighted). Double precision
// throughout. A row whose system is numerically singular (pivot floor) is marked in failed and left unchanged.
// A row with fewer ratings than unknowns (0 < n_u < k) solves the same problem in its dual form, an n_u x n_u
// system: z_u = D^-1 F^T w with (F D^-1 F^T + I) w = t (multiply out (F^T F + D) D^-1 F^T w = F^T (F D^-1 F^T + I) w
// = F^T t), about half the work at n_u = 40, k = 65, and better conditioned (its eigenvalues are >= 1), eight rows
// at a time (explicit_dual_batched, GCC and Clang); other compilers solve those rows in the primal form below.
template <typename T, typename P, typename I, typename R>
int64_t explicit_ridge_rows(const P* indptr, const I* indices, const R* data, int64_t n_rows, const T* other,
                            const T* other_bias, int d, double mu, double reg, bool frequency_weighted, bool biases,
                            T* target, T* target_bias, uint8_t* failed, double bias_reg, int n_threads) {
  const int k = biases ? d + 1 : d;
  std::atomic<int64_t> failures{0};
#ifdef MFREC_DUAL_BATCHED
  const bool batched = true;
  failures += explicit_dual_batched(indptr, indices, data, n_rows, other, other_bias, d, mu, reg, frequency_weighted,
                                    biases, target, target_bias, failed, bias_reg, n_threads);
#else
  const bool batched = false;
#endif
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 1024));
  std::atomic<int64_t> next{0};
  const int ldf = gram_ld<double>(k);  // gathered rows padded with zeros to whole register tiles
  parallel_workers(n_chunks, n_threads, [&](int) {
    LineVector<double> A((size_t)k * ldf), b(k), F;  // A's rows padded like F's
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      for (int64_t u = c * n_rows / n_chunks; u < (c + 1) * n_rows / n_chunks; ++u) {
        const int64_t start = indptr[u], n_u = indptr[u + 1] - start;
        if (n_u > 0 && n_u < k && batched) continue;  // solved above, in their dual form
        const double scale = frequency_weighted ? (double)std::max<int64_t>(n_u, 1) : 1.0;
        std::fill(b.begin(), b.end(), 0.0);
        if (F.size() < (size_t)n_u * ldf) F.assign((size_t)n_u * ldf, 0.0);  // padding columns stay zero
        for (int64_t e = 0; e < n_u; ++e) {  // gather F_u (rows f_i = [y_i, 1]) and b = F_u^T t_u
          if (e + 8 < n_u) prefetch_row(other + (size_t)indices[start + e + 8] * d, d);
          const I i = indices[start + e];
          const T* yi = other + (size_t)i * d;
          double* f = F.data() + (size_t)e * ldf;
          for (int j = 0; j < d; ++j) f[j] = (double)yi[j];
          double t = (double)data[start + e] - mu;  // t_ui = r_ui - mu (- b_i)
          if (biases) {
            f[d] = 1.0;
            t -= (double)other_bias[i];
          }
          for (int a = 0; a < k; ++a) b[a] += f[a] * t;
        }
        gram_upper<double>(F.data(), nullptr, (int)n_u, k, ldf, A.data(), ldf);  // A = F_u^T F_u (upper; no zeroing)
        for (int a = 0; a < d; ++a) A[(size_t)a * ldf + a] += reg * scale;
        if (biases) A[(size_t)d * ldf + d] += (bias_reg >= 0.0 ? bias_reg : reg) * scale;
        if (cholesky_upper(A.data(), k, ldf)) {
          cholesky_upper_solve(A.data(), b.data(), k, ldf);
          for (int j = 0; j < d; ++j) target[(size_t)u * d + j] = (T)b[j];
          if (biases) target_bias[u] = (T)b[d];
        } else {
          failed[u] = 1;
          failures.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  });
  return failures.load();
}

// sum over stored (u, i) of (r_ui - mu - b_u - b_i - x_u . y_i)^2, in double, deterministic.
template <typename T, typename P, typename I, typename R>
double explicit_sse(const P* indptr, const I* indices, const R* data, int64_t n_rows, const T* X, const T* bu,
                    const T* Y, const T* bi, int d, double mu, bool biases, int n_threads) {
  return chunked_row_sum(n_rows, n_threads, [&](int64_t u) {
    double s = 0.0;
    const T* xr = X + (size_t)u * d;
    for (int64_t e = indptr[u]; e < indptr[u + 1]; ++e) {
      const I i = indices[e];
      const T* yr = Y + (size_t)i * d;
      T dt = 0;
      for (int j = 0; j < d; ++j) dt += xr[j] * yr[j];
      double pred = mu + (double)dt;
      if (biases) pred += (double)bu[u] + (double)bi[i];
      const double err = (double)data[e] - pred;
      s += err * err;
    }
    return s;
  });
}

// out[n] = mu + b_u + b_i + x_u . y_i for the pairs; index -1 = unknown (contributes neither factors nor bias).
template <typename T, typename U>
void predict_pairs(const U* user_idx, const U* item_idx, int64_t n, const T* X, const T* bu, const T* Y, const T* bi,
                   int d, double mu, bool biases, double* out, int n_threads) {
  parallel_rows(n, n_threads, [&](int64_t t) {
    const int64_t u = user_idx[t], i = item_idx[t];
    double pred = mu;
    if (biases) {
      if (u >= 0) pred += (double)bu[u];
      if (i >= 0) pred += (double)bi[i];
    }
    if (u >= 0 && i >= 0) {
      const T* xr = X + (size_t)u * d;
      const T* yr = Y + (size_t)i * d;
      T s = 0;
      for (int j = 0; j < d; ++j) s += xr[j] * yr[j];
      pred += (double)s;
    }
    out[t] = pred;
  });
}

// HybridALS rows: x_u = (G0 + sum (w - c0) y y^T)^-1 (sum w t y + reg m_u); empty rows get x_u = m_u. prior may
// alias X (each row's prior is read before the row is written). Double precision.
template <typename P, typename I>
void prior_ridge_rows(const P* indptr, const I* indices, const double* weight, const double* target, const double* Y,
                      const double* G0, double c0, double reg, const double* prior, double* X, uint8_t* failed,
                      int64_t n_rows, int d, int n_threads) {
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 256));
  std::atomic<int64_t> next{0};
  parallel_workers(n_chunks, n_threads, [&](int) {
    LineVector<double> A((size_t)d * d), b(d);
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      for (int64_t u = c * n_rows / n_chunks; u < (c + 1) * n_rows / n_chunks; ++u) {
        const int64_t start = indptr[u], end = indptr[u + 1];
        double* xu = X + (size_t)u * d;
        const double* mu_ = prior + (size_t)u * d;
        if (end == start) {  // cold row: no term of the loss, free part 0 -> x_u = m_u
          if (xu != mu_) std::copy(mu_, mu_ + d, xu);
          continue;
        }
        for (int j = 0; j < d; ++j) {
          b[j] = reg * mu_[j];  // b = reg m_u + ...
          for (int k = j; k < d; ++k) A[(size_t)j * d + k] = G0[(size_t)j * d + k];  // A = c0 Y^T Y + reg I + ...
        }
        for (int64_t e = start; e < end; ++e) {
          const double* yi = Y + (size_t)indices[e] * d;
          const double w = weight[e] - c0, v = weight[e] * target[e];
          for (int j = 0; j < d; ++j) {
            const double a = w * yi[j];
            double* Aj = A.data() + (size_t)j * d;
            for (int k = j; k < d; ++k) Aj[k] += a * yi[k];  // (w_ui - c0) y_i y_i^T
            b[j] += v * yi[j];                               // w_ui t_ui y_i
          }
        }
        if (cholesky_upper(A.data(), d, d)) {
          cholesky_upper_solve(A.data(), b.data(), d, d);
          std::copy(b.begin(), b.end(), xu);
        } else {
          failed[u] = 1;
        }
      }
    }
  });
}

}  // namespace mfrec
