// Exact top-k per row of a float32 score block with exclusions (sorted CSR rows) and an allow-mask.
// Documented in mfrec/kernels/topk.py. Each row keeps a bounded min-heap of its k best candidates inside its own
// output row (no allocation per row): O(n log k) per row.
//   a ranks before b  <=>  score_a > score_b  or  (score_a == score_b and index_a < index_b);  NaN ranks as -inf.
#pragma once

#include <cstdint>
#include <limits>

#include "pool.hpp"

namespace mfrec {

inline bool worse(float s_a, int32_t i_a, float s_b, int32_t i_b) {
  return s_a < s_b || (s_a == s_b && i_a > i_b);
}

inline void heap_swap(float* hs, int32_t* hi, int64_t a, int64_t b) {
  const float ts = hs[a];
  const int32_t ti = hi[a];
  hs[a] = hs[b];
  hi[a] = hi[b];
  hs[b] = ts;
  hi[b] = ti;
}

inline void sift_down(float* hs, int32_t* hi, int64_t pos, int64_t size) {
  for (;;) {
    int64_t child = 2 * pos + 1;
    if (child >= size) break;
    const int64_t right = child + 1;
    if (right < size && worse(hs[right], hi[right], hs[child], hi[child])) child = right;
    if (!worse(hs[child], hi[child], hs[pos], hi[pos])) break;
    heap_swap(hs, hi, pos, child);
    pos = child;
  }
}

inline void sift_up(float* hs, int32_t* hi, int64_t pos) {
  while (pos > 0) {
    const int64_t parent = (pos - 1) / 2;
    if (!worse(hs[pos], hi[pos], hs[parent], hi[parent])) break;
    heap_swap(hs, hi, pos, parent);
    pos = parent;
  }
}

inline void select_row(const float* row, int64_t n_cols, int64_t g, const int64_t* excl_indptr,
                       const int32_t* excl_indices, const uint8_t* allowed, int64_t k, int32_t* out_items,
                       float* out_scores, int32_t* out_counts) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* hs = out_scores + g * k;  // the output row doubles as the heap
  int32_t* hi = out_items + g * k;
  int64_t size = 0;
  float thr = neg_inf;
  int64_t p = excl_indptr[g];
  const int64_t p_end = excl_indptr[g + 1];
  int64_t j = 0;
  while (j < n_cols) {
    // the run [j, stop) holds no excluded column; stop is the next excluded one (or the end)
    while (p < p_end && excl_indices[p] < j) ++p;
    int64_t stop = n_cols;
    if (p < p_end && excl_indices[p] < n_cols) stop = excl_indices[p];
    for (int64_t jj = j; jj < stop; ++jj) {
      if (allowed && !allowed[jj]) continue;
      const float s = row[jj];
      if (size < k) {
        hs[size] = s == s ? s : neg_inf;  // NaN ranks as -inf
        hi[size] = (int32_t)jj;
        sift_up(hs, hi, size);
        ++size;
        if (size == k) thr = hs[0];
      } else if (s > thr) {  // NaN compares false; an equal score has a higher index: it loses the tie
        hs[0] = s;
        hi[0] = (int32_t)jj;
        sift_down(hs, hi, 0, size);
        thr = hs[0];
      }
    }
    j = stop + 1;
  }
  out_counts[g] = (int32_t)size;
  for (int64_t end = size - 1; end > 0; --end) {  // heap-sort in place: best first
    heap_swap(hs, hi, 0, end);
    sift_down(hs, hi, 0, end);
  }
  for (int64_t t = size; t < k; ++t) {
    hs[t] = neg_inf;
    hi[t] = -1;
  }
}

// Top-k of every row r of scores (n_rows x n_cols) into out rows row_offset + r; a few rows run on the calling
// thread alone (waking the pool costs more than scanning one row of a request).
inline void select_rows(const float* scores, int64_t n_rows, int64_t n_cols, int64_t row_offset,
                        const int64_t* excl_indptr, const int32_t* excl_indices, const uint8_t* allowed, int64_t k,
                        int32_t* out_items, float* out_scores, int32_t* out_counts, int n_threads) {
  auto body = [&](int64_t r) {
    select_row(scores + r * n_cols, n_cols, row_offset + r, excl_indptr, excl_indices, allowed, k, out_items,
               out_scores, out_counts);
  };
  if (n_rows < 4) {
    for (int64_t r = 0; r < n_rows; ++r) body(r);
    return;
  }
  parallel_rows(n_rows, n_threads, body);
}

}  // namespace mfrec
