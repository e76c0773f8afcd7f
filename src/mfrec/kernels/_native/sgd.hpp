// SGD epochs for biased matrix factorization and SVD++ (sequential: a seed reproduces the factors bit for bit).
// Documented in mfrec/kernels/sgd.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace mfrec {

// The visiting orders (order, positions) are int32 or int64 (O): int32 up to 2^31 ratings, half the memory.
template <typename T, typename I, typename O>
double sgd_epoch(const I* users, const I* items, const float* ratings, const O* order, int64_t n, T* X, T* bu,
                 T* Y, T* bi, int d, double mu, double lr, double reg, double bias_reg, bool biases,
                 const double* user_scale, const double* item_scale) {
  // user_scale[u], item_scale[i]: the multiplier of lambda and lambda_b in that row's per-rating penalty
  // (1 for the classic count-scaled objective, 1/n for the uniform one).
  double sse = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = order[t];
    const int64_t u = users[p], i = items[p];
    T* __restrict xr = X + (size_t)u * d;
    T* __restrict yr = Y + (size_t)i * d;
    T dt = 0;  // in the factor dtype (reassociated: vector partial sums)
    for (int j = 0; j < d; ++j) dt += xr[j] * yr[j];
    double pred = mu + (double)dt;  // r_hat = mu + b_u + b_i + x_u . y_i
    if (biases) pred += (double)bu[u] + (double)bi[i];
    const double e = (double)ratings[p] - pred;  // e_ui = r_ui - r_hat_ui
    sse += e * e;
    const double su = user_scale[u], si = item_scale[i];
    if (biases) {
      bu[u] = (T)((double)bu[u] + lr * (e - bias_reg * su * (double)bu[u]));
      bi[i] = (T)((double)bi[i] + lr * (e - bias_reg * si * (double)bi[i]));
    }
    // x_u <- x_u + gamma (e y_i - lambda s_u x_u), y_i <- y_i + gamma (e x_u - lambda s_i y_i) with the old x_u,
    // as x (1 - gamma lambda s_u) + (gamma e) y: two multiply-adds per entry in the factor dtype
    const T ge = (T)(lr * e), du = (T)(1.0 - lr * reg * su), di = (T)(1.0 - lr * reg * si);
    for (int j = 0; j < d; ++j) {
      const T xo = xr[j], yo = yr[j];
      xr[j] = du * xo + ge * yo;
      yr[j] = di * yo + ge * xo;
    }
  }
  return sse;
}

template <typename T, typename P, typename I, typename O>
double svdpp_epoch(const P* indptr, const I* indices, const float* ratings, const O* positions,
                   const int64_t* user_order, int64_t n_users, T* Pf, T* bu, T* Y, T* bi, T* Z, int d, double mu,
                   double lr, double reg, double bias_reg, bool biases, bool implicit, const double* user_scale,
                   const double* item_scale, double* c, double* g, bool z_reg_per_rating) {
  double sse = 0.0;
  for (int64_t t = 0; t < n_users; ++t) {
    const int64_t u = user_order[t];
    const int64_t start = indptr[u], end = indptr[u + 1];
    if (end == start) continue;
    const double s = 1.0 / std::sqrt((double)(end - start));  // s_u = |N(u)|^-1/2
    for (int k = 0; k < d; ++k) c[k] = g[k] = 0.0;
    if (implicit) {
      for (int64_t q = start; q < end; ++q) {  // c_u = s_u sum_j z_j
        const T* zr = Z + (size_t)indices[q] * d;
        for (int k = 0; k < d; ++k) c[k] += (double)zr[k];
      }
      for (int k = 0; k < d; ++k) c[k] *= s;
    }
    T* pr = Pf + (size_t)u * d;
    const double su = user_scale[u], ru = reg * su;
    for (int64_t q = start; q < end; ++q) {
      const int64_t p = positions[q];
      const int64_t i = indices[p];
      T* yr = Y + (size_t)i * d;
      double dt = 0.0;
      for (int k = 0; k < d; ++k) dt += ((double)pr[k] + c[k]) * (double)yr[k];
      double pred = mu + dt;  // r_hat = mu + b_u + b_i + y_i . (p_u + c_u)
      if (biases) pred += (double)bu[u] + (double)bi[i];
      const double e = (double)ratings[p] - pred;
      sse += e * e;
      const double si = item_scale[i], ri = reg * si;
      if (biases) {
        bu[u] = (T)((double)bu[u] + lr * (e - bias_reg * su * (double)bu[u]));
        bi[i] = (T)((double)bi[i] + lr * (e - bias_reg * si * (double)bi[i]));
      }
      for (int k = 0; k < d; ++k) {
        const double po = pr[k], yo = yr[k];
        g[k] += e * yo;                                          // sum_i e_ui y_i (old y_i)
        pr[k] = (T)(po + lr * (e * yo - ru * po));               // p_u <- p_u + gamma (e y_i - lambda s_u p_u)
        yr[k] = (T)(yo + lr * (e * (po + c[k]) - ri * yo));      // y_i <- y_i + gamma (e q_u - lambda s_i y_i)
      }
    }
    if (implicit) {
      for (int64_t q = start; q < end; ++q) {  // z_j <- z_j + gamma (s_u sum_i e y_i - lambda z_j)
        T* zr = Z + (size_t)indices[q] * d;
        // z_j is stepped once per user of j; its penalty once (uniform) or once per rating of u (the per-rating
        // objective, where every rating of u penalises all of N(u): Surprise's and Koren's SVD++)
        const double rz = reg * item_scale[indices[q]] * (z_reg_per_rating ? (double)(end - start) : 1.0);
        for (int k = 0; k < d; ++k) zr[k] = (T)((double)zr[k] + lr * (s * g[k] - rz * (double)zr[k]));
      }
    }
  }
  return sse;
}

// out = perm stably grouped by row: row u's entries (row_of[e] == u) in the order they appear in perm, at
// out[indptr[u] .. indptr[u + 1]). The counting sort that equals perm[argsort(row_of[perm], stable)] without its
// three nnz-long temporaries (SVD++'s per-user visiting order). Returns false, with out partly written, when an
// entry of perm is outside [0, n), its row outside [0, n_rows), or a row receives more entries than indptr gives it.
template <typename O>
bool group_by_row(const O* perm, int64_t n, const int32_t* row_of, const int64_t* indptr, int64_t n_rows, O* out) {
  std::vector<int64_t> at(indptr, indptr + n_rows);
  for (int64_t k = 0; k < n; ++k) {
    const O e = perm[k];
    if (e < 0 || (int64_t)e >= n) return false;
    const int32_t u = row_of[e];
    if (u < 0 || u >= n_rows || at[u] >= indptr[u + 1]) return false;
    out[at[u]++] = e;
  }
  return true;
}

}  // namespace mfrec
