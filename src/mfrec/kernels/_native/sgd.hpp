// SGD epochs for biased matrix factorization and SVD++ (sequential: a seed reproduces the factors bit for bit).
// Documented in mfrec/kernels/sgd.py.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace mfrec {

// One SGD step on rating r of (u, i); returns its squared error (measured before the update). user_scale[u],
// item_scale[i]: the multiplier of lambda and lambda_b in that row's per-rating penalty (null: 1, the classic
// count-scaled objective, 1/n for the uniform one).
template <typename T>
inline double sgd_step(int64_t u, int64_t i, double r, T* X, T* bu, T* Y, T* bi, int d, double mu, double lr,
                       double reg, double bias_reg, bool biases, const double* user_scale, const double* item_scale) {
  T* __restrict xr = X + (size_t)u * d;
  T* __restrict yr = Y + (size_t)i * d;
  T dt = 0;  // in the factor dtype (reassociated: vector partial sums)
  for (int j = 0; j < d; ++j) dt += xr[j] * yr[j];
  double pred = mu + (double)dt;  // r_hat = mu + b_u + b_i + x_u . y_i
  if (biases) pred += (double)bu[u] + (double)bi[i];
  const double e = r - pred;  // e_ui = r_ui - r_hat_ui
  const double su = user_scale ? user_scale[u] : 1.0, si = item_scale ? item_scale[i] : 1.0;
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
  return e * e;
}

// The visiting orders (order, positions) are int32 or int64 (O): int32 up to 2^31 ratings, half the memory.
template <typename T, typename I, typename O>
double sgd_epoch(const I* users, const I* items, const float* ratings, const O* order, int64_t n, T* X, T* bu,
                 T* Y, T* bi, int d, double mu, double lr, double reg, double bias_reg, bool biases,
                 const double* user_scale, const double* item_scale) {
  double sse = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = order[t];
    sse += sgd_step(users[p], items[p], (double)ratings[p], X, bu, Y, bi, d, mu, lr, reg, bias_reg, biases,
                    user_scale, item_scale);
  }
  return sse;
}

// A bijection of [0, n) drawn from four 32-bit keys, computed position by position with no array: a four-round
// Feistel network on k = ceil(log2 n) bits (halves of floor(k / 2) and ceil(k / 2) bits, swapping sides each
// round, so every k works) and cycle walking (a value >= n is enciphered again until it falls below n: fewer than
// two rounds of the network per position on average, since 2^k < 2 n).
struct Shuffle {
  int64_t n;
  int a, b;  // the sides' widths: a + b = k
  uint32_t key[4];

  Shuffle(int64_t n_, const uint32_t* keys) : n(n_) {
    int k = 1;
    while (((int64_t)1 << k) < n) ++k;
    a = k / 2;
    b = k - a;
    for (int r = 0; r < 4; ++r) key[r] = keys[r];
  }
  static uint32_t mix(uint64_t x, uint32_t key) {  // the round function: a multiply-xorshift of x and the key
    uint64_t h = (x ^ key) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
  }
  int64_t encipher(int64_t x) const {
    uint64_t left = (uint64_t)x >> b, right = (uint64_t)x & ((1ull << b) - 1);
    int wl = a, wr = b;  // widths of left and right
    for (int r = 0; r < 4; ++r) {  // (L, R) -> (R, L ^ F(R)): the new right takes L's width
      const uint64_t next = left ^ (mix(right, key[r]) & ((1ull << wl) - 1));
      left = right;
      right = next;
      std::swap(wl, wr);
    }
    return (int64_t)((left << wr) | right);
  }
  int64_t operator()(int64_t t) const {
    int64_t x = encipher(t);
    while (x >= n) x = encipher(x);
    return x;
  }
};

// An SGD epoch over a CSR's ratings in the order Shuffle(n, keys) gives, the row of each entry found from the
// pointers: row_at[p >> 4] is the row of entry p rounded down to a multiple of 16 (a table of n / 16 rows), and
// the rows after it are passed while they end at or before p. No per-entry users or order arrays: 8 bytes per
// rating less than sgd_epoch's inputs.
template <typename T, typename I>
double sgd_epoch_shuffled(const int64_t* indptr, const int32_t* row_at, const I* items, const float* ratings,
                          int64_t n, const uint32_t* keys, T* X, T* bu, T* Y, T* bi, int d, double mu, double lr,
                          double reg, double bias_reg, bool biases, const double* user_scale,
                          const double* item_scale) {
  const Shuffle order(n, keys);
  double sse = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = order(t);
    int64_t u = row_at[p >> 4];
    while (indptr[u + 1] <= p) ++u;
    sse += sgd_step(u, (int64_t)items[p], (double)ratings[p], X, bu, Y, bi, d, mu, lr, reg, bias_reg, biases,
                    user_scale, item_scale);
  }
  return sse;
}

// One SVD++ epoch, user by user: user_at(t) is the t-th user visited, entries_of(u, start, end) a callable giving
// the q-th entry (start <= q < end) of u's range in visiting order.
template <typename T, typename P, typename I, typename UserAt, typename EntriesOf>
double svdpp_epoch_with(const P* indptr, const I* indices, const float* ratings, UserAt user_at, EntriesOf entries_of,
                        int64_t n_users, T* Pf, T* bu, T* Y, T* bi, T* Z, int d, double mu, double lr, double reg,
                        double bias_reg, bool biases, bool implicit, const double* user_scale,
                        const double* item_scale, double* c, double* g, bool z_reg_per_rating) {
  double sse = 0.0;
  for (int64_t t = 0; t < n_users; ++t) {
    const int64_t u = user_at(t);
    const int64_t start = indptr[u], end = indptr[u + 1];
    if (end == start) continue;
    const auto entry = entries_of(u, start, end);
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
    const double su = user_scale ? user_scale[u] : 1.0, ru = reg * su;
    for (int64_t q = start; q < end; ++q) {
      const int64_t p = entry(q);
      const int64_t i = indices[p];
      T* yr = Y + (size_t)i * d;
      double dt = 0.0;
      for (int k = 0; k < d; ++k) dt += ((double)pr[k] + c[k]) * (double)yr[k];
      double pred = mu + dt;  // r_hat = mu + b_u + b_i + y_i . (p_u + c_u)
      if (biases) pred += (double)bu[u] + (double)bi[i];
      const double e = (double)ratings[p] - pred;
      sse += e * e;
      const double si = item_scale ? item_scale[i] : 1.0, ri = reg * si;
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
        const double rz = reg * (item_scale ? item_scale[indices[q]] : 1.0) *
                          (z_reg_per_rating ? (double)(end - start) : 1.0);
        for (int k = 0; k < d; ++k) zr[k] = (T)((double)zr[k] + lr * (s * g[k] - rz * (double)zr[k]));
      }
    }
  }
  return sse;
}

template <typename T, typename P, typename I, typename O>
double svdpp_epoch(const P* indptr, const I* indices, const float* ratings, const O* positions,
                   const int64_t* user_order, int64_t n_users, T* Pf, T* bu, T* Y, T* bi, T* Z, int d, double mu,
                   double lr, double reg, double bias_reg, bool biases, bool implicit, const double* user_scale,
                   const double* item_scale, double* c, double* g, bool z_reg_per_rating) {
  return svdpp_epoch_with(
      indptr, indices, ratings, [&](int64_t t) { return user_order[t]; },
      [&](int64_t, int64_t, int64_t) { return [&](int64_t q) { return (int64_t)positions[q]; }; }, n_users, Pf, bu, Y,
      bi, Z, d, mu, lr, reg, bias_reg, biases, implicit, user_scale, item_scale, c, g, z_reg_per_rating);
}

// The keys of user u's own order of its entries in svdpp_epoch_shuffled: the epoch's entry keys, each mixed with u.
inline void user_keys(const uint32_t* keys, int64_t u, uint32_t* out) {
  for (int r = 0; r < 4; ++r) out[r] = Shuffle::mix((uint64_t)u + ((uint64_t)r << 40), keys[r]);
}

// svdpp_epoch with the users in the order Shuffle(n_users, keys[0..4)) gives and each user's entries in the order
// Shuffle(n_u, user_keys(keys + 4, u)) gives: no per-rating order arrays.
template <typename T, typename P, typename I>
double svdpp_epoch_shuffled(const P* indptr, const I* indices, const float* ratings, const uint32_t* keys,
                            int64_t n_users, T* Pf, T* bu, T* Y, T* bi, T* Z, int d, double mu, double lr, double reg,
                            double bias_reg, bool biases, bool implicit, const double* user_scale,
                            const double* item_scale, double* c, double* g, bool z_reg_per_rating) {
  const Shuffle users(n_users, keys);
  return svdpp_epoch_with(
      indptr, indices, ratings, [&](int64_t t) { return users(t); },
      [&](int64_t u, int64_t start, int64_t end) {
        uint32_t k[4];
        user_keys(keys + 4, u, k);
        const Shuffle within(end - start, k);
        return [within, start](int64_t q) { return start + within(q - start); };
      },
      n_users, Pf, bu, Y, bi, Z, d, mu, lr, reg, bias_reg, biases, implicit, user_scale, item_scale, c, g,
      z_reg_per_rating);
}

// The effective user factors of SVD++: out[u] = P[u] + |N(u)|^-1/2 sum_{j in N(u)} Z[j] (the sum in double, as
// the epochs form it), with no users x items matrix of scales.
template <typename T, typename P, typename I>
void svdpp_effective(const P* indptr, const I* indices, int64_t n_users, const T* Pf, const T* Z, int d, T* out) {
  std::vector<double> c(d);
  for (int64_t u = 0; u < n_users; ++u) {
    const int64_t start = indptr[u], end = indptr[u + 1];
    std::fill(c.begin(), c.end(), 0.0);
    for (int64_t q = start; q < end; ++q) {
      const T* zr = Z + (size_t)indices[q] * d;
      for (int k = 0; k < d; ++k) c[k] += (double)zr[k];
    }
    const double s = end > start ? 1.0 / std::sqrt((double)(end - start)) : 0.0;
    for (int k = 0; k < d; ++k) out[(size_t)u * d + k] = (T)((double)Pf[(size_t)u * d + k] + s * c[k]);
  }
}

}  // namespace mfrec
