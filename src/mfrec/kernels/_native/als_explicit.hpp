// Explicit-feedback ALS (ridge per row), its squared error and pair predictions; the hybrid model's prior rows.
// Documented in mfrec/kernels/als_explicit.py and mfrec/kernels/hybrid.py.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "linalg.hpp"
#include "pool.hpp"

namespace mfrec {

// z_u = (F_u^T F_u + D_u)^-1 F_u^T t_u per row, F_u rows f_i = [y_i, 1] (biases) or y_i, t_ui = r_ui - mu (- b_i),
// D_u = diag(lambda_u I_d, lambda_bu), lambda_u = reg (x max(n_u, 1) when frequency weighted). Double precision
// throughout. A row whose system is numerically singular (pivot floor) is marked in failed and left unchanged.
// A row with fewer ratings than unknowns (0 < n_u < k) solves the same problem in its dual form, an n_u x n_u
// system: z_u = D^-1 F^T w with (F D^-1 F^T + I) w = t (multiply out (F^T F + D) D^-1 F^T w = F^T (F D^-1 F^T + I) w
// = F^T t), about half the work at n_u = 40, k = 65, and better conditioned (its eigenvalues are >= 1).
template <typename T, typename P, typename I, typename R>
int64_t explicit_ridge_rows(const P* indptr, const I* indices, const R* data, int64_t n_rows, const T* other,
                            const T* other_bias, int d, double mu, double reg, bool frequency_weighted, bool biases,
                            T* target, T* target_bias, uint8_t* failed, double bias_reg, int n_threads) {
  const int k = biases ? d + 1 : d;
  std::atomic<int64_t> failures{0};
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 1024));
  std::atomic<int64_t> next{0};
  const int ldf = (k + 15) / 16 * 16;  // gathered rows padded with zeros to whole 16-double tiles
  parallel_workers(n_chunks, n_threads, [&](int) {
    std::vector<double> A((size_t)k * ldf), b(k), F, M, G, t, isd(k);  // A's rows padded like F's
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      for (int64_t u = c * n_rows / n_chunks; u < (c + 1) * n_rows / n_chunks; ++u) {
        const int64_t start = indptr[u], n_u = indptr[u + 1] - start;
        const double scale = frequency_weighted ? (double)std::max<int64_t>(n_u, 1) : 1.0;
        if (n_u > 0 && n_u < k) {  // the dual n_u x n_u system
          const int n = (int)n_u, ldn = (n + 15) / 16 * 16;
          for (int j = 0; j < d; ++j) isd[j] = 1.0 / std::sqrt(reg * scale);  // D^-1/2
          if (biases) isd[d] = 1.0 / std::sqrt((bias_reg >= 0.0 ? bias_reg : reg) * scale);
          if (M.size() < (size_t)k * ldn) M.resize((size_t)k * ldn);
          if (G.size() < (size_t)n * ldn) G.resize((size_t)n * ldn);
          if (t.size() < (size_t)ldn) t.resize(ldn);
          for (int e = 0; e < n; ++e) {
            if (e + 8 < n) prefetch_row(other + (size_t)indices[start + e + 8] * d, d);
            const I i = indices[start + e];
            const T* yi = other + (size_t)i * d;
            for (int j = 0; j < d; ++j) M[(size_t)j * ldn + e] = (double)yi[j] * isd[j];
            t[e] = (double)data[start + e] - mu;
            if (biases) {
              M[(size_t)d * ldn + e] = isd[d];
              t[e] -= (double)other_bias[i];
            }
          }
          for (int j = 0; j < k; ++j) std::fill(M.begin() + (size_t)j * ldn + n, M.begin() + (size_t)(j + 1) * ldn, 0.0);
          gram_upper_set(M.data(), k, n, ldn, G.data(), ldn);  // G = M^T M = F D^-1 F^T
          for (int e = 0; e < n; ++e) G[(size_t)e * ldn + e] += 1.0;
          if (cholesky_upper(G.data(), n, ldn)) {
            cholesky_upper_solve(G.data(), t.data(), n, ldn);  // w
            for (int j = 0; j < k; ++j) {  // z_j = D_j^-1/2 (M w)_j
              const double zj = isd[j] * dot(M.data() + (size_t)j * ldn, t.data(), n);
              if (j < d) target[(size_t)u * d + j] = (T)zj;
              else target_bias[u] = (T)zj;
            }
          } else {
            failed[u] = 1;
            failures.fetch_add(1, std::memory_order_relaxed);
          }
          continue;
        }
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
        gram_upper_set(F.data(), (int)n_u, k, ldf, A.data(), ldf);  // A = F_u^T F_u (upper triangle; no zeroing)
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
    std::vector<double> A((size_t)d * d), b(d);
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
