// Standalone tests of the header-only CPU kernels (aitrace/backends/cpu/include/ait/*.h) against
// naive reference loops (double precision, semantics of the numpy references in aitrace/ops).
// Build and run: ./run.sh   (or ./run.sh asan for -fsanitize=address,undefined)
// Exit status: 0 when every check passes, 1 otherwise.
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <memory>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ait/attention.h"
#include "ait/layout.h"
#include "ait/norm.h"
#include "ait/pool.h"
#include "ait/reduce.h"

using ait::bfloat16;
using ait::half;

// A std::vector stand-in whose data() is a T* for every T (std::vector<bool> has none).
template <typename T>
struct Buf {
  std::unique_ptr<T[]> p;
  size_t n = 0;
  Buf() = default;
  explicit Buf(size_t n_) : p(new T[n_ ? n_ : 1]()), n(n_) {}
  Buf(size_t n_, T v) : Buf(n_) { for (size_t i = 0; i < n; ++i) p[i] = v; }
  Buf(const Buf& o) : Buf(o.n) { std::memcpy(static_cast<void*>(p.get()), o.p.get(), n * sizeof(T)); }
  Buf& operator=(const Buf& o) { Buf t(o); std::swap(p, t.p); std::swap(n, t.n); return *this; }
  void resize(size_t m) { Buf t(m); if (n) std::memcpy(static_cast<void*>(t.p.get()), p.get(), std::min(m, n) * sizeof(T)); *this = t; }
  T* data() { return p.get(); }
  const T* data() const { return p.get(); }
  size_t size() const { return n; }
  T& operator[](size_t i) { return p[i]; }
  const T& operator[](size_t i) const { return p[i]; }
  T* begin() { return p.get(); }
  T* end() { return p.get() + n; }
};

static int g_fail = 0, g_checks = 0;
static std::mt19937_64 rng(12345);
static const double kInf = std::numeric_limits<double>::infinity();

template <typename T> const char* tname();
template <> const char* tname<float>() { return "f32"; }
template <> const char* tname<half>() { return "f16"; }
template <> const char* tname<bfloat16>() { return "bf16"; }
template <> const char* tname<int32_t>() { return "i32"; }
template <> const char* tname<int64_t>() { return "i64"; }
template <> const char* tname<bool>() { return "bool"; }

template <typename T> double tol_of() { return 1e-5; }
template <> double tol_of<half>() { return 1e-2; }
template <> double tol_of<bfloat16>() { return 1.6e-2; }

template <typename T> T cvt(double v) {
  if constexpr (std::is_integral<T>::value) return T(v);
  else return ait::from_float<T>(float(v));
}
template <typename T> double val(T x) {
  if constexpr (std::is_integral<T>::value) return double(x);
  else return double(ait::to_float(x));
}

template <typename T> Buf<T> rand_vec(size_t n, double lo = -2, double hi = 2) {
  std::uniform_real_distribution<double> u(lo, hi);
  Buf<T> v(n);
  for (auto& e : v) e = cvt<T>(u(rng));
  return v;
}

// got vs ref: |g - r| <= atol + rtol*|r|; NaN must match NaN, infinities must match exactly.
template <typename T>
bool check(const std::string& name, const T* got, const std::vector<double>& ref, double rtol,
           double atol) {
  ++g_checks;
  size_t bad = 0, first = size_t(-1);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = val(got[i]), r = ref[i];
    bool ok;
    if (std::isnan(r)) ok = std::isnan(g);
    else if (std::isinf(r)) ok = g == r;
    else {
      const double e = std::fabs(g - r);
      ok = e <= atol + rtol * std::fabs(r);
      worst = std::max(worst, e / (atol + rtol * std::fabs(r)));
    }
    if (!ok) {
      if (first == size_t(-1)) first = i;
      ++bad;
    }
  }
  if (bad) {
    ++g_fail;
    std::printf("FAIL %-60s %zu/%zu bad; first at %zu: got %.8g want %.8g\n", name.c_str(), bad,
                ref.size(), first, val(got[first]), ref[first]);
    return false;
  }
  if (std::getenv("VERBOSE")) std::printf("ok   %-60s (worst err/tol %.3f)\n", name.c_str(), worst);
  return true;
}
// Reference rounded through T first (what an exact kernel would store).
template <typename T> std::vector<double> through(const std::vector<double>& r) {
  std::vector<double> o(r.size());
  for (size_t i = 0; i < r.size(); ++i) o[i] = std::isnan(r[i]) ? r[i] : val(cvt<T>(r[i]));
  return o;
}
static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt(const char* f, ...) {
  char b[512];
  va_list ap;
  va_start(ap, f);
  vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

// ============================================================ reductions
struct RShape { int64_t outer, n, inner; };
static const RShape kRShapes[] = {{1, 1, 1},     {3, 7, 1},    {2, 1000, 1},  {1, 100003, 1},
                                  {5, 17, 3},    {2, 33, 300}, {1, 50001, 2}, {7, 1, 5},
                                  {4, 2048, 64}, {3, 5, 257},  {1, 4, 1},     {2, 3000, 17}};

template <typename T>
void test_reduce_float() {
  for (auto s : kRShapes) {
    const int64_t N = s.outer * s.n * s.inner, M = s.outer * s.inner;
    auto x = rand_vec<T>(size_t(N), -1, 3);
    std::vector<double> rs(M), rmean(M), rmax(M), rmin(M), rabs(M);
    std::vector<double> rarg(M);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t j = 0; j < s.inner; ++j) {
        double sum = 0, ab = 0, mx = -kInf, mn = kInf;
        int64_t am = 0;
        for (int64_t k = 0; k < s.n; ++k) {
          const double v = val(x[(o * s.n + k) * s.inner + j]);
          sum += v;
          ab += std::fabs(v);
          if (v > mx) { mx = v; am = k; }
          mn = std::min(mn, v);
        }
        rs[o * s.inner + j] = sum;
        rmean[o * s.inner + j] = sum / double(s.n);
        rmax[o * s.inner + j] = mx;
        rmin[o * s.inner + j] = mn;
        rabs[o * s.inner + j] = ab;
        rarg[o * s.inner + j] = double(am);
      }
    Buf<T> y(M);
    std::vector<int64_t> yi(M);
    const std::string sh = fmt("%s [%lld,%lld,%lld]", tname<T>(), (long long)s.outer, (long long)s.n,
                               (long long)s.inner);
    const double tol = tol_of<T>();
    // sums: tolerance relative to sum |x| (cancellation), plus the output rounding
    ait::reduce_sum<T, T>(x.data(), y.data(), s.outer, s.n, s.inner);
    {
      ++g_checks;
      bool ok = true;
      for (int64_t i = 0; i < M && ok; ++i) {
        const double e = std::fabs(val(y[i]) - rs[i]), rt = val(cvt<T>(rs[i]));
        if (std::isinf(rt) ? val(y[i]) != rt : e > tol * std::fabs(rs[i]) + 1e-6 * rabs[i] + 1e-6) {
          ok = false;
          ++g_fail;
          std::printf("FAIL reduce_sum %s at %lld: got %.8g want %.8g\n", sh.c_str(), (long long)i,
                      val(y[i]), rs[i]);
        }
      }
    }
    ait::reduce_mean<T, T>(x.data(), y.data(), s.outer, s.n, s.inner);
    check("reduce_mean " + sh, y.data(), rmean, tol, 1e-6);
    ait::reduce_max<T, T>(x.data(), y.data(), s.outer, s.n, s.inner);
    check("reduce_max " + sh, y.data(), rmax, 0, 0);
    ait::reduce_min<T, T>(x.data(), y.data(), s.outer, s.n, s.inner);
    check("reduce_min " + sh, y.data(), rmin, 0, 0);
    ait::argmax<T>(x.data(), yi.data(), s.outer, s.n, s.inner);
    check("argmax " + sh, yi.data(), rarg, 0, 0);

    // NaN: max/min give NaN, argmax the first NaN; ties: the first maximum
    if (s.n >= 3) {
      auto xn = x;
      std::vector<double> want_arg(M), want_nan(M);
      for (int64_t o = 0; o < s.outer; ++o)
        for (int64_t j = 0; j < s.inner; ++j) {
          const int64_t m = o * s.inner + j;
          if ((o + j) % 2 == 0) {
            const int64_t k1 = (o * 7 + j * 3 + 1) % s.n, k2 = std::min(s.n - 1, k1 + 1 + j % 2);
            xn[(o * s.n + k2) * s.inner + j] = cvt<T>(NAN);
            xn[(o * s.n + k1) * s.inner + j] = cvt<T>(NAN);
            want_arg[m] = double(k1);
            want_nan[m] = NAN;
          } else {  // a tie of two maxima at k1 < k2, above everything else
            const int64_t k1 = (o + 2 * j) % (s.n - 1), k2 = s.n - 1;
            xn[(o * s.n + k1) * s.inner + j] = cvt<T>(1000);
            xn[(o * s.n + k2) * s.inner + j] = cvt<T>(1000);
            want_arg[m] = double(k1);
            want_nan[m] = 1000;
          }
        }
      ait::argmax<T>(xn.data(), yi.data(), s.outer, s.n, s.inner);
      check("argmax nan/ties " + sh, yi.data(), want_arg, 0, 0);
      ait::reduce_max<T, T>(xn.data(), y.data(), s.outer, s.n, s.inner);
      check("reduce_max nan " + sh, y.data(), want_nan, 0, 0);
      ait::reduce_min<T, T>(xn.data(), y.data(), s.outer, s.n, s.inner);
      for (int64_t m = 0; m < M; ++m) {  // min of a NaN row is NaN; of the tie rows: the min
        if (!std::isnan(want_nan[m])) {
          const int64_t o = m / s.inner, j = m % s.inner;
          double mn = kInf;
          for (int64_t k = 0; k < s.n; ++k) mn = std::min(mn, val(xn[(o * s.n + k) * s.inner + j]));
          want_nan[m] = mn;
        }
      }
      check("reduce_min nan " + sh, y.data(), want_nan, 0, 0);
    }
  }
  // all -inf row: argmax 0, max -inf
  {
    Buf<T> x(9, cvt<T>(-INFINITY));
    int64_t yi[3];
    ait::argmax<T>(x.data(), yi, 3, 3, 1);
    std::vector<double> want = {0, 0, 0};
    check(std::string("argmax all -inf ") + tname<T>(), yi, want, 0, 0);
  }
}

template <typename T>
void test_reduce_int() {
  for (auto s : kRShapes) {
    const int64_t N = s.outer * s.n * s.inner, M = s.outer * s.inner;
    Buf<T> x(N);
    std::uniform_int_distribution<int64_t> u(-1000000000, 1000000000);
    for (auto& e : x) e = T(u(rng));
    Buf<T> ys(M), ymx(M), ymn(M);
    std::vector<int64_t> yi(M);
    std::vector<double> rs(M), rmx(M), rmn(M), ra(M);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t j = 0; j < s.inner; ++j) {
        uint64_t sum = 0;
        T mx = std::numeric_limits<T>::lowest(), mn = std::numeric_limits<T>::max();
        int64_t am = 0;
        for (int64_t k = 0; k < s.n; ++k) {
          const T v = x[(o * s.n + k) * s.inner + j];
          sum += uint64_t(int64_t(v));
          if (k == 0 || v > mx) { mx = v; am = k; }
          mn = std::min(mn, v);
        }
        rs[o * s.inner + j] = double(T(sum));  // wraps as numpy's T accumulation
        rmx[o * s.inner + j] = double(mx);
        rmn[o * s.inner + j] = double(mn);
        ra[o * s.inner + j] = double(am);
      }
    const std::string sh = fmt("%s [%lld,%lld,%lld]", tname<T>(), (long long)s.outer, (long long)s.n,
                               (long long)s.inner);
    ait::reduce_sum<T, T>(x.data(), ys.data(), s.outer, s.n, s.inner);
    check("reduce_sum " + sh, ys.data(), rs, 0, 0);
    ait::reduce_max<T, T>(x.data(), ymx.data(), s.outer, s.n, s.inner);
    check("reduce_max " + sh, ymx.data(), rmx, 0, 0);
    ait::reduce_min<T, T>(x.data(), ymn.data(), s.outer, s.n, s.inner);
    check("reduce_min " + sh, ymn.data(), rmn, 0, 0);
    ait::argmax<T>(x.data(), yi.data(), s.outer, s.n, s.inner);
    check("argmax " + sh, yi.data(), ra, 0, 0);
  }
  // int64 sums beyond 2^53 stay exact
  if (sizeof(T) == 8) {
    T x[4] = {T(int64_t(1) << 62), T(1), T(int64_t(1) << 61), T(-3)};
    T y;
    ait::reduce_sum<T, T>(x, &y, 1, 4, 1);
    ++g_checks;
    if (y != T((int64_t(1) << 62) + (int64_t(1) << 61) - 2)) { ++g_fail; std::printf("FAIL i64 exact sum\n"); }
  }
}

void test_reduce_bool() {
  std::vector<bool> pattern = {false, false, true, false, true, false};
  bool x[6];
  for (int i = 0; i < 6; ++i) x[i] = pattern[i];
  bool y[2];
  int64_t yi[2];
  ait::reduce_max<bool, bool>(x, y, 2, 3, 1);  // rows {f,f,t} {f,t,f}
  ++g_checks;
  if (!(y[0] && y[1])) { ++g_fail; std::printf("FAIL bool max\n"); }
  ait::reduce_min<bool, bool>(x, y, 2, 3, 1);
  ++g_checks;
  if (y[0] || y[1]) { ++g_fail; std::printf("FAIL bool min\n"); }
  ait::argmax<bool>(x, yi, 2, 3, 1);
  ++g_checks;
  if (yi[0] != 2 || yi[1] != 1) { ++g_fail; std::printf("FAIL bool argmax %lld %lld\n", (long long)yi[0], (long long)yi[1]); }
  int32_t xi[6];
  for (int i = 0; i < 6; ++i) xi[i] = x[i];
  int32_t s[2];
  ait::reduce_sum<int32_t, int32_t>(xi, s, 2, 3, 1);
  ++g_checks;
  if (s[0] != 1 || s[1] != 1) { ++g_fail; std::printf("FAIL bool-as-int sum\n"); }
}

// ============================================================ softmax / norms
template <typename T>
void test_softmax() {
  for (auto s : kRShapes) {
    const int64_t N = s.outer * s.n * s.inner;
    auto x = rand_vec<T>(size_t(N), -8, 8);
    // special rows (inner == 1 and n >= 4): row 0 partly -inf, row 1 with a NaN, row 2 all -inf
    if (s.inner == 1 && s.n >= 4 && s.outer >= 3) {
      x[1] = cvt<T>(-INFINITY);
      x[3] = cvt<T>(-INFINITY);
      x[s.n + 2] = cvt<T>(NAN);
      for (int64_t k = 0; k < s.n; ++k) x[2 * s.n + k] = cvt<T>(-INFINITY);
    }
    std::vector<double> ref(N);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t j = 0; j < s.inner; ++j) {
        double mx = -kInf;
        bool nan = false;
        for (int64_t k = 0; k < s.n; ++k) {
          const double v = val(x[(o * s.n + k) * s.inner + j]);
          nan |= std::isnan(v);
          mx = std::max(mx, v);
        }
        double sum = 0;
        for (int64_t k = 0; k < s.n; ++k) sum += std::exp(val(x[(o * s.n + k) * s.inner + j]) - mx);
        for (int64_t k = 0; k < s.n; ++k) {
          const int64_t i = (o * s.n + k) * s.inner + j;
          ref[i] = (nan || mx == -kInf) ? NAN : std::exp(val(x[i]) - mx) / sum;
        }
      }
    Buf<T> y(N);
    const std::string sh = fmt("%s [%lld,%lld,%lld]", tname<T>(), (long long)s.outer, (long long)s.n,
                               (long long)s.inner);
    ait::softmax<T>(x.data(), y.data(), s.outer, s.n, s.inner);
    check("softmax " + sh, y.data(), ref, tol_of<T>(), 1e-7);
    ait::softmax<T>(x.data(), x.data(), s.outer, s.n, s.inner);  // in place
    check("softmax in-place " + sh, x.data(), ref, tol_of<T>(), 1e-7);
  }
}

template <typename T>
void test_layer_norm() {
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {4, 768}, {33, 1000}, {2, 4096}, {128, 64}, {5, 257}};
  for (auto& sh : shapes) {
    const int64_t rows = sh[0], n = sh[1];
    auto x = rand_vec<T>(size_t(rows * n), -3, 5);
    auto w = rand_vec<T>(size_t(n), 0.5, 1.5), b = rand_vec<T>(size_t(n), -1, 1);
    for (int variant = 0; variant < 4; ++variant) {
      const bool hw = variant & 1, hb = variant & 2;
      std::vector<double> ref(rows * n);
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; ++i) mean += val(x[r * n + i]);
        mean /= n;
        for (int64_t i = 0; i < n; ++i) var += (val(x[r * n + i]) - mean) * (val(x[r * n + i]) - mean);
        var /= n;
        for (int64_t i = 0; i < n; ++i) {
          double v = (val(x[r * n + i]) - mean) / std::sqrt(var + 1e-5);
          if (hw) v *= val(w[i]);
          if (hb) v += val(b[i]);
          ref[r * n + i] = v;
        }
      }
      Buf<T> y(rows * n);
      ait::layer_norm<T>(x.data(), hw ? w.data() : nullptr, hb ? b.data() : nullptr, y.data(), rows, n, 1e-5f);
      check(fmt("layer_norm %s [%lld,%lld] w=%d b=%d", tname<T>(), (long long)rows, (long long)n, hw, hb),
            y.data(), ref, tol_of<T>(), 1e-4);
    }
  }
  // large offset: two-pass variance stays accurate
  {
    const int64_t n = 1024;
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = 10000.f + float(i % 7) * 0.01f;
    std::vector<double> ref(n);
    double mean = 0, var = 0;
    for (auto v : x) mean += v;
    mean /= n;
    for (auto v : x) var += (v - mean) * (v - mean);
    var /= n;
    for (int64_t i = 0; i < n; ++i) ref[i] = (x[i] - mean) / std::sqrt(var + 1e-5);
    std::vector<float> y(n);
    ait::layer_norm<float>(x.data(), nullptr, nullptr, y.data(), 1, n, 1e-5f);
    check("layer_norm f32 offset 1e4", y.data(), ref, 2e-3, 2e-3);
  }
}

template <typename T>
void test_batch_norm() {
  const int64_t shapes[][2] = {{1, 1}, {7, 3}, {56 * 56, 64}, {10, 300}, {2, 2048}};
  for (auto& sh : shapes) {
    const int64_t rows = sh[0], C = sh[1];
    auto x = rand_vec<T>(size_t(rows * C), -3, 3);
    auto mean = rand_vec<T>(size_t(C), -1, 1), var = rand_vec<T>(size_t(C), 0.1, 2);
    auto w = rand_vec<T>(size_t(C), 0.5, 1.5), b = rand_vec<T>(size_t(C), -1, 1);
    for (int variant = 0; variant < 4; ++variant) {
      const bool hw = variant & 1, hb = variant & 2;
      std::vector<double> ref(rows * C);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c) {
          double v = (val(x[r * C + c]) - val(mean[c])) / std::sqrt(val(var[c]) + 1e-5);
          if (hw) v *= val(w[c]);
          if (hb) v += val(b[c]);
          ref[r * C + c] = v;
        }
      Buf<T> y(rows * C);
      ait::batch_norm<T>(x.data(), mean.data(), var.data(), hw ? w.data() : nullptr,
                         hb ? b.data() : nullptr, y.data(), rows, C, 1e-5f);
      check(fmt("batch_norm %s [%lld,%lld] w=%d b=%d", tname<T>(), (long long)rows, (long long)C, hw, hb),
            y.data(), ref, tol_of<T>(), 1e-5);
    }
  }
}

// ============================================================ pooling
struct PCase { int64_t N, H, W, C, KH, KW, SH, SW, PT, PL; };
static const PCase kPCases[] = {
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},   {2, 7, 9, 3, 3, 3, 2, 2, 1, 1},  {1, 112, 112, 64, 3, 3, 2, 2, 1, 1},
    {2, 8, 8, 300, 2, 2, 2, 2, 0, 0}, {1, 5, 6, 17, 3, 2, 1, 1, 1, 1}, {3, 6, 5, 1, 4, 4, 3, 2, 2, 2},
    {1, 7, 7, 2048, 7, 7, 1, 1, 0, 0}, {2, 10, 3, 5, 5, 1, 2, 1, 2, 0}};

template <typename T>
void test_pool() {
  for (auto p : kPCases) {
    const int64_t OH = (p.H + 2 * p.PT - p.KH) / p.SH + 1, OW = (p.W + 2 * p.PL - p.KW) / p.SW + 1;
    auto x = rand_vec<T>(size_t(p.N * p.H * p.W * p.C), -4, 4);
    if (x.size() > 5) x[5] = cvt<T>(NAN);
    const int64_t M = p.N * OH * OW * p.C;
    std::vector<double> rmax(M), ravg(M), ravg2(M);
    for (int64_t n = 0; n < p.N; ++n)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow)
          for (int64_t c = 0; c < p.C; ++c) {
            double mx = -kInf, sum = 0;
            int cnt = 0;
            bool nan = false;
            for (int64_t kh = 0; kh < p.KH; ++kh)
              for (int64_t kw = 0; kw < p.KW; ++kw) {
                const int64_t ih = oh * p.SH - p.PT + kh, iw = ow * p.SW - p.PL + kw;
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                const double v = val(x[((n * p.H + ih) * p.W + iw) * p.C + c]);
                nan |= std::isnan(v);
                mx = std::max(mx, v);
                sum += v;
                ++cnt;
              }
            const int64_t m = ((n * OH + oh) * OW + ow) * p.C + c;
            rmax[m] = nan ? NAN : mx;
            ravg[m] = sum / double(p.KH * p.KW);
            ravg2[m] = sum / double(cnt);
          }
    Buf<T> y(M);
    const std::string sh = fmt("%s N%lld H%lld W%lld C%lld k%lldx%lld s%lldx%lld p%lldx%lld", tname<T>(),
                               (long long)p.N, (long long)p.H, (long long)p.W, (long long)p.C,
                               (long long)p.KH, (long long)p.KW, (long long)p.SH, (long long)p.SW,
                               (long long)p.PT, (long long)p.PL);
    ait::max_pool2d<T>(x.data(), y.data(), p.N, p.H, p.W, p.C, p.KH, p.KW, p.SH, p.SW, p.PT, p.PL, OH, OW);
    check("max_pool2d " + sh, y.data(), rmax, 0, 0);
    ait::avg_pool2d<T>(x.data(), y.data(), p.N, p.H, p.W, p.C, p.KH, p.KW, p.SH, p.SW, p.PT, p.PL, OH, OW, true);
    check("avg_pool2d incl " + sh, y.data(), ravg, tol_of<T>(), 1e-6);
    ait::avg_pool2d<T>(x.data(), y.data(), p.N, p.H, p.W, p.C, p.KH, p.KW, p.SH, p.SW, p.PT, p.PL, OH, OW, false);
    check("avg_pool2d excl " + sh, y.data(), ravg2, tol_of<T>(), 1e-6);
  }
  // int max pool, padding = lowest
  {
    const int64_t N = 1, H = 4, W = 4, C = 2, OH = 2, OW = 2;
    std::vector<int32_t> x(N * H * W * C);
    for (size_t i = 0; i < x.size(); ++i) x[i] = -int32_t(i) * 1000;
    std::vector<int32_t> y(N * OH * OW * C);
    ait::max_pool2d<int32_t>(x.data(), y.data(), N, H, W, C, 3, 3, 2, 2, 1, 1, OH, OW);
    std::vector<double> ref(y.size());
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t c = 0; c < C; ++c) {
          double mx = -kInf;
          for (int64_t ih = oh * 2 - 1; ih < oh * 2 + 2; ++ih)
            for (int64_t iw = ow * 2 - 1; iw < ow * 2 + 2; ++iw)
              if (ih >= 0 && ih < H && iw >= 0 && iw < W) mx = std::max(mx, double(x[(ih * W + iw) * C + c]));
          ref[(oh * OW + ow) * C + c] = mx;
        }
    check("max_pool2d i32", y.data(), ref, 0, 0);
  }
}

// ============================================================ attention
struct ACase {
  int64_t B, H, Sq, Sk, D, Dv;
  bool causal;
  int mask_kind;    // 0 none, 1 bool, 2 additive
  int mask_shape;   // 0: [B,1,1,Sk]  1: [B,H,Sq,Sk]  2: [1,1,Sq,Sk]  3: [Sq,1] (broadcast over keys)
  bool bshd;        // q/k/v/out stored [B,S,H,D] and passed by strides
  bool dead_rows;   // make some query rows fully masked
};

template <typename T, typename M>
void run_attention_case(const ACase& c, bool timeit = false) {
  const int64_t B = c.B, H = c.H, Sq = c.Sq, Sk = c.Sk, D = c.D, Dv = c.Dv;
  auto q = rand_vec<T>(size_t(B * H * Sq * D), -1.5, 1.5);
  auto k = rand_vec<T>(size_t(B * H * Sk * D), -1.5, 1.5);
  auto v = rand_vec<T>(size_t(B * H * Sk * Dv), -2, 2);
  // strides (elements) for [B,H,S,X] logical tensors
  auto strides = [&](int64_t S, int64_t X, int64_t* st) {
    if (c.bshd) { st[0] = S * H * X; st[1] = X; st[2] = H * X; }
    else { st[0] = H * S * X; st[1] = S * X; st[2] = X; }
  };
  int64_t qs[3], ks[3], vs[3], os[3];
  strides(Sq, D, qs);
  strides(Sk, D, ks);
  strides(Sk, Dv, vs);
  strides(Sq, Dv, os);
  // mask
  int64_t ms[4] = {0, 0, 0, 0};
  Buf<M> mask;
  std::uniform_real_distribution<double> u(0, 1);
  if (c.mask_kind) {
    int64_t dims[4];
    switch (c.mask_shape) {
      case 0: dims[0] = B; dims[1] = 1; dims[2] = 1; dims[3] = Sk; break;
      case 1: dims[0] = B; dims[1] = H; dims[2] = Sq; dims[3] = Sk; break;
      case 2: dims[0] = 1; dims[1] = 1; dims[2] = Sq; dims[3] = Sk; break;
      default: dims[0] = 1; dims[1] = 1; dims[2] = Sq; dims[3] = 1; break;
    }
    int64_t st = 1;
    for (int d = 3; d >= 0; --d) { ms[d] = dims[d] == 1 ? 0 : st; st *= dims[d]; }
    mask.resize(size_t(dims[0] * dims[1] * dims[2] * dims[3]));
    for (size_t i = 0; i < mask.size(); ++i) {
      if constexpr (std::is_same<M, bool>::value) mask[i] = u(rng) < 0.7;
      else mask[i] = cvt<M>(u(rng) < 0.2 ? -INFINITY : (u(rng) - 0.5) * 4);
    }
    if (c.dead_rows && c.mask_shape != 0) {  // query rows 0 and Sq/2 see nothing
      for (int64_t i : {int64_t(0), Sq / 2})
        for (int64_t b = 0; b < dims[0]; ++b)
          for (int64_t h = 0; h < dims[1]; ++h)
            for (int64_t j = 0; j < dims[3]; ++j) {
              M& e = mask[size_t(b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3])];
              if constexpr (std::is_same<M, bool>::value) e = false;
              else e = cvt<M>(-INFINITY);
            }
    }
  }
  const float scale = 1.0f / std::sqrt(float(D));
  Buf<T> out(B * H * Sq * Dv, cvt<T>(12345));
  double secs = 1e30;
  for (int rep = 0; rep < (timeit ? 3 : 1); ++rep) {  // timed: the best of 3
    auto t0 = std::chrono::steady_clock::now();
    ait::attention<T, M>(q.data(), k.data(), v.data(), out.data(), B, H, Sq, Sk, D, Dv, scale, c.causal,
                         c.mask_kind, c.mask_kind ? mask.data() : nullptr, ms[0], ms[1], ms[2], ms[3],
                         qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2], os[0], os[1], os[2]);
    secs = std::min(secs, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // reference (logical order [B,H,Sq,Dv]); gather the kernel output in the same order
  std::vector<double> ref(B * H * Sq * Dv);
  Buf<T> got(ref.size());
  std::vector<double> s(Sk);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        double mx = -kInf;
        for (int64_t j = 0; j < Sk; ++j) {
          double acc = 0;
          for (int64_t d = 0; d < D; ++d)
            acc += double(val(q[b * qs[0] + h * qs[1] + i * qs[2] + d])) *
                   double(val(k[b * ks[0] + h * ks[1] + j * ks[2] + d]));
          acc *= double(scale);
          if (c.mask_kind) {
            const M e = mask[size_t(b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3])];
            if (c.mask_kind == 1) acc = val(e) != 0 ? acc : -kInf;
            else acc += val(e);
          }
          if (c.causal && j > i) acc = -kInf;
          s[j] = acc;
          mx = std::max(mx, acc);
        }
        double sum = 0;
        for (int64_t j = 0; j < Sk; ++j) { s[j] = mx == -kInf ? 0 : std::exp(s[j] - mx); sum += s[j]; }
        for (int64_t dv = 0; dv < Dv; ++dv) {
          double acc = 0;
          for (int64_t j = 0; j < Sk; ++j) acc += s[j] * val(v[b * vs[0] + h * vs[1] + j * vs[2] + dv]);
          const size_t li = size_t(((b * H + h) * Sq + i) * Dv + dv);
          ref[li] = mx == -kInf ? 0.0 : acc / sum;
          got[li] = out[b * os[0] + h * os[1] + i * os[2] + dv];
        }
      }
  const char* shapes[] = {"[B,1,1,Sk]", "[B,H,Sq,Sk]", "[1,1,Sq,Sk]", "[Sq,1]"};
  const std::string name = fmt("attention %s/%s B%lld H%lld Sq%lld Sk%lld D%lld Dv%lld%s mask%d%s%s%s",
                               tname<T>(), c.mask_kind == 2 ? tname<M>() : "-", (long long)B, (long long)H,
                               (long long)Sq, (long long)Sk, (long long)D, (long long)Dv,
                               c.causal ? " causal" : "", c.mask_kind, c.mask_kind ? shapes[c.mask_shape] : "",
                               c.bshd ? " bshd" : "", c.dead_rows ? " dead" : "");
  check(name, got.data(), ref, std::is_same<T, float>::value ? 2e-5 : 2e-2, std::is_same<T, float>::value ? 2e-5 : 1e-2);
  if (timeit) {
    const double flops = 2.0 * B * H * Sq * Sk * (D + Dv) * (c.causal ? 0.5 : 1.0);
    std::printf("time %-70s %8.2f ms  %6.1f GFLOP/s\n", name.c_str(), secs * 1e3, flops / secs * 1e-9);
  }
}

void test_attention() {
  const ACase cases[] = {
      {1, 1, 1, 1, 1, 1, false, 0, 0, false, false},
      {2, 3, 5, 7, 8, 8, false, 0, 0, false, false},
      {2, 3, 5, 7, 8, 8, true, 0, 0, false, false},
      {1, 2, 70, 130, 13, 40, false, 0, 0, false, false},
      {1, 2, 70, 130, 13, 7, true, 0, 0, true, false},
      {2, 2, 100, 100, 64, 64, true, 0, 0, false, false},
      {1, 1, 200, 77, 32, 32, true, 0, 0, false, false},   // Sq > Sk, causal
      {1, 1, 33, 300, 32, 48, true, 0, 0, false, false},   // Sk > Sq, causal (top-left)
      {2, 2, 65, 129, 64, 64, false, 1, 0, false, false},  // bool padding mask [B,1,1,Sk]
      {2, 2, 65, 129, 64, 64, false, 1, 1, true, true},    // bool full mask, dead rows
      {2, 2, 65, 129, 64, 80, true, 1, 2, false, true},    // bool + causal, broadcast mask
      {2, 3, 40, 90, 16, 16, false, 2, 1, false, true},    // additive full mask with -inf rows
      {1, 2, 50, 70, 24, 24, true, 2, 2, true, false},     // additive broadcast + causal
      {2, 2, 30, 50, 16, 16, false, 2, 3, false, false},   // additive [Sq,1]
      {1, 1, 1, 1000, 64, 64, false, 1, 0, false, false},  // decode-like
      {1, 2, 3, 2000, 128, 128, false, 0, 0, true, false},
  };
  for (const auto& c : cases) {
    if (c.mask_kind == 1) {
      run_attention_case<float, bool>(c);
      run_attention_case<half, bool>(c);
      run_attention_case<bfloat16, bool>(c);
    } else {
      run_attention_case<float, float>(c);
      run_attention_case<half, half>(c);
      run_attention_case<bfloat16, bfloat16>(c);
      if (c.mask_kind == 2) run_attention_case<half, float>(c);  // fp32 additive mask on fp16
    }
  }
  // long sequences, timed
  const ACase longc[] = {
      {1, 2, 1024, 1024, 64, 64, false, 0, 0, false, false},
      {1, 2, 1024, 1024, 64, 64, true, 0, 0, false, false},
      {1, 2, 1024, 1024, 64, 64, false, 1, 0, true, false},
  };
  for (const auto& c : longc) {
    run_attention_case<float, bool>(c, true);
    run_attention_case<half, bool>(c, true);
    run_attention_case<bfloat16, bool>(c, true);
  }
}

// ============================================================ layout
template <typename T>
void ref_strided(const T* src, const int64_t* ss, T* dst, const int64_t* ds, const int64_t* shape, int nd) {
  int64_t total = 1;
  for (int d = 0; d < nd; ++d) total *= shape[d];
  for (int64_t lin = 0; lin < total; ++lin) {
    int64_t so = 0, dof = 0, r = lin;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t i = r % shape[d];
      r /= shape[d];
      so += i * ss[d];
      dof += i * ds[d];
    }
    dst[dof] = src[so];
  }
}

template <typename T>
bool same_bits(const Buf<T>& a, const Buf<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
void test_copy_strided() {
  auto contig = [](const std::vector<int64_t>& shape) {
    std::vector<int64_t> st(shape.size());
    int64_t s = 1;
    for (int d = int(shape.size()) - 1; d >= 0; --d) { st[d] = s; s *= shape[d]; }
    return st;
  };
  auto run = [&](const std::string& name, const Buf<T>& src, int64_t src_off, std::vector<int64_t> ss,
                 size_t dst_size, int64_t dst_off, std::vector<int64_t> ds, std::vector<int64_t> shape) {
    Buf<T> a(dst_size, cvt<T>(-7)), b(dst_size, cvt<T>(-7));
    ait::copy_strided<T>(src.data() + src_off, ss.data(), a.data() + dst_off, ds.data(), shape.data(), int(shape.size()));
    ref_strided<T>(src.data() + src_off, ss.data(), b.data() + dst_off, ds.data(), shape.data(), int(shape.size()));
    ++g_checks;
    if (!same_bits(a, b)) { ++g_fail; std::printf("FAIL copy_strided %s %s\n", tname<T>(), name.c_str()); }
  };
  Buf<T> src = rand_vec<T>(1 << 20, -100, 100);
  // contiguous copy, 3-D
  { std::vector<int64_t> sh = {3, 5, 7}; run("contig", src, 0, contig(sh), 105, 0, contig(sh), sh); }
  // 2-D transposes, small and big (tiled path), odd sizes
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{3, 5}, {37, 61}, {512, 300}, {1, 9}, {1000, 3}}) {
    const int64_t h = hw.first, w = hw.second;
    run(fmt("transpose %lldx%lld", (long long)h, (long long)w), src, 0, {1, w}, size_t(h * w), 0, {h, 1}, {w, h});
  }
  // 4-D permutations: [B,S,H,D] -> [B,H,S,D] and NCHW -> NHWC
  {
    const int64_t B = 2, S = 33, H = 4, D = 17;
    run("bshd->bhsd", src, 0, {S * H * D, D, H * D, 1}, size_t(B * S * H * D), 0, contig({B, H, S, D}), {B, H, S, D});
    const int64_t N = 2, C = 3, Hh = 64, W = 50;
    run("nchw->nhwc", src, 0, {C * Hh * W, W, 1, Hh * W}, size_t(N * C * Hh * W), 0, contig({N, Hh, W, C}), {N, Hh, W, C});
    run("nhwc->nchw", src, 0, {Hh * W * C, 1, W * C, C}, size_t(N * C * Hh * W), 0, contig({N, C, Hh, W}), {N, C, Hh, W});
  }
  // slice with steps: x[1:9:2, ::3, 2:] of [10, 11, 12]
  run("slice steps", src, 1 * 132 + 2, {2 * 132, 3 * 12, 1}, size_t(4 * 4 * 10), 0, contig({4, 4, 10}), {4, 4, 10});
  // flip both axes of [20, 30]: pointer at the last element
  run("flip2", src, 599, {-30, -1}, 600, 0, contig({20, 30}), {20, 30});
  run("flip0", src, 19 * 30, {-30, 1}, 600, 0, contig({20, 30}), {20, 30});
  // broadcast [1, 300] -> [70, 300] and [70, 1] -> [70, 300]
  run("bcast rows", src, 0, {0, 1}, 21000, 0, contig({70, 300}), {70, 300});
  run("bcast cols", src, 0, {1, 0}, 21000, 0, contig({70, 300}), {70, 300});
  run("bcast scalar", src, 5, {0, 0, 0}, 60, 0, contig({3, 4, 5}), {3, 4, 5});
  // concatenate along axis 1: [4, 3, 5] into slot [:, 2:5, :] of [4, 9, 5]
  run("concat slot", src, 0, contig({4, 3, 5}), size_t(4 * 9 * 5), 2 * 5, {45, 5, 1}, {4, 3, 5});
  // concatenate along the last axis (short inner rows): [1000, 3] into [1000, 8] at column 5
  run("concat last", src, 0, contig({1000, 3}), 8000, 5, {8, 1}, {1000, 3});
  // big copy with size-1 dims (parallel path), and a 0-d copy
  run("big", src, 0, {1, 512, 1, 0}, size_t(1 << 19), 0, {1, 512, 1, 0}, {1, 1024, 512, 1});
  run("0-d", src, 3, {}, 1, 0, {}, {});
  // non-contiguous both sides
  run("strided both", src, 0, {300, 3}, size_t(50 * 200), 1, {200, 2}, {40, 90});
}

template <typename T, typename I>
void test_take() {
  const int64_t cases[][4] = {{1, 10, 1, 7}, {3, 5, 4, 9}, {2, 1000, 64, 300}, {1, 1, 3, 4}, {4, 7, 1, 5000}};
  for (auto& c : cases) {
    const int64_t outer = c[0], n = c[1], inner = c[2], ni = c[3];
    auto table = rand_vec<T>(size_t(outer * n * inner), -50, 50);
    std::vector<I> idx(ni);
    std::uniform_int_distribution<int64_t> u(-n - 3, n + 3);
    for (auto& e : idx) e = I(u(rng));
    idx[0] = I(-1);
    if (ni > 1) idx[1] = I(n);
    Buf<T> out(outer * ni * inner), ref(out.size());
    ait::take<T, I>(table.data(), idx.data(), out.data(), outer, n, inner, ni);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < ni; ++i) {
        int64_t j = idx[i] < 0 ? int64_t(idx[i]) + n : int64_t(idx[i]);
        j = std::min(std::max<int64_t>(j, 0), n - 1);
        for (int64_t r = 0; r < inner; ++r) ref[(o * ni + i) * inner + r] = table[(o * n + j) * inner + r];
      }
    ++g_checks;
    if (!same_bits(out, ref)) {
      ++g_fail;
      std::printf("FAIL take %s/%s [%lld,%lld,%lld] idx %lld\n", tname<T>(), tname<I>(), (long long)outer,
                  (long long)n, (long long)inner, (long long)ni);
    }
  }
}

template <typename T>
void test_pad() {
  struct PC { std::vector<int64_t> shape, lo, hi; };
  const PC cases[] = {{{5}, {2}, {3}},
                      {{3, 4}, {1, 0}, {0, 2}},
                      {{2, 3, 4}, {0, 1, 2}, {1, 0, 3}},
                      {{1, 64, 64, 3}, {0, 1, 1, 0}, {0, 1, 1, 0}},
                      {{2, 200, 300}, {1, 3, 2}, {2, 1, 0}},
                      {{0, 3}, {1, 1}, {1, 1}},
                      {{}, {}, {}}};
  for (const auto& c : cases) {
    const int nd = int(c.shape.size());
    int64_t in_n = 1, out_n = 1;
    std::vector<int64_t> osh(nd);
    for (int d = 0; d < nd; ++d) { in_n *= c.shape[d]; osh[d] = c.shape[d] + c.lo[d] + c.hi[d]; out_n *= osh[d]; }
    auto src = rand_vec<T>(size_t(std::max<int64_t>(in_n, 1)), -9, 9);
    const T value = cvt<T>(3.5);
    Buf<T> out{size_t(out_n)}, ref{size_t(out_n), value};
    ait::pad_constant<T>(src.data(), out.data(), c.shape.data(), c.lo.data(), c.hi.data(), nd, value);
    for (int64_t lin = 0; lin < in_n; ++lin) {
      int64_t r = lin, o = 0, st = 1;
      for (int d = nd - 1; d >= 0; --d) {
        const int64_t i = r % c.shape[d];
        r /= c.shape[d];
        o += (i + c.lo[d]) * st;
        st *= osh[d];
      }
      ref[size_t(o)] = src[size_t(lin)];
    }
    if (nd == 0) ref[0] = src[0];
    ++g_checks;
    if (!same_bits(out, ref)) { ++g_fail; std::printf("FAIL pad_constant %s ndim %d\n", tname<T>(), nd); }
  }
}

// ============================================================ exp accuracy
void test_exp() {
  double worst = 0;
  for (double x = -103; x < 88.7; x += 0.001) {
    const float xf = float(x);
    const double r = std::exp(double(xf)), g = ait::detail::exp_f32(xf);
    if (r > 1.2e-38) worst = std::max(worst, std::fabs(g - r) / r);
  }
  ++g_checks;
  if (worst > 4e-7) { ++g_fail; std::printf("FAIL exp_f32 worst rel err %g\n", worst); }
  const float specials[] = {-INFINITY, INFINITY, NAN, -200.f, 89.f, 0.f};
  const float want[] = {0.f, INFINITY, NAN, 0.f, INFINITY, 1.f};
  for (int i = 0; i < 6; ++i) {
    const float g = ait::detail::exp_f32(specials[i]);
    ++g_checks;
    if (!(g == want[i] || (std::isnan(g) && std::isnan(want[i])))) {
      ++g_fail;
      std::printf("FAIL exp_f32(%g) = %g\n", specials[i], g);
    }
  }
  if (std::getenv("VERBOSE")) std::printf("exp_f32 worst rel err %.3g\n", worst);
}

// fp16/bf16 block conversions agree with the scalar ones on every bit pattern
void test_conversions() {
  std::vector<half> h(65536);
  std::vector<bfloat16> b(65536);
  for (uint32_t i = 0; i < 65536; ++i) { h[i].bits = uint16_t(i); b[i].bits = uint16_t(i); }
  std::vector<float> fh(65536), fb(65536);
  ait::detail::to_f32(h.data(), fh.data(), 65536);
  ait::detail::to_f32(b.data(), fb.data(), 65536);
  int bad = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const float a = ait::to_float(h[i]), c = ait::to_float(b[i]);
    bad += std::memcmp(&a, &fh[i], 4) != 0 || std::memcmp(&c, &fb[i], 4) != 0;
  }
  std::vector<float> f(1 << 20);
  std::uniform_int_distribution<uint32_t> u;
  for (auto& e : f) { uint32_t bits = u(rng); std::memcpy(&e, &bits, 4); }
  f[0] = NAN; f[1] = -INFINITY; f[2] = 65504.f; f[3] = 65520.f; f[4] = 1e-8f; f[5] = -0.f;
  std::vector<half> oh(f.size());
  std::vector<bfloat16> ob(f.size());
  ait::detail::from_f32(f.data(), oh.data(), int64_t(f.size()));
  ait::detail::from_f32(f.data(), ob.data(), int64_t(f.size()));
  for (size_t i = 0; i < f.size(); ++i) {
    bad += oh[i].bits != ait::from_float<half>(f[i]).bits;
    bad += ob[i].bits != ait::from_float<bfloat16>(f[i]).bits;
  }
  ++g_checks;
  if (bad) { ++g_fail; std::printf("FAIL block conversions: %d mismatches\n", bad); }
}

int main() {
  test_exp();
  test_conversions();
  test_reduce_float<float>();
  test_reduce_float<half>();
  test_reduce_float<bfloat16>();
  test_reduce_int<int32_t>();
  test_reduce_int<int64_t>();
  test_reduce_bool();
  test_softmax<float>();
  test_softmax<half>();
  test_softmax<bfloat16>();
  test_layer_norm<float>();
  test_layer_norm<half>();
  test_layer_norm<bfloat16>();
  test_batch_norm<float>();
  test_batch_norm<half>();
  test_batch_norm<bfloat16>();
  test_pool<float>();
  test_pool<half>();
  test_pool<bfloat16>();
  test_copy_strided<float>();
  test_copy_strided<half>();
  test_copy_strided<int64_t>();
  test_copy_strided<bool>();
  test_take<float, int64_t>();
  test_take<half, int32_t>();
  test_take<int32_t, int64_t>();
  test_pad<float>();
  test_pad<bfloat16>();
  test_pad<int32_t>();
  test_attention();
  std::printf("%d checks, %d failed (threads: %d)\n", g_checks, g_fail, ait::num_threads());
  return g_fail ? 1 : 0;
}
