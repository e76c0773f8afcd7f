// A small persistent thread pool for the row kernels: workers sleep on a condition variable between jobs (no
// spinning, so nothing competes with BLAS or another library's threads while mfrec is idle), the caller is
// worker 0, and the kernels pull work items from an atomic counter (dynamic scheduling, longest rows first).
//
// One parallel job runs at a time; a call that finds the pool busy (another Python thread inside a kernel, e.g.
// the HTTP service or a Dask worker) runs its job on the calling thread alone instead of waiting. After fork()
// the child gets a fresh pool (the parent's worker threads do not exist there).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>
#include <unistd.h>

namespace mfrec {

inline int default_threads() {
  for (const char* var : {"MFREC_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* v = std::getenv(var)) {
      int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
#ifdef CPU_COUNT
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n ? (int)n : 1;
}

class Pool {
 public:
  static Pool& get() {
    static std::mutex guard;
    static Pool* pool = nullptr;
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr || pool->pid_ != getpid()) {
      // after fork the old pool's threads are gone: leak it (joining or destroying it would hang or abort)
      int n = pool ? pool->threads_ : default_threads();
      pool = new Pool(n);
    }
    return *pool;
  }

  int threads() const { return threads_; }

  void set_threads(int n) {
    std::lock_guard<std::mutex> busy(busy_);
    threads_ = std::max(1, n);
  }

  // Run fn(worker) for worker = 0 .. n-1 (n <= threads()); worker 0 on the calling thread. Returns when all did.
  void run(int n, const std::function<void(int)>& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || n <= 1) {
      fn(0);
      return;
    }
    n = std::min(n, threads_);
    ensure_workers(n - 1);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &fn;
      active_ = n - 1;
      pending_ = n - 1;
      ++generation_;
    }
    cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  explicit Pool(int n) : threads_(std::max(1, n)), pid_(getpid()) {}

  void ensure_workers(int n) {
    while ((int)workers_.size() < n) {
      int id = (int)workers_.size() + 1;
      workers_.emplace_back([this, id] { loop(id); });
      workers_.back().detach();
    }
  }

  void loop(int id) {
    unsigned long seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (id > active_) continue;  // not needed for this job
        job = job_;
      }
      (*job)(id);
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  int threads_;
  pid_t pid_;
  std::mutex busy_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int active_ = 0, pending_ = 0;
  unsigned long generation_ = 0;
};

// Run body(worker) on min(n_items, threads) workers; the body pulls items from its own atomic counter.
template <typename F>
inline void parallel_workers(int64_t n_items, int n_threads, F&& body) {
  int n = (int)std::max<int64_t>(1, std::min<int64_t>(n_items, n_threads));
  std::function<void(int)> fn = [&](int w) { body(w); };
  Pool::get().run(n, fn);
}

// Deterministic parallel sum over rows: fixed chunks of rows (independent of the thread count), chunk sums added
// in chunk order.
template <typename F>
double chunked_row_sum(int64_t n_rows, int n_threads, F&& row_value) {
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 1024));
  std::vector<double> part(n_chunks, 0.0);
  std::atomic<int64_t> next{0};
  parallel_workers(n_chunks, n_threads, [&](int) {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      double s = 0.0;
      for (int64_t u = c * n_rows / n_chunks; u < (c + 1) * n_rows / n_chunks; ++u) s += row_value(u);
      part[c] = s;
    }
  });
  double total = 0.0;
  for (double s : part) total += s;
  return total;
}

// Run body(u) for every row u in [0, n_rows), rows in fixed chunks pulled from an atomic counter.
template <typename F>
void parallel_rows(int64_t n_rows, int n_threads, F&& body) {
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_rows, 1024));
  std::atomic<int64_t> next{0};
  parallel_workers(n_chunks, n_threads, [&](int) {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      for (int64_t u = c * n_rows / n_chunks; u < (c + 1) * n_rows / n_chunks; ++u) body(u);
    }
  });
}

}  // namespace mfrec
