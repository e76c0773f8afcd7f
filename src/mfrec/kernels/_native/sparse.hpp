// Sparse-structure kernels: counting a CSR's columns and transposing it (with per-entry arrays) a slice of columns
// at a time (all of them at once being one slice).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "pool.hpp"

namespace mfrec {

// Entries per column in each of n_parts ranges of rows (rows m t / n_parts .. m (t + 1) / n_parts): out is
// n_parts x n_cols, the ranges counted in parallel; no per-entry temporary.
template <typename P, typename I>
void count_columns(const P* indptr, const I* indices, int64_t m, int64_t n_cols, int n_parts, int32_t* out,
                   int n_workers) {
  std::atomic<int> next{0};
  parallel_workers(n_parts, n_workers, [&](int) {
    for (int t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n_parts;) {
      int32_t* cnt = out + (size_t)t * n_cols;
      std::fill(cnt, cnt + n_cols, int32_t(0));
      const int64_t lo = (int64_t)indptr[m * t / n_parts], hi = (int64_t)indptr[m * (t + 1) / n_parts];
      for (int64_t e = lo; e < hi; ++e) ++cnt[(int64_t)indices[e]];
    }
  });
}

// Columns [a, b) of an m-row CSR, transposed: out_indptr (b - a + 1, from 0), out_indices (row numbers,
// increasing within each column) and the per-entry arrays v1, v2 (either may be null) gathered into o1, o2 in
// the same order. taken[u] (m entries) counts row u's entries at columns < a on entry (rows' columns increasing)
// and those at columns < b on return, so slices taken in increasing column order visit each entry once, plus one
// look per row per slice. The rows are cut into n_parts ranges (a count pass and a fill
// pass each, taken from an atomic counter by up to n_workers threads); counts: 2 n_parts (b - a) scratch values.
// part_counts (null, or n_parts x n_cols: the entries of each column in each part's rows, taken once per fit)
// saves the count pass. The outputs hold `capacity` entries. Returns false when the entries met are not those
// counted (taken not where it should be, columns not increasing in a row): before anything is written when the
// count pass finds it, else with the outputs and taken spoilt; no write ever leaves the outputs.
template <typename P, typename I, typename V>
bool transpose_columns(const P* indptr, const I* indices, int64_t m, int64_t a, int64_t b, int32_t* taken,
                       const V* v1, const V* v2, int64_t* out_indptr, int32_t* out_indices, V* o1, V* o2,
                       int64_t capacity, int64_t* counts, const int32_t* part_counts, int64_t n_cols, int n_parts,
                       int n_workers) {
  const int64_t w = b - a;
  int64_t* ends = counts + (size_t)n_parts * w;
  auto rows = [&](int t, int64_t& lo, int64_t& hi) {
    lo = m * t / n_parts;
    hi = m * (t + 1) / n_parts;
  };
  std::atomic<int> next{0};
  std::atomic<bool> bad{false};
  if (part_counts) {
    for (int t = 0; t < n_parts; ++t)
      for (int64_t c = 0; c < w; ++c) counts[(size_t)t * w + c] = part_counts[(size_t)t * n_cols + a + c];
  } else {
    parallel_workers(n_parts, n_workers, [&](int) {  // pass 1: entries per column in each part
      for (int t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n_parts;) {
        int64_t* cnt = counts + (size_t)t * w;
        std::fill(cnt, cnt + w, int64_t(0));
        int64_t lo, hi;
        rows(t, lo, hi);
        for (int64_t u = lo; u < hi; ++u) {
          const int64_t end = (int64_t)indptr[u + 1];
          for (int64_t e = (int64_t)indptr[u] + taken[u]; e < end && (int64_t)indices[e] < b; ++e) {
            const int64_t c = (int64_t)indices[e] - a;
            if (c < 0) {
              bad = true;
              break;
            }
            ++cnt[c];
          }
        }
      }
    });
    if (bad) return false;
  }
  // column c's entries from part t start after those of columns < c and of parts < t in column c
  int64_t pos = 0;
  out_indptr[0] = 0;
  for (int64_t c = 0; c < w; ++c) {
    for (int t = 0; t < n_parts; ++t) {
      const int64_t k = counts[(size_t)t * w + c];
      counts[(size_t)t * w + c] = pos;
      pos += k;
      ends[(size_t)t * w + c] = pos;
    }
    out_indptr[c + 1] = pos;
  }
  if (pos != capacity) return false;
  next = 0;
  parallel_workers(n_parts, n_workers, [&](int) {  // pass 2: scatter, advancing taken
    for (int t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n_parts;) {
      int64_t* at = counts + (size_t)t * w;
      const int64_t* lim = ends + (size_t)t * w;
      int64_t lo, hi;
      rows(t, lo, hi);
      for (int64_t u = lo; u < hi && !bad.load(std::memory_order_relaxed); ++u) {
        const int64_t end = (int64_t)indptr[u + 1];
        int64_t e = (int64_t)indptr[u] + taken[u];
        for (; e < end && (int64_t)indices[e] < b; ++e) {
          const int64_t c = (int64_t)indices[e] - a;
          if (c < 0 || at[c] >= lim[c]) {  // not an entry this part counted
            bad = true;
            break;
          }
          const int64_t q = at[c]++;
          out_indices[q] = (int32_t)u;
          if (v1) o1[q] = v1[e];
          if (v2) o2[q] = v2[e];
        }
        taken[u] = (int32_t)(e - (int64_t)indptr[u]);
      }
      for (int64_t c = 0; c < w; ++c)  // fewer entries than counted
        if (at[c] != lim[c]) bad = true;
    }
  });
  return !bad;
}

}  // namespace mfrec
