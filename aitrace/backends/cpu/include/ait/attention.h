// aitrace CPU kernel: scaled dot-product attention, as torch.nn.functional.scaled_dot_product_attention
// (no dropout), flash-style: the Sq x Sk score matrix is never materialized.
//
//   attention<T, M = T>(q, k, v, out, B, H, Sq, Sk, D, Dv, scale, causal, mask_kind, mask,
//                       mask_sb, mask_sh, mask_sq, mask_sk,
//                       q_sb, q_sh, q_ss,  k_sb, k_sh, k_ss,  v_sb, v_sh, v_ss,  o_sb, o_sh, o_ss)
//   out[b,h,i,:] = softmax_j(q[b,h,i,:] . k[b,h,j,:] * scale + bias[b,h,i,j]) @ v[b,h,:,:]
// q [B,H,Sq,D], k [B,H,Sk,D], v [B,H,Sk,Dv], out [B,H,Sq,Dv], given by element strides for the
// batch, head and sequence dims (*_sb, *_sh, *_ss); the head_dim (last) dim MUST be contiguous
// (stride 1) in all four. Any other layout (e.g. [B,S,H,D] viewed as [B,H,S,D]) needs no copy.
// mask_kind: 0 none (mask ignored, may be nullptr); 1 boolean, M = bool, true attends (false ->
// bias -inf); 2 additive, M = T or float, bias = float(mask). The mask is addressed as
// mask[b*mask_sb + h*mask_sh + i*mask_sq + j*mask_sk] (element strides; 0 = broadcast).
// causal: key j is allowed iff j <= i (top-left aligned, as torch); combines with a mask.
// A query row whose keys are all masked out (its running max stays -inf) gives zeros, as the
// numpy reference and torch's math path (_safe_softmax). NaN in the scores gives NaN.
// T: float, ait::half, ait::bfloat16; everything is computed in fp32 (scale is folded into q
// before the q.k products, the one rounding difference from the reference).
//
// Algorithm: tasks = B*H*ceil(Sq/64) blocks of up to 64 queries, run in parallel (OpenMP). Each
// task keeps q^T (scaled, fp32, [D][64]), running max / sum per query and an fp32 output
// accumulator [64][Dv] in a per-thread buffer, and walks keys in blocks of 64 (causal: only
// blocks at or below the diagonal), each read in place (fp32, Dv a multiple of 16) or copied to
// fp32 K [64][D] and V [64][Dv] buffers:
// S^T = K q^T ([64 keys][64 queries], register-blocked 4 keys x 64 queries on AVX-512, 6 x 16 on
// AVX2), bias/causal, online softmax (vectorized over queries), O = O*alpha + P V (register-blocked
// 4 queries x 64 values; 6 x 16 on AVX2). Per-thread memory ~ (2*64*D + 2*64*Dv + 64*64) floats,
// allocated once per call. One core at Sq=Sk=1024, D=64: ~70 GFLOP/s on Zen 4 (AVX-512, about 85%
// of its FMA peak), ~52 on a 2.45 GHz Zen 3 (AVX2, ~67%).
// Limitation: parallelism is over (b, h, query block) only: a single decode-style query
// (B*H*ceil(Sq/64) < threads) leaves the other threads idle (no split over keys).
#pragma once
#include <vector>
#include "reduce.h"

namespace ait {
namespace detail {

// A register's worth of floats as a GCC/clang vector: 16 (a zmm) on AVX-512, else 8 (a ymm on
// AVX2; GCC spills a 16-wide vector it has to split, every operation through the stack).
// Memory is accessed through the unaligned, may_alias twin (as immintrin.h's __m512_u); no
// function passes a vector by value, which would change the ABI without AVX-512 (-Wpsabi).
#if defined(__AVX512F__)
constexpr int kAV = 16;
#else
constexpr int kAV = 8;
#endif
typedef float vf __attribute__((vector_size(4 * kAV)));
typedef float vf_u __attribute__((vector_size(4 * kAV), aligned(4), may_alias));
#define AIT_VLD(p) (*reinterpret_cast<const ::ait::detail::vf_u*>(p))
#define AIT_VST(p, v) (*reinterpret_cast<::ait::detail::vf_u*>(p) = (v))

constexpr int64_t kAttnBQ = 64;  // queries per task (4 groups of 16 lanes)
constexpr int64_t kAttnBK = 64;  // keys per block

// Register tiles of the two products, in vectors of kAV: AVX-512 4 keys (queries) x 4 zmm = 64
// query (value) lanes, 16 of its 32 registers; AVX2 6 x 2 ymm = 16 lanes, 12 of its 16 (the GEMM
// micro-kernel's 6x16).
#if defined(__AVX512F__)
constexpr int kQkKeys = 4, kQkVecs = 4, kPvRows = 4, kPvVecs = 4;
#else
constexpr int kQkKeys = 6, kQkVecs = 2, kPvRows = 6, kPvVecs = 2;
#endif

// st[r][0 : kAV*NQ] = sum_d kp[r*ks + d] * qt[d][0 : kAV*NQ], r < RK  (qt, st row stride kAttnBQ)
template <int RK, int NQ>
inline void qk_tile(const float* AIT_RESTRICT kp, int64_t ks, const float* AIT_RESTRICT qt,
                    int64_t D, float* AIT_RESTRICT st) {
  vf acc[RK][NQ];
  for (int r = 0; r < RK; ++r)
    for (int c = 0; c < NQ; ++c) acc[r][c] = vf{};
  for (int64_t d = 0; d < D; ++d) {
    vf qv[NQ];
    for (int c = 0; c < NQ; ++c) qv[c] = AIT_VLD(qt + d * kAttnBQ + kAV * c);
    for (int r = 0; r < RK; ++r) {
      const float kk = kp[r * ks + d];
      for (int c = 0; c < NQ; ++c) acc[r][c] += kk * qv[c];
    }
  }
  for (int r = 0; r < RK; ++r)
    for (int c = 0; c < NQ; ++c) AIT_VST(st + r * kAttnBQ + kAV * c, acc[r][c]);
}

// kQkKeys keys at a time, then the remaining 1 .. kQkKeys-1 (R counts down to 1)
template <int NQ, int R = kQkKeys - 1>
inline void qk_rest(const float* kp, int64_t ks, int64_t rest, const float* qt, int64_t D, float* st) {
  if constexpr (R > 0) {
    if (rest == R) qk_tile<R, NQ>(kp, ks, qt, D, st);
    else qk_rest<NQ, R - 1>(kp, ks, rest, qt, D, st);
  }
}
template <int NQ>
void qk_keys(const float* kp, int64_t ks, int64_t nk, const float* qt, int64_t D, float* st) {
  int64_t j = 0;
  for (; j + kQkKeys <= nk; j += kQkKeys) qk_tile<kQkKeys, NQ>(kp + j * ks, ks, qt, D, st + j * kAttnBQ);
  qk_rest<NQ>(kp + j * ks, ks, nk - j, qt, D, st + j * kAttnBQ);
}

// S^T [nk][nql] = K q^T over nql query lanes (a multiple of 16), kQkVecs vectors at a time
inline void qk_block(const float* kp, int64_t ks, int64_t nk, const float* qt, int64_t D, float* st, int64_t nql) {
  for (int64_t c = 0; c < nql; c += kQkVecs * kAV) {
    switch (std::min<int64_t>(kQkVecs, (nql - c) / kAV)) {
      case 4: qk_keys<4>(kp, ks, nk, qt + c, D, st + c); break;
      case 3: qk_keys<3>(kp, ks, nk, qt + c, D, st + c); break;
      case 2: qk_keys<2>(kp, ks, nk, qt + c, D, st + c); break;
      default: qk_keys<1>(kp, ks, nk, qt + c, D, st + c); break;
    }
  }
}

// o[r][0 : kAV*NV] = o[r][...] * alpha[r] + sum_j pt[j][r] * vb[j][0 : kAV*NV], r < RQ
template <int RQ, int NV>
inline void pv_tile(const float* AIT_RESTRICT pt, int64_t nk, const float* AIT_RESTRICT vb,
                    int64_t ldv, float* AIT_RESTRICT o, int64_t ldo, const float* AIT_RESTRICT alpha) {
  vf acc[RQ][NV];
  for (int r = 0; r < RQ; ++r) {
    for (int c = 0; c < NV; ++c) acc[r][c] = AIT_VLD(o + r * ldo + kAV * c) * alpha[r];
  }
  for (int64_t j = 0; j < nk; ++j) {
    vf vv[NV];
    for (int c = 0; c < NV; ++c) vv[c] = AIT_VLD(vb + j * ldv + kAV * c);
    for (int r = 0; r < RQ; ++r) {
      const float p = pt[j * kAttnBQ + r];
      for (int c = 0; c < NV; ++c) acc[r][c] += p * vv[c];
    }
  }
  for (int r = 0; r < RQ; ++r)
    for (int c = 0; c < NV; ++c) AIT_VST(o + r * ldo + kAV * c, acc[r][c]);
}

// RQ query rows over all dvp value columns (a multiple of 16), kPvVecs vectors at a time
template <int RQ>
inline void pv_rows(const float* pt, int64_t nk, const float* vb, int64_t ldv, float* o,
                    int64_t ldo, const float* alpha, int64_t dvp) {
  int64_t c = 0;
  for (; c + kAV * kPvVecs <= dvp; c += kAV * kPvVecs) pv_tile<RQ, kPvVecs>(pt, nk, vb + c, ldv, o + c, ldo, alpha);
  switch ((dvp - c) / kAV) {
    case 3: pv_tile<RQ, 3>(pt, nk, vb + c, ldv, o + c, ldo, alpha); break;
    case 2: pv_tile<RQ, 2>(pt, nk, vb + c, ldv, o + c, ldo, alpha); break;
    case 1: pv_tile<RQ, 1>(pt, nk, vb + c, ldv, o + c, ldo, alpha); break;
    default: break;
  }
}

// the remaining 1 .. kPvRows-1 query rows (R counts down to 1)
template <int R = kPvRows - 1>
inline void pv_rest(const float* pt, int64_t nk, const float* vb, int64_t ldv, float* o, int64_t ldo,
                    const float* alpha, int64_t rest, int64_t dvp) {
  if constexpr (R > 0) {
    if (rest == R) pv_rows<R>(pt, nk, vb, ldv, o, ldo, alpha, dvp);
    else pv_rest<R - 1>(pt, nk, vb, ldv, o, ldo, alpha, rest, dvp);
  }
}
inline void pv_block(const float* pt, int64_t nk, const float* vb, int64_t ldv, float* o,
                     int64_t ldo, const float* alpha, int64_t mq, int64_t dvp) {
  int64_t i = 0;
  for (; i + kPvRows <= mq; i += kPvRows) pv_rows<kPvRows>(pt + i, nk, vb, ldv, o + i * ldo, ldo, alpha + i, dvp);
  pv_rest(pt + i, nk, vb, ldv, o + i * ldo, ldo, alpha + i, mq - i, dvp);
}

template <typename M> inline bool mask_true(M m) {
  if constexpr (std::is_same<M, bool>::value) return m;
  else return to_float(m) != 0.f;
}

}  // namespace detail

template <typename T, typename M = T>
void attention(const T* q, const T* k, const T* v, T* out, int64_t B, int64_t H, int64_t Sq,
               int64_t Sk, int64_t D, int64_t Dv, float scale, bool causal, int mask_kind,
               const M* mask, int64_t mask_sb, int64_t mask_sh, int64_t mask_sq, int64_t mask_sk,
               int64_t q_sb, int64_t q_sh, int64_t q_ss, int64_t k_sb, int64_t k_sh, int64_t k_ss,
               int64_t v_sb, int64_t v_sh, int64_t v_ss, int64_t o_sb, int64_t o_sh, int64_t o_ss) {
  using namespace detail;
  constexpr int64_t BQ = kAttnBQ, BK = kAttnBK;
  if (B <= 0 || H <= 0 || Sq <= 0 || Dv <= 0) return;
  if (mask == nullptr) mask_kind = 0;
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t nqb = (Sq + BQ - 1) / BQ;
  const int64_t tasks = B * H * nqb;
  const int64_t dvp = (Dv + 15) / 16 * 16;
  const bool par = tasks > 1 && double(Sq) * double(Sk) * double(D + Dv) * double(B * H) >= 1e6;
  // Per-thread scratch, in floats: qt [D][BQ], kb [BK][D], vb [BK][dvp], st [BK][BQ],
  // o [BQ][dvp], row stats, and a conversion row. (K/V blocks are copied to fp32 even for fp32
  // inputs: the copy is amortized over the 64 queries and the dense block is faster to stream.)
  const int64_t n_qt = D * BQ, n_kb = BK * D, n_vb = BK * dvp;
  const int64_t n_st = BK * BQ, n_o = BQ * dvp, n_row = std::max<int64_t>(D, dvp) + 16;
  const int64_t scratch = n_qt + n_kb + n_vb + n_st + n_o + 6 * BQ + n_row + 16;

#pragma omp parallel if (par)
  {
    std::vector<float> buf(static_cast<size_t>(scratch));
    float* base = buf.data();
    base += (64 - (reinterpret_cast<uintptr_t>(base) & 63)) / sizeof(float) % 16;  // 64B align
    float* AIT_RESTRICT qt = base;
    float* AIT_RESTRICT kb = qt + n_qt;
    float* AIT_RESTRICT vb = kb + n_kb;
    float* AIT_RESTRICT st = vb + n_vb;
    float* AIT_RESTRICT o = st + n_st;
    float* AIT_RESTRICT mrun = o + n_o;  // running max per query
    float* AIT_RESTRICT lrun = mrun + BQ;  // running sum
    float* AIT_RESTRICT alpha = lrun + BQ;
    float* AIT_RESTRICT msub = alpha + BQ;
    float* AIT_RESTRICT mblk = msub + BQ;
    float* AIT_RESTRICT row = mblk + 2 * BQ;

#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = t % nqb, h = (t / nqb) % H, b = t / (nqb * H);
      const int64_t i0 = qb * BQ, mq = std::min(BQ, Sq - i0);
      const int64_t nql = (mq + 15) / 16 * 16;  // query lanes in use
      const T* qp = q + b * q_sb + h * q_sh;
      const T* kp = k + b * k_sb + h * k_sh;
      const T* vp = v + b * v_sb + h * v_sh;
      const M* mp = mask_kind ? mask + b * mask_sb + h * mask_sh : nullptr;

      // q^T, scaled; unused query lanes are zero.
      for (int64_t i = 0; i < nql; ++i) {
        if (i < mq) {
          to_f32(qp + (i0 + i) * q_ss, row, D);
          for (int64_t d = 0; d < D; ++d) qt[d * BQ + i] = row[d] * scale;
        } else {
          for (int64_t d = 0; d < D; ++d) qt[d * BQ + i] = 0.f;
        }
      }
      for (int64_t i = 0; i < BQ; ++i) { mrun[i] = ninf; lrun[i] = 0.f; }
      for (int64_t i = 0; i < mq * dvp; ++i) o[i] = 0.f;

      const int64_t kend = causal ? std::min(Sk, i0 + mq) : Sk;
      for (int64_t j0 = 0; j0 < kend; j0 += BK) {
        const int64_t nk = std::min(BK, kend - j0);
        // K and V blocks as fp32 rows (V rows zero-padded to dvp): fp32 inputs whose rows need
        // no padding are read in place, the others copied
        const float* kblk = kb;
        const float* vblk = vb;
        int64_t ldk = D, ldv = dvp;
        if (std::is_same<T, float>::value && Dv == dvp) {
          kblk = reinterpret_cast<const float*>(kp) + j0 * k_ss, ldk = k_ss;
          vblk = reinterpret_cast<const float*>(vp) + j0 * v_ss, ldv = v_ss;
        } else {
          for (int64_t j = 0; j < nk; ++j) to_f32(kp + (j0 + j) * k_ss, kb + j * D, D);
          for (int64_t j = 0; j < nk; ++j) {
            to_f32(vp + (j0 + j) * v_ss, vb + j * dvp, Dv);
            for (int64_t c = Dv; c < dvp; ++c) vb[j * dvp + c] = 0.f;
          }
        }

        // S^T [nk][nql] = K q^T
        qk_block(kblk, ldk, nk, qt, D, st, nql);

        // bias: mask, then causal
        if (mask_kind == 1) {
          for (int64_t j = 0; j < nk; ++j) {
            const M* mj = mp + (j0 + j) * mask_sk + i0 * mask_sq;
            float* AIT_RESTRICT s = st + j * BQ;
            if (mask_sq == 0) {
              if (!mask_true(mj[0]))
                for (int64_t i = 0; i < nql; ++i) s[i] = ninf;
            } else {
              for (int64_t i = 0; i < mq; ++i) s[i] = mask_true(mj[i * mask_sq]) ? s[i] : ninf;
            }
          }
        } else if (mask_kind == 2) {
          for (int64_t j = 0; j < nk; ++j) {
            const M* mj = mp + (j0 + j) * mask_sk + i0 * mask_sq;
            float* AIT_RESTRICT s = st + j * BQ;
            if (mask_sq == 0) {
              const float add = to_float(mj[0]);
              for (int64_t i = 0; i < nql; ++i) s[i] += add;
            } else {
              for (int64_t i = 0; i < mq; ++i) s[i] += to_float(mj[i * mask_sq]);
            }
          }
        }
        if (causal && j0 + nk - 1 > i0) {  // the block reaches above the diagonal
          for (int64_t j = 0; j < nk; ++j) {
            float* AIT_RESTRICT s = st + j * BQ;
            const int64_t lim = j0 + j - i0;  // query lanes i < lim may not see key j0+j
            for (int64_t i = 0; i < nql; ++i) s[i] = i < lim ? ninf : s[i];
          }
        }

        // online softmax, vectorized over the query lanes
        for (int64_t i = 0; i < nql; ++i) mblk[i] = ninf;
        for (int64_t j = 0; j < nk; ++j) {
          const float* AIT_RESTRICT s = st + j * BQ;
#pragma omp simd
          for (int64_t i = 0; i < nql; ++i) mblk[i] = max_nan(mblk[i], s[i]);
        }
#pragma omp simd
        for (int64_t i = 0; i < nql; ++i) {
          const float mnew = max_nan(mrun[i], mblk[i]);
          const bool dead = mnew == ninf;  // nothing seen yet: p = 0, keep O and l
          alpha[i] = dead ? 1.f : exp_f32(mrun[i] - mnew);
          msub[i] = dead ? 0.f : mnew;
          mrun[i] = mnew;
          lrun[i] = lrun[i] * alpha[i];
        }
        for (int64_t j = 0; j < nk; ++j) {
          float* AIT_RESTRICT s = st + j * BQ;
#pragma omp simd
          for (int64_t i = 0; i < nql; ++i) {
            s[i] = exp_f32(s[i] - msub[i]);
            lrun[i] += s[i];
          }
        }

        // O = O * alpha + P V
        pv_block(st, nk, vblk, ldv, o, dvp, alpha, mq, dvp);
      }

      // out = O / l; rows that saw no key give 0
      for (int64_t i = 0; i < mq; ++i) {
        const bool dead = mrun[i] == ninf;
        const float l = dead ? 1.f : lrun[i];
        const float z = dead ? 0.f : 1.f;
        float* AIT_RESTRICT oi = o + i * dvp;
        for (int64_t c = 0; c < Dv; ++c) row[c] = oi[c] * z / l;
        from_f32(row, out + b * o_sb + h * o_sh + (i0 + i) * o_ss, Dv);
      }
    }
  }
}

// Convenience: q/k/v/out contiguous [B,H,S,D]; mask strides as above.
template <typename T, typename M = T>
void attention_contiguous(const T* q, const T* k, const T* v, T* out, int64_t B, int64_t H,
                          int64_t Sq, int64_t Sk, int64_t D, int64_t Dv, float scale, bool causal,
                          int mask_kind, const M* mask, int64_t mask_sb, int64_t mask_sh,
                          int64_t mask_sq, int64_t mask_sk) {
  attention<T, M>(q, k, v, out, B, H, Sq, Sk, D, Dv, scale, causal, mask_kind, mask, mask_sb,
                  mask_sh, mask_sq, mask_sk, H * Sq * D, Sq * D, D, H * Sk * D, Sk * D, D,
                  H * Sk * Dv, Sk * Dv, Dv, H * Sq * Dv, Sq * Dv, Dv);
}

}  // namespace ait

#undef AIT_VLD
#undef AIT_VST
