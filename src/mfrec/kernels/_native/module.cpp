// mfrec.kernels._native: the compiled kernels (built by pip through scikit-build-core and CMake, no run-time
// compiler). Plain arrays in, arrays written in place; the Python modules in mfrec/kernels validate and convert
// once and document the math. Every kernel releases the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>

#include "als_explicit.hpp"
#include "als_implicit.hpp"
#include "linalg.hpp"
#include "pool.hpp"
#include "sgd.hpp"
#include "sparse.hpp"
#include "topk.hpp"

namespace nb = nanobind;
using namespace mfrec;

template <typename T>
using Arr = nb::ndarray<T, nb::c_contig, nb::device::cpu>;  // any number of dimensions, C-contiguous
template <typename T>
using Vec1 = nb::ndarray<T, nb::ndim<1>, nb::device::cpu>;  // 1-D, any stride (a broadcast value: stride 0)

namespace {

int threads() { return Pool::get().threads(); }

template <typename T>
Strided<T> strided(const Vec1<const T>& a, double offset = 0.0, double scale = 1.0) {
  return Strided<T>{a.data(), (int64_t)a.stride(0), (T)offset, (T)scale};
}

template <typename T, typename P>
void b_cholesky_rows(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a,
                     double conf_b, Vec1<const T> pref, Arr<const T> Y, Arr<const double> G0, double c0,
                     Arr<const int32_t> rows, int n_workers, Arr<T> X, Arr<uint8_t> failed, Arr<double> row_loss) {
  const int d = (int)Y.shape(1);
  double* rl = row_loss.size() ? row_loss.data() : nullptr;
  nb::gil_scoped_release release;
  implicit_cholesky_rows<T, P, int32_t>(indptr.data(), indices.data(), strided(conf, conf_a, conf_b), strided(pref),
                                        Y.data(), G0.data(), c0, rows.data(), (int64_t)rows.size(), n_workers, d,
                                        X.data(), failed.data(), rl);
}

template <typename T, typename P>
void b_cg_rows(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a, double conf_b,
               Vec1<const T> pref, Arr<const T> Y, Arr<const T> G0, double c0, int steps, Arr<const int32_t> rows,
               int64_t n_single, int n_workers, Arr<T> X, Arr<double> row_loss) {
  const int d = (int)Y.shape(1);
  double* rl = row_loss.size() ? row_loss.data() : nullptr;
  nb::gil_scoped_release release;
  implicit_cg_rows<T, P, int32_t>(indptr.data(), indices.data(), strided(conf, conf_a, conf_b), strided(pref),
                                  Y.data(), G0.data(), c0, steps, rows.data(), (int64_t)rows.size(), n_single,
                                  n_workers, d, X.data(), rl);
}

template <typename T, typename P>
void b_cg_windowed(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a, double conf_b,
                   Vec1<const T> pref, Arr<const T> Y, Arr<const T> G0, double c0, int steps, Arr<const int32_t> rows,
                   Arr<const int64_t> chunk_start, int64_t window, int n_workers, Arr<T> X, Arr<double> row_loss) {
  const int d = (int)Y.shape(1);
  double* rl = row_loss.size() ? row_loss.data() : nullptr;
  nb::gil_scoped_release release;
  implicit_cg_windowed<T, P, int32_t>(indptr.data(), indices.data(), strided(conf, conf_a, conf_b), strided(pref),
                                      Y.data(), (int64_t)Y.shape(0), G0.data(), c0, steps, rows.data(),
                                      chunk_start.data(), (int64_t)chunk_start.size() - 1, window, n_workers, d,
                                      X.data(), rl);
}

template <typename T, typename P>
void b_cg_mixed(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a, double conf_b,
                Vec1<const T> pref, Arr<const T> Y, Arr<const T> G0, double c0, int steps, Arr<const int32_t> long_rows,
                Arr<const int64_t> chunk_start, int64_t window, Arr<const int32_t> short_rows, int64_t n_single,
                int n_workers, Arr<T> X, Arr<double> row_loss) {
  const int d = (int)Y.shape(1);
  double* rl = row_loss.size() ? row_loss.data() : nullptr;
  nb::gil_scoped_release release;
  implicit_cg_mixed<T, P, int32_t>(indptr.data(), indices.data(), strided(conf, conf_a, conf_b), strided(pref),
                                   Y.data(), (int64_t)Y.shape(0), G0.data(), c0, steps, long_rows.data(),
                                   chunk_start.data(), (int64_t)chunk_start.size() - 1, window, short_rows.data(),
                                   (int64_t)short_rows.size(), n_single, n_workers, d, X.data(), rl);
}

template <typename P>
void b_count_columns(Arr<const P> indptr, Arr<const int32_t> indices, Arr<int32_t> out) {
  const int n_workers = threads();
  nb::gil_scoped_release release;
  count_columns<P, int32_t>(indptr.data(), indices.data(), (int64_t)indptr.size() - 1, (int64_t)out.shape(1),
                            (int)out.shape(0), out.data(), n_workers);
}

template <typename P, typename V>
bool b_transpose_columns(Arr<const P> indptr, Arr<const int32_t> indices, int64_t a, int64_t b, Arr<int32_t> taken,
                         Arr<const V> v1, Arr<const V> v2, Arr<int64_t> out_indptr, Arr<int32_t> out_indices,
                         Arr<V> o1, Arr<V> o2, Arr<int64_t> counts, Arr<const int32_t> part_counts,
                         int64_t n_cols, int n_parts) {
  const V* in1 = v1.size() ? v1.data() : nullptr;
  const V* in2 = v2.size() ? v2.data() : nullptr;
  const int n_workers = threads();
  nb::gil_scoped_release release;
  return transpose_columns<P, int32_t, V>(indptr.data(), indices.data(), (int64_t)indptr.size() - 1, a, b,
                                          taken.data(), in1, in2, out_indptr.data(), out_indices.data(), o1.data(),
                                          o2.data(), (int64_t)out_indices.size(), counts.data(),
                                          part_counts.size() ? part_counts.data() : nullptr, n_cols, n_parts,
                                          n_workers);
}

template <typename T, typename P>
double b_observed_loss(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a,
                       double conf_b, Vec1<const T> pref, Arr<const T> X, Arr<const T> Y, double c0) {
  const int d = (int)Y.shape(1);
  const int64_t n_rows = (int64_t)X.shape(0);
  const P* ip = indptr.data();
  const int32_t* ix = indices.data();
  const Strided<T> cf = strided(conf, conf_a, conf_b);
  const T *Xd = X.data(), *Yd = Y.data();
  const Strided<T> pr = strided(pref);
  nb::gil_scoped_release release;
  return chunked_row_sum(n_rows, threads(), [&](int64_t u) {
    return observed_row_loss(ip[u], ip[u + 1], ix, cf, pr, c0, Yd, Xd + (size_t)u * d, d);
  });
}

template <typename T, typename P>
void b_observed_grad(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a,
                     double conf_b, Vec1<const T> pref, Arr<const T> X, Arr<const T> Y, double c0, Arr<T> out) {
  const int d = (int)Y.shape(1);
  const P* ip = indptr.data();
  const int32_t* ix = indices.data();
  const Strided<T> cf = strided(conf, conf_a, conf_b);
  const T *Xd = X.data(), *Yd = Y.data();
  const Strided<T> pr = strided(pref);
  T* o = out.data();
  const T cz = (T)c0;
  nb::gil_scoped_release release;
  parallel_rows((int64_t)X.shape(0), threads(), [&](int64_t u) {
    T* ou = o + (size_t)u * d;
    const T* x = Xd + (size_t)u * d;
    std::fill(ou, ou + d, T(0));
    for (int64_t e = ip[u]; e < ip[u + 1]; ++e) {
      const T* y = Yd + (size_t)ix[e] * d;
      const T s = dot(x, y, d);
      axpy((cf[e] - cz) * s - cf[e] * pr[e], y, ou, d);  // [(c - c0) s - c p] y
    }
  });
}

template <typename T, typename P>
double b_observed_curvature(Arr<const P> indptr, Arr<const int32_t> indices, Vec1<const T> conf, double conf_a,
                            double conf_b, Arr<const T> G, Arr<const T> Y, double c0) {
  const int d = (int)Y.shape(1);
  const P* ip = indptr.data();
  const int32_t* ix = indices.data();
  const Strided<T> cf = strided(conf, conf_a, conf_b);
  const T *Gd = G.data(), *Yd = Y.data();
  nb::gil_scoped_release release;
  return chunked_row_sum((int64_t)G.shape(0), threads(), [&](int64_t u) {
    double acc = 0.0;
    for (int64_t e = ip[u]; e < ip[u + 1]; ++e) {
      const double s = dot(Gd + (size_t)u * d, Yd + (size_t)ix[e] * d, d);
      acc += ((double)cf[e] - c0) * s * s;
    }
    return acc;
  });
}

template <typename T, typename P, typename R>
int64_t b_explicit_rows(Arr<const P> indptr, Arr<const int32_t> indices, Arr<const R> data, Arr<const T> other,
                        Arr<const T> other_bias, double mu, double reg, bool frequency_weighted, bool biases,
                        Arr<T> target, Arr<T> target_bias, Arr<uint8_t> failed, double bias_reg) {
  const int d = (int)other.shape(1);
  const int64_t n_rows = (int64_t)indptr.size() - 1;
  nb::gil_scoped_release release;
  return explicit_ridge_rows<T, P, int32_t, R>(indptr.data(), indices.data(), data.data(), n_rows, other.data(),
                                                   other_bias.data(), d, mu, reg, frequency_weighted, biases,
                                                   target.data(), target_bias.data(), failed.data(), bias_reg,
                                                   threads());
}

template <typename T, typename P, typename R>
double b_explicit_sse(Arr<const P> indptr, Arr<const int32_t> indices, Arr<const R> data, Arr<const T> X,
                      Arr<const T> bu, Arr<const T> Y, Arr<const T> bi, double mu, bool biases) {
  const int d = (int)X.shape(1);
  nb::gil_scoped_release release;
  return explicit_sse<T, P, int32_t, R>(indptr.data(), indices.data(), data.data(), (int64_t)X.shape(0),
                                            X.data(), bu.data(), Y.data(), bi.data(), d, mu, biases, threads());
}

template <typename T>
void b_predict_pairs(Arr<const int64_t> user_idx, Arr<const int64_t> item_idx, Arr<const T> X, Arr<const T> bu,
                     Arr<const T> Y, Arr<const T> bi, double mu, bool biases, Arr<double> out) {
  const int d = (int)X.shape(1);
  nb::gil_scoped_release release;
  predict_pairs<T, int64_t>(user_idx.data(), item_idx.data(), (int64_t)user_idx.size(), X.data(), bu.data(),
                            Y.data(), bi.data(), d, mu, biases, out.data(), threads());
}

template <typename P>
void b_prior_rows(Arr<const P> indptr, Arr<const int32_t> indices, Arr<const double> weight, Arr<const double> target,
                  Arr<const double> Y, Arr<const double> G0, double c0, double reg, Arr<const double> prior,
                  Arr<double> X, Arr<uint8_t> failed) {
  const int d = (int)Y.shape(1);
  const int64_t n_rows = (int64_t)indptr.size() - 1;
  nb::gil_scoped_release release;
  prior_ridge_rows<P, int32_t>(indptr.data(), indices.data(), weight.data(), target.data(), Y.data(), G0.data(), c0,
                               reg, prior.data(), X.data(), failed.data(), n_rows, d, threads());
}

// A per-row penalty multiplier array, or null for "1 everywhere" (an empty array: no per-row array to allocate).
inline const double* scale_or_null(const Arr<const double>& scale) { return scale.size() ? scale.data() : nullptr; }

template <typename T, typename O>
double b_sgd_epoch(Arr<const int32_t> users, Arr<const int32_t> items, Arr<const float> ratings,
                   Arr<const O> order, Arr<T> X, Arr<T> bu, Arr<T> Y, Arr<T> bi, double mu, double lr,
                   double reg, double bias_reg, bool biases, Arr<const double> user_scale,
                   Arr<const double> item_scale) {
  const int d = (int)X.shape(1);
  nb::gil_scoped_release release;
  return sgd_epoch<T, int32_t, O>(users.data(), items.data(), ratings.data(), order.data(), (int64_t)order.size(),
                                  X.data(), bu.data(), Y.data(), bi.data(), d, mu, lr, reg, bias_reg, biases,
                                  scale_or_null(user_scale), scale_or_null(item_scale));
}

template <typename T>
double b_sgd_epoch_shuffled(Arr<const int64_t> indptr, Arr<const int32_t> row_at, Arr<const int32_t> items,
                            Arr<const float> ratings, Arr<const uint32_t> keys, Arr<T> X, Arr<T> bu, Arr<T> Y,
                            Arr<T> bi, double mu, double lr, double reg, double bias_reg, bool biases,
                            Arr<const double> user_scale, Arr<const double> item_scale) {
  const int d = (int)X.shape(1);
  nb::gil_scoped_release release;
  return sgd_epoch_shuffled<T, int32_t>(indptr.data(), row_at.data(), items.data(), ratings.data(),
                                        (int64_t)ratings.size(), keys.data(), X.data(), bu.data(), Y.data(),
                                        bi.data(), d, mu, lr, reg, bias_reg, biases, scale_or_null(user_scale),
                                        scale_or_null(item_scale));
}

// The visiting order of sgd_epoch_shuffled written out (for its tests): out[t] = the t-th entry visited.
void b_shuffled_order(Arr<const uint32_t> keys, Arr<int64_t> out) {
  const Shuffle order((int64_t)out.size(), keys.data());
  int64_t* o = out.data();
  for (int64_t t = 0; t < (int64_t)out.size(); ++t) o[t] = order(t);
}

template <typename T, typename O>
double b_svdpp_epoch(Arr<const int64_t> indptr, Arr<const int32_t> indices, Arr<const float> ratings,
                     Arr<const O> positions, Arr<const int64_t> user_order, Arr<T> P, Arr<T> bu, Arr<T> Y,
                     Arr<T> bi, Arr<T> Z, double mu, double lr, double reg, double bias_reg, bool biases,
                     bool implicit, Arr<const double> user_scale, Arr<const double> item_scale,
                     Arr<double> scratch, bool z_reg_per_rating) {
  const int d = (int)P.shape(1);
  double* c = scratch.data();
  nb::gil_scoped_release release;
  return svdpp_epoch<T, int64_t, int32_t, O>(indptr.data(), indices.data(), ratings.data(), positions.data(),
                                             user_order.data(), (int64_t)user_order.size(), P.data(), bu.data(),
                                             Y.data(), bi.data(), Z.data(), d, mu, lr, reg, bias_reg, biases,
                                             implicit, scale_or_null(user_scale), scale_or_null(item_scale), c, c + d,
                                             z_reg_per_rating);
}

template <typename T>
double b_svdpp_epoch_shuffled(Arr<const int64_t> indptr, Arr<const int32_t> indices, Arr<const float> ratings,
                              Arr<const uint32_t> keys, Arr<T> P, Arr<T> bu, Arr<T> Y, Arr<T> bi, Arr<T> Z, double mu,
                              double lr, double reg, double bias_reg, bool biases, bool implicit,
                              Arr<const double> user_scale, Arr<const double> item_scale, Arr<double> scratch,
                              bool z_reg_per_rating) {
  const int d = (int)P.shape(1);
  double* c = scratch.data();
  nb::gil_scoped_release release;
  return svdpp_epoch_shuffled<T, int64_t, int32_t>(indptr.data(), indices.data(), ratings.data(), keys.data(),
                                                   (int64_t)indptr.size() - 1, P.data(), bu.data(), Y.data(),
                                                   bi.data(), Z.data(), d, mu, lr, reg, bias_reg, biases, implicit,
                                                   scale_or_null(user_scale), scale_or_null(item_scale), c, c + d,
                                                   z_reg_per_rating);
}

// The visiting orders of svdpp_epoch_shuffled written out (for its tests): the users, and each user's entries.
void b_svdpp_order(Arr<const int64_t> indptr, Arr<const uint32_t> keys, Arr<int64_t> positions,
                   Arr<int64_t> user_order) {
  const int64_t n_users = (int64_t)indptr.size() - 1;
  const int64_t* ip = indptr.data();
  const Shuffle users(n_users, keys.data());
  for (int64_t t = 0; t < n_users; ++t) user_order.data()[t] = users(t);
  for (int64_t u = 0; u < n_users; ++u) {
    if (ip[u + 1] == ip[u]) continue;
    uint32_t k[4];
    user_keys(keys.data() + 4, u, k);
    const Shuffle within(ip[u + 1] - ip[u], k);
    for (int64_t q = ip[u]; q < ip[u + 1]; ++q) positions.data()[q] = ip[u] + within(q - ip[u]);
  }
}

template <typename T>
void b_svdpp_effective(Arr<const int64_t> indptr, Arr<const int32_t> indices, Arr<const T> P, Arr<const T> Z,
                       Arr<T> out) {
  nb::gil_scoped_release release;
  svdpp_effective<T, int64_t, int32_t>(indptr.data(), indices.data(), (int64_t)indptr.size() - 1, P.data(), Z.data(),
                                       (int)P.shape(1), out.data());
}

void b_select_rows(Arr<const float> scores, int64_t row_offset, Arr<const int64_t> excl_indptr,
                   Arr<const int32_t> excl_indices, Arr<const bool> allowed, bool use_allowed, int64_t k,
                   Arr<int32_t> out_items, Arr<float> out_scores, Arr<int32_t> out_counts) {
  const uint8_t* mask = use_allowed ? reinterpret_cast<const uint8_t*>(allowed.data()) : nullptr;
  nb::gil_scoped_release release;
  select_rows(scores.data(), (int64_t)scores.shape(0), (int64_t)scores.shape(1), row_offset, excl_indptr.data(),
              excl_indices.data(), mask, k, out_items.data(), out_scores.data(), out_counts.data(), threads());
}

template <typename T>
bool b_cholesky_upper(Arr<T> A, int n) {
  return cholesky_upper(A.data(), n, (int)A.shape(1));
}

template <typename T>
void b_cholesky_upper_solve(Arr<const T> U, Arr<T> b, int n) {
  cholesky_upper_solve(U.data(), b.data(), n, (int)U.shape(1));
}

template <typename T>
double b_pivot_floor(Arr<const T> A, int n) {
  return (double)pivot_floor(A.data(), n, (int)A.shape(1));
}

template <typename T>
void b_gram_apply(int64_t start, int64_t end, Arr<const int32_t> indices, Vec1<const T> conf, Vec1<const T> pref,
                  double c0, Arr<const T> Y, Arr<const T> x, Arr<T> out, bool with_b) {
  gram_apply<T, int32_t>(start, end, indices.data(), strided(conf), strided(pref), (T)c0, Y.data(), x.data(),
                         out.data(), (int)Y.shape(1), with_b);
}

template <typename T>
void b_matmul_rows4(Arr<const T> x, Arr<const T> G, Arr<T> out) {
  matmul_rows4(x.data(), G.data(), out.data(), (int)G.shape(0));
}

template <typename T>
void b_matvec_rows(Arr<const T> G, Arr<const T> p, Arr<T> out) {
  matvec_rows(G.data(), p.data(), out.data(), (int)G.shape(0));
}

// The work queue the row kernels use, for its test: how often each of n items was taken, with n_workers workers.
nb::ndarray<nb::numpy, int64_t, nb::ndim<1>> b_work_queue_counts(int64_t n, int n_workers) {
  auto* counts = new std::vector<int64_t>(n, 0);
  std::atomic<int64_t> next{0};
  {
    nb::gil_scoped_release release;
    parallel_workers(n, n_workers, [&](int) {
      for (;;) {
        const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= n) break;
        __atomic_fetch_add(&(*counts)[i], 1, __ATOMIC_RELAXED);
      }
    });
  }
  nb::capsule owner(counts, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
  return nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>(counts->data(), {(size_t)n}, owner);
}

}  // namespace

#define BIND_TP(name, fn)                   \
  m.def(name, &fn<float, int32_t>);         \
  m.def(name, &fn<float, int64_t>);         \
  m.def(name, &fn<double, int32_t>);        \
  m.def(name, &fn<double, int64_t>)
#define BIND_TPR(name, fn)                       \
  m.def(name, &fn<float, int32_t, float>);         \
  m.def(name, &fn<float, int64_t, float>);         \
  m.def(name, &fn<double, int32_t, float>);        \
  m.def(name, &fn<double, int64_t, float>);        \
  m.def(name, &fn<float, int32_t, double>);        \
  m.def(name, &fn<float, int64_t, double>);        \
  m.def(name, &fn<double, int32_t, double>);       \
  m.def(name, &fn<double, int64_t, double>)
#define BIND_TO(name, fn)               \
  m.def(name, &fn<float, int32_t>);      \
  m.def(name, &fn<float, int64_t>);      \
  m.def(name, &fn<double, int32_t>);     \
  m.def(name, &fn<double, int64_t>)
#define BIND_T(name, fn)       \
  m.def(name, &fn<float>);     \
  m.def(name, &fn<double>)

NB_MODULE(_native, m) {
  m.doc() = "mfrec's compiled kernels (see mfrec.kernels)";
  m.def("get_num_threads", &threads, "Threads the parallel kernels use.");
  m.def("set_num_threads", [](int n) { Pool::get().set_threads(n); }, "Set the threads the parallel kernels use.");
  m.def("default_num_threads", &default_threads);
  BIND_TP("implicit_cholesky_rows", b_cholesky_rows);
  BIND_TP("implicit_cg_rows", b_cg_rows);
  BIND_TP("implicit_cg_windowed", b_cg_windowed);
  BIND_TP("implicit_cg_mixed", b_cg_mixed);
  BIND_TP("implicit_observed_loss", b_observed_loss);
  BIND_TP("implicit_observed_grad", b_observed_grad);
  BIND_TP("implicit_observed_curvature", b_observed_curvature);
  BIND_TPR("explicit_ridge_rows", b_explicit_rows);
  BIND_TPR("explicit_sse", b_explicit_sse);
  BIND_T("predict_pairs", b_predict_pairs);
  m.def("prior_ridge_rows", &b_prior_rows<int32_t>);
  m.def("prior_ridge_rows", &b_prior_rows<int64_t>);
  BIND_TO("sgd_epoch", b_sgd_epoch);
  BIND_T("sgd_epoch_shuffled", b_sgd_epoch_shuffled);
  m.def("shuffled_order", &b_shuffled_order);
  BIND_TO("svdpp_epoch", b_svdpp_epoch);
  BIND_T("svdpp_epoch_shuffled", b_svdpp_epoch_shuffled);
  BIND_T("svdpp_effective", b_svdpp_effective);
  m.def("svdpp_order", &b_svdpp_order);
  m.def("select_rows", &b_select_rows);
  m.def("count_columns", &b_count_columns<int32_t>);
  m.def("count_columns", &b_count_columns<int64_t>);
  m.def("transpose_columns", &b_transpose_columns<int32_t, float>);
  m.def("transpose_columns", &b_transpose_columns<int64_t, float>);
  m.def("transpose_columns", &b_transpose_columns<int32_t, double>);
  m.def("transpose_columns", &b_transpose_columns<int64_t, double>);
  BIND_T("cholesky_upper_inplace", b_cholesky_upper);
  BIND_T("cholesky_upper_solve_inplace", b_cholesky_upper_solve);
  BIND_T("pivot_floor", b_pivot_floor);
  BIND_T("gram_apply", b_gram_apply);
  BIND_T("matmul_rows4", b_matmul_rows4);
  BIND_T("matvec_rows", b_matvec_rows);
  m.def("work_queue_counts", &b_work_queue_counts);
}
