// Small in-register linear algebra for the per-row solves: dot products, the blocked upper Cholesky with a pivot
// floor, triangular solves, the 4-row product with a symmetric matrix. No allocation; arrays are row-major with
// leading dimension d. Compiled with reassociation and contraction (the reductions vectorise) but no
// assumptions about NaN or infinity: the solvers' NaN checks stay.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

namespace mfrec {

// Scratch whose first element starts a cache line. The vector kernels load 64 bytes at a time: from an address
// 16 bytes past a line (what malloc returns) every load spans two lines, and a row of d floats touches one line
// more than it needs (measured: the CG half-steps 15-30 % slower with rows at 16 bytes past a line).
template <typename T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const LineAllocator<U>&) const { return false; }
};
template <typename T>
using LineVector = std::vector<T, LineAllocator<T>>;

// A per-entry array read through its stride, as a + b p[i s]: stride 0 is one value broadcast over every entry
// (the models pass all-ones preferences that way, with no array of nnz ones behind them); a, b map stored values
// to what the kernel consumes (confidences 1 + alpha r read from the ratings r, with no array of confidences).
// a = 0, b = 1 reads the values as they are, exactly.
template <typename T>
struct Strided {
  const T* p;
  int64_t s;
  T a = 0, b = 1;
  T operator[](int64_t i) const { return a + b * p[i * s]; }
};

// Ask for the n values at p (a factor row about to be gathered) to be brought into the cache: the misses of the
// rows a few entries ahead overlap the work on this one.
template <typename T>
inline void prefetch_row(const T* p, int n) {
  const char* c = reinterpret_cast<const char*>(p);
  for (size_t off = 0; off < n * sizeof(T); off += 64) __builtin_prefetch(c + off, 0, 3);
}

template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int n) {
  T s = 0;
  for (int k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

template <typename T>
inline void axpy(T alpha, const T* __restrict x, T* __restrict y, int n) {
  for (int k = 0; k < n; ++k) y[k] += alpha * x[k];
}

// n eps max_k A_kk: a Cholesky pivot at or below it counts as zero (mfrec.kernels.dense.rank_tolerance: numpy's
// lstsq rank cut-off). Waiting for an exactly zero or negative pivot misses most singular systems: rounding
// leaves a tiny positive pivot and the solve returns finite nonsense.
template <typename T>
inline T pivot_floor(const T* A, int n, int lda) {
  T top = 0;
  for (int k = 0; k < n; ++k) top = A[(size_t)k * lda + k] > top ? A[(size_t)k * lda + k] : top;
  return T(n) * std::numeric_limits<T>::epsilon() * top;
}

// cholesky_upper for any leading dimension (the rows one at a time, no whole-vector access); blocked right-looking, eight
// pivots per panel: the panel rows are factorised and scaled with the Schur updates inside the panel at once,
// then every trailing row gets the eight rank-1 updates in one sweep (each trailing entry loaded and stored once
// per eight pivots; the inner loop is an axpy over contiguous row segments). Returns false when a pivot is at
// most pivot_floor (A singular or numerically so, or NaN), leaving A partly overwritten.
template <typename T>
inline bool cholesky_upper_scalar(T* A, int n, int lda) {
  const T floor = pivot_floor(A, n, lda);
  for (int k0 = 0; k0 < n; k0 += 8) {
    const int kb = n - k0 < 8 ? n - k0 : 8;
    for (int k = k0; k < k0 + kb; ++k) {
      T* rk = A + (size_t)k * lda;
      T s = rk[k];
      if (!(s > floor)) return false;  // also catches NaN
      T ukk = std::sqrt(s);
      rk[k] = ukk;
      T inv = T(1) / ukk;
      for (int j = k + 1; j < n; ++j) rk[j] *= inv;  // U_kj = A_kj / U_kk
      for (int i = k + 1; i < k0 + kb; ++i) {
        T a = rk[i];
        T* ri = A + (size_t)i * lda;
        for (int j = i; j < n; ++j) ri[j] -= a * rk[j];  // A_ij -= U_ki U_kj inside the panel
      }
    }
    if (kb == 8) {
      const T* u0 = A + (size_t)k0 * lda;
      const T* u1 = u0 + lda;
      const T* u2 = u1 + lda;
      const T* u3 = u2 + lda;
      const T* u4 = u3 + lda;
      const T* u5 = u4 + lda;
      const T* u6 = u5 + lda;
      const T* u7 = u6 + lda;
      for (int i = k0 + 8; i < n; ++i) {
        const T a0 = u0[i], a1 = u1[i], a2 = u2[i], a3 = u3[i], a4 = u4[i], a5 = u5[i], a6 = u6[i], a7 = u7[i];
        T* ri = A + (size_t)i * lda;
        // A_ij -= sum_q U_qi U_qj over the eight pivots q, j >= i
        for (int j = i; j < n; ++j)
          ri[j] -= a0 * u0[j] + a1 * u1[j] + a2 * u2[j] + a3 * u3[j] + a4 * u4[j] + a5 * u5[j] + a6 * u6[j] +
                   a7 * u7[j];
      }
    }
  }
  return true;
}

#if defined(__GNUC__) || defined(__clang__)
// One 64-byte vector of T (GCC/Clang vector extensions), loaded from and stored to memory of any alignment: the
// vector kernels here and in als_implicit.hpp share these.
template <typename T>
struct Vec64;
template <>
struct Vec64<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec64<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <typename T>
inline typename Vec64<T>::type load64(const T* p) {
  typename Vec64<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void store64(T* p, const typename Vec64<T>::type& v) {
  std::memcpy(p, &v, sizeof v);
}
#endif

#if defined(__GNUC__) || defined(__clang__)
// cholesky_upper on whole 64-byte vectors, for lda a multiple of the vector width W: every row operation starts at
// the vector holding its first entry and runs to the vector holding entry n - 1, so there is no scalar head or
// tail. The entries that come along and should not be touched are only ever the strict lower triangle of a row
// and the columns n..lda - 1, which the factorisation leaves as scratch: a value there only ever flows into
// another such entry (an update of row i, column j reads column j of a pivot row), and nothing reads them
// afterwards. The diagonal entry that a pivot row's whole-vector scaling would change is put back.
template <typename T>
inline bool cholesky_upper_vec(T* A, int n, int lda) {
  constexpr int W = 64 / (int)sizeof(T);
  const int nv = (n + W - 1) / W * W;
  const T floor = pivot_floor(A, n, lda);
  for (int k0 = 0; k0 < n; k0 += 8) {
    const int kb = n - k0 < 8 ? n - k0 : 8;
    for (int k = k0; k < k0 + kb; ++k) {
      T* rk = A + (size_t)k * lda;
      const T s = rk[k];
      if (!(s > floor)) return false;  // also catches NaN
      const T ukk = std::sqrt(s), inv = T(1) / ukk;
      for (int j = k / W * W; j < nv; j += W) store64(rk + j, load64(rk + j) * inv);  // U_kj = A_kj / U_kk
      rk[k] = ukk;
      for (int i = k + 1; i < k0 + kb; ++i) {  // A_ij -= U_ki U_kj inside the panel
        const T a = rk[i];
        T* ri = A + (size_t)i * lda;
        for (int j = i / W * W; j < nv; j += W) store64(ri + j, load64(ri + j) - a * load64(rk + j));
      }
    }
    if (kb == 8) {  // the trailing rows: eight rank-1 updates per sweep
      const T* u0 = A + (size_t)k0 * lda;
      const T *u1 = u0 + lda, *u2 = u1 + lda, *u3 = u2 + lda, *u4 = u3 + lda, *u5 = u4 + lda, *u6 = u5 + lda,
              *u7 = u6 + lda;
      for (int i = k0 + 8; i < n; ++i) {
        const T a0 = u0[i], a1 = u1[i], a2 = u2[i], a3 = u3[i], a4 = u4[i], a5 = u5[i], a6 = u6[i], a7 = u7[i];
        T* ri = A + (size_t)i * lda;
        for (int j = i / W * W; j < nv; j += W)
          store64(ri + j, load64(ri + j) - (a0 * load64(u0 + j) + a1 * load64(u1 + j) + a2 * load64(u2 + j) +
                                        a3 * load64(u3 + j) + a4 * load64(u4 + j) + a5 * load64(u5 + j) +
                                        a6 * load64(u6 + j) + a7 * load64(u7 + j)));
      }
    }
  }
  return true;
}
#endif

// A = U^T U in place on the upper triangle of A (n x n, leading dimension lda): blocked right-looking, eight
// pivots per panel (cholesky_upper_scalar). With lda a multiple of the 64-byte vector width the whole-vector
// version runs (the strict lower triangle and the columns n..lda - 1 are then scratch). Returns false when a pivot
// is at most pivot_floor (A singular or numerically so, or NaN), leaving A partly overwritten.
template <typename T>
inline bool cholesky_upper(T* A, int n, int lda) {
#if defined(__GNUC__) || defined(__clang__)
  if (lda % (64 / (int)sizeof(T)) == 0) return cholesky_upper_vec(A, n, lda);
#endif
  return cholesky_upper_scalar(A, n, lda);
}

// Solve U^T U z = b in place (b overwritten by z), U from cholesky_upper (either version: reads the upper triangle
// of the first n columns only).
template <typename T>
inline void cholesky_upper_solve(const T* U, T* b, int n, int lda) {
  for (int i = 0; i < n; ++i) {  // U^T w = b: column axpys over contiguous rows of U
    const T* ui = U + (size_t)i * lda;
    T wi = b[i] / ui[i];
    b[i] = wi;
    for (int j = i + 1; j < n; ++j) b[j] -= wi * ui[j];
  }
  for (int i = n - 1; i >= 0; --i) {  // U z = w: row dots
    const T* ui = U + (size_t)i * lda;
    T s = b[i];
    for (int j = i + 1; j < n; ++j) s -= ui[j] * b[j];
    b[i] = s / ui[i];
  }
}

// out[q, :] = x[q, :] G for the first nq (<= 4) rows of x (nq x d, leading dimension d); G (d x d) symmetric, so
// out[q] = G x_q. Register-blocked: for each tile of columns the four output rows stay in registers while the d
// rows of G stream past once (G is read once per four rows).
template <typename T>
inline void matmul_rows4(const T* __restrict x, const T* __restrict G, T* __restrict out, int d) {
#if defined(__GNUC__) || defined(__clang__)
  // whole 64-byte vectors: tiles of four vectors by four rows, sixteen accumulators in registers (the loop below
  // left its accumulator arrays in memory: 36 GFLOP/s at d = 128 on one core, a third of the FMA rate)
  typedef typename Vec64<T>::type vec;
  constexpr int W = 64 / (int)sizeof(T);
  if (d % W == 0) {
    int k0 = 0;
    for (; k0 + 4 * W <= d; k0 += 4 * W) {
      vec a[4][4] = {};
      for (int j = 0; j < d; ++j) {
        const T* g = G + (size_t)j * d + k0;
        const vec g0 = load64(g), g1 = load64(g + W), g2 = load64(g + 2 * W), g3 = load64(g + 3 * W);
        for (int q = 0; q < 4; ++q) {
          const T xq = x[(size_t)q * d + j];
          a[q][0] += xq * g0;
          a[q][1] += xq * g1;
          a[q][2] += xq * g2;
          a[q][3] += xq * g3;
        }
      }
      for (int q = 0; q < 4; ++q)
        for (int v = 0; v < 4; ++v) store64(out + (size_t)q * d + k0 + v * W, a[q][v]);
    }
    for (; k0 < d; k0 += W) {
      vec a[4] = {};
      for (int j = 0; j < d; ++j) {
        const vec g0 = load64(G + (size_t)j * d + k0);
        for (int q = 0; q < 4; ++q) a[q] += x[(size_t)q * d + j] * g0;
      }
      for (int q = 0; q < 4; ++q) store64(out + (size_t)q * d + k0, a[q]);
    }
    return;
  }
#endif
  constexpr int KT = 128 / sizeof(T);  // two 512-bit registers per output row
  int kt = 0;
  for (; kt + KT <= d; kt += KT) {
    T a0[KT], a1[KT], a2[KT], a3[KT];
    for (int k = 0; k < KT; ++k) a0[k] = a1[k] = a2[k] = a3[k] = 0;
    for (int j = 0; j < d; ++j) {
      const T* g = G + (size_t)j * d + kt;
      const T x0 = x[j], x1 = x[d + j], x2 = x[2 * d + j], x3 = x[3 * d + j];
      for (int k = 0; k < KT; ++k) {
        a0[k] += x0 * g[k];
        a1[k] += x1 * g[k];
        a2[k] += x2 * g[k];
        a3[k] += x3 * g[k];
      }
    }
    for (int k = 0; k < KT; ++k) {
      out[kt + k] = a0[k];
      out[d + kt + k] = a1[k];
      out[2 * d + kt + k] = a2[k];
      out[3 * d + kt + k] = a3[k];
    }
  }
  for (int k = kt; k < d; ++k) {
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int j = 0; j < d; ++j) {
      const T g = G[(size_t)j * d + k];
      s0 += x[j] * g;
      s1 += x[d + j] * g;
      s2 += x[2 * d + j] * g;
      s3 += x[3 * d + j] * g;
    }
    out[k] = s0;
    out[d + k] = s1;
    out[2 * d + k] = s2;
    out[3 * d + k] = s3;
  }
}

// out = G p for one row (G symmetric d x d): four rows of G per sweep over out.
template <typename T>
inline void matvec_rows(const T* __restrict G, const T* __restrict p, T* __restrict out, int d) {
#if defined(__GNUC__) || defined(__clang__)
  // whole 64-byte vectors: up to eight output vectors in registers, two rows of G per step in two chains
  typedef typename Vec64<T>::type vec;
  constexpr int W = 64 / (int)sizeof(T);
  if (d % W == 0) {
    for (int k0 = 0; k0 < d; k0 += 8 * W) {
      const int nv = std::min(8, (d - k0) / W);
      vec a[8] = {}, b[8] = {};
      int j = 0;
      for (; j + 2 <= d; j += 2) {
        const T* g0 = G + (size_t)j * d + k0;
        const T* g1 = g0 + d;
        for (int v = 0; v < nv; ++v) {
          a[v] += p[j] * load64(g0 + v * W);
          b[v] += p[j + 1] * load64(g1 + v * W);
        }
      }
      for (; j < d; ++j)
        for (int v = 0; v < nv; ++v) a[v] += p[j] * load64(G + (size_t)j * d + k0 + v * W);
      for (int v = 0; v < nv; ++v) store64(out + k0 + v * W, a[v] + b[v]);
    }
    return;
  }
#endif
  for (int k = 0; k < d; ++k) out[k] = 0;
  int j = 0;
  for (; j + 4 <= d; j += 4) {
    const T a0 = p[j], a1 = p[j + 1], a2 = p[j + 2], a3 = p[j + 3];
    const T* g0 = G + (size_t)j * d;
    const T* g1 = g0 + d;
    const T* g2 = g1 + d;
    const T* g3 = g2 + d;
    for (int k = 0; k < d; ++k) out[k] += a0 * g0[k] + a1 * g1[k] + a2 * g2[k] + a3 * g3[k];
  }
  for (; j < d; ++j) axpy(p[j], G + (size_t)j * d, out, d);
}

// Columns per register tile of gram_upper: two 64-byte vectors (16 doubles, 32 floats). Gathered rows are padded
// with zeros to a multiple of this (gram_ld) so every tile load is whole.
template <typename T>
constexpr int gram_tile() {
  return 128 / (int)sizeof(T);
}
template <typename T>
inline int gram_ld(int k) {
  return (k + gram_tile<T>() - 1) / gram_tile<T>() * gram_tile<T>();
}

// A (=, or += with Accumulate) sum_r w_r f_r^T f_r on the upper triangle of A (k x k, leading dimension lda; the
// strict lower triangle is not touched, and with lda >= ldf the columns from k to lda - 1 of a row may be
// written: pad A's rows too); F: n rows of ldf values, ldf a multiple of gram_tile<T>() and > k - 1, the columns
// from k on zero; w: n weights, or null for all ones. Register-blocked: each 8 x gram_tile tile of the upper
// triangle is accumulated over all n rows in sixteen 64-byte vectors (GCC/Clang vector extensions; the row's two
// vectors are scaled by w_r once), then stored once, so the inner loop is broadcast-multiply-adds with no loads or
// stores of A and, without Accumulate, A needs no zeroing first. On this machine (AVX-512, one core, n = 200,
// k = 65, double): 29.5 GFLOP/s, against 12.0 for the per-row rank-1 update it replaced (that one stores every
// entry of A once per row). Other compilers get the rank-1 update.
template <typename T, bool Accumulate = false>
inline void gram_upper(const T* __restrict F, const T* __restrict w, int n, int k, int ldf, T* __restrict A,
                       int lda) {
#if defined(__GNUC__) || defined(__clang__)
  typedef typename Vec64<T>::type vec;
  constexpr int W = 64 / (int)sizeof(T), TW = 2 * W;
  for (int a0 = 0; a0 < k; a0 += 8) {
    for (int q0 = a0 - a0 % TW; q0 < k; q0 += TW) {
      vec acc0[8] = {}, acc1[8] = {};
      for (int r = 0; r < n; ++r) {
        const T* fr = F + (size_t)r * ldf;
        vec v0 = load64(fr + q0), v1 = load64(fr + q0 + W);
        if (w) {
          v0 *= w[r];
          v1 *= w[r];
        }
        for (int i = 0; i < 8; ++i) {
          const T fa = fr[a0 + i];
          acc0[i] += fa * v0;
          acc1[i] += fa * v1;
        }
      }
      if (q0 >= a0 + 8 && q0 + TW <= lda) {  // wholly above the diagonal, inside the padded row: vector stores
        for (int i = 0; i < 8 && a0 + i < k; ++i) {
          T* Ai = A + (size_t)(a0 + i) * lda + q0;
          if (Accumulate) {
            acc0[i] += load64(Ai);
            acc1[i] += load64(Ai + W);
          }
          store64(Ai, acc0[i]);
          store64(Ai + W, acc1[i]);
        }
      } else {
        for (int i = 0; i < 8 && a0 + i < k; ++i) {
          T* Ai = A + (size_t)(a0 + i) * lda;
          for (int j = 0; j < TW && q0 + j < k; ++j)
            if (q0 + j >= a0 + i) {
              const T v = j < W ? acc0[i][j] : acc1[i][j - W];
              Ai[q0 + j] = Accumulate ? Ai[q0 + j] + v : v;
            }
        }
      }
    }
  }
#else
  if (!Accumulate)
    for (int a = 0; a < k; ++a)
      for (int q = a; q < k; ++q) A[(size_t)a * lda + q] = T(0);
  for (int r = 0; r < n; ++r) {
    const T* fr = F + (size_t)r * ldf;
    const T wr = w ? w[r] : T(1);
    for (int a = 0; a < k; ++a) {
      const T fa = wr * fr[a];
      T* Aa = A + (size_t)a * lda;
      for (int q = a; q < k; ++q) Aa[q] += fa * fr[q];
    }
  }
#endif
}

}  // namespace mfrec
