// aitrace CUDA: FlashAttention-2 forward for fp16/bf16 at head dim 64 and 128, on tensor cores.
// A block owns BQ query rows of one (batch, head), 16 rows per warp; K/V stream through shared
// memory in tiles of 64 keys, 32 at d 128 (cp.async, two buffers: tile t+1 loads while t computes).
// S = Q K^T and O += P V are mma.sync m16n8k16 (16-bit in, fp32 accumulate) fed by ldmatrix; the
// softmax is online, in registers, in fp32 and base 2 (scale * log2 e folded into one multiply),
// so no [q_seq, k_seq] matrix ever reaches device memory. Masks are read at their broadcast
// strides; causal blocks stop at their diagonal and only the tiles that cross it are masked.
//
// Why mma.sync and not Hopper's wgmma: mma.sync runs on sm_80 and sm_90 alike, and at the target
// shapes (seq 128-197, d 64) a block sees 2-4 key tiles, so the kernel is bound by loads and
// latency, not by MMA issue. wgmma (sm_90a) would take K and V straight from shared memory through
// descriptors (no ldmatrix, fewer registers), run asynchronously 64 rows per warpgroup, and with
// TMA loads and producer/consumer warp specialization (FlashAttention-3) overlap softmax with the
// next tile's MMAs: worth it for long sequences, where the MMAs dominate.
#pragma once
#include "ait/cuda.h"

namespace ait {
namespace gpu {
namespace flash {

constexpr float kLog2e = 1.4426950408889634f;

template <typename T> struct Mma;  // D += A B over one 16x8x16 tile, and packing two floats for A
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Four 8x8 16-bit matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)) : "memory");
}

// 16 bytes global -> shared without passing through registers; !valid writes zeros (padding rows).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ float exp2_approx(float x) {  // ex2.approx(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// rows [0, ROWS) x HD of a [seq, HD] operand (rows `stride` elements apart) into a tile whose rows
// are LD elements apart; rows from `valid` on are zero-filled.
template <int ROWS, int HD, int LD, int THREADS, typename T>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t stride, int valid) {
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row
  static_assert(ROWS * kChunks % THREADS == 0, "whole rounds of chunks");
#pragma unroll
  for (int it = 0; it < ROWS * kChunks / THREADS; ++it) {
    const int c = threadIdx.x + it * THREADS, r = c / kChunks, col = (c % kChunks) * 8;
    const bool ok = r < valid;
    cp_async16(dst + r * LD + col, ok ? src + r * stride + col : src, ok);
  }
}

// Keys per K/V tile: 32 at d 128 keeps S and O (and Q's fragments) within 255 registers unspilled.
constexpr int key_tile(int head_dim) { return head_dim == 128 ? 32 : 64; }

template <typename T, typename M>
struct Params {
  const T *q, *k, *v;
  T* o;
  const M* mask;
  int64_t heads, batch_heads;
  int sq, sk;
  float scale_log2;                       // softmax scale * log2 e
  int64_t ms[4];                          // mask strides (batch, head, query, key); 0 where broadcast
  int64_t qs[3], ks[3], vs[3], os[3];     // (batch, head, seq) strides; the head dim is contiguous
};

// MASK: 0 none, 1 boolean (true attends), 2 additive.
template <typename T, typename M, int HD, int BQ, int MASK, bool CAUSAL>
__global__ void __launch_bounds__(BQ * 2) flash_attention_kernel(const Params<T, M> p) {
  await_inputs();
  constexpr int BK = key_tile(HD), THREADS = BQ * 2, LD = HD + 8;  // +8: rows 16 bytes off bank-aligned, ldmatrix conflict-free
  constexpr int DK = HD / 16, NS = BK / 8, NO = HD / 8;  // k-steps over the head dim; n-tiles of S and of O
  extern __shared__ __align__(16) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);  // [BQ][LD]
  T* sk = sq + BQ * LD;                // [2][BK][LD]
  T* sv = sk + 2 * BK * LD;            // [2][BK][LD]

  // causal: the heaviest (last) query tiles of every head first; else a head's query tiles side
  // by side, so the second reads K and V from L2
  const int q_tiles = (p.sq + BQ - 1) / BQ;
  const int64_t bh = CAUSAL ? blockIdx.x % p.batch_heads : blockIdx.x / q_tiles;
  const int q0 = (CAUSAL ? q_tiles - 1 - int(blockIdx.x / p.batch_heads) : int(blockIdx.x % q_tiles)) * BQ;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const T* qg = p.q + b * p.qs[0] + h * p.qs[1] + q0 * p.qs[2];
  const T* kg = p.k + b * p.ks[0] + h * p.ks[1];
  const T* vg = p.v + b * p.vs[0] + h * p.vs[1];
  const M* mg = MASK ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;

  const int kv_end = CAUSAL ? min(p.sk, q0 + BQ) : p.sk;  // keys past the block's last row are never seen
  const int n_tiles = (kv_end + BK - 1) / BK;
  load_tile<BQ, HD, LD, THREADS>(sq, qg, p.qs[2], p.sq - q0);
  cp_async_commit();
  load_tile<BK, HD, LD, THREADS>(sk, kg, p.ks[2], p.sk);
  load_tile<BK, HD, LD, THREADS>(sv, vg, p.vs[2], p.sk);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wrow0 = q0 + warp * 16;     // the warp's first query row
  const int row = wrow0 + lane / 4;     // this lane's rows: row and row + 8
  float o[NO][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (int t = 0; t < n_tiles; ++t) {
    const int k0 = t * BK;
    if (t + 1 < n_tiles) {
      T* nk = sk + ((t + 1) & 1) * BK * LD;
      T* nv = sv + ((t + 1) & 1) * BK * LD;
      load_tile<BK, HD, LD, THREADS>(nk, kg + (k0 + BK) * p.ks[2], p.ks[2], p.sk - k0 - BK);
      load_tile<BK, HD, LD, THREADS>(nv, vg + (k0 + BK) * p.vs[2], p.vs[2], p.sk - k0 - BK);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* ks = sk + (t & 1) * BK * LD;
    const T* vs = sv + (t & 1) * BK * LD;
    // skipped: warps past the last query, and (causal) tiles whose keys all follow the warp's rows
    if (wrow0 < p.sq && (!CAUSAL || k0 <= wrow0 + 15)) {
      float s[NS][4] = {};
#pragma unroll
      for (int d = 0; d < DK; ++d) {
        uint32_t qf[4];  // re-read per tile rather than held: 16-32 registers fewer for S and O
        ldmatrix_x4(qf, sq + (warp * 16 + lane % 16) * LD + d * 16 + (lane / 16) * 8);
#pragma unroll
        for (int n = 0; n < NS / 2; ++n) {
          uint32_t kf[4];
          ldmatrix_x4(kf, ks + (n * 16 + (lane / 16) * 8 + lane % 8) * LD + d * 16 + ((lane / 8) % 2) * 8);
          Mma<T>::run(s[2 * n], qf, kf[0], kf[1]);
          Mma<T>::run(s[2 * n + 1], qf, kf[2], kf[3]);
        }
      }
      // scale (base 2), mask; -inf past the keys and, on tiles crossing the diagonal, above it
      const bool edge = k0 + BK > p.sk || (CAUSAL && k0 + BK - 1 > wrow0);
#pragma unroll
      for (int n = 0; n < NS; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = row + (e / 2) * 8, j = k0 + n * 8 + (lane % 4) * 2 + e % 2;
          float x = s[n][e] * p.scale_log2;
          if (MASK && i < p.sq && j < p.sk) {
            const M mv = mg[i * p.ms[2] + j * p.ms[3]];
            if constexpr (MASK == 1) x = mv ? x : -INFINITY;
            else x += load<float>(mv) * kLog2e;
          }
          if (edge && (j >= p.sk || (CAUSAL && j > i))) x = -INFINITY;
          s[n][e] = x;
        }
      }
      // online softmax per row; a row with no visible key yet keeps m = -inf and p = 0
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NS; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[r], mx), base = m_new == -INFINITY ? 0.f : m_new;
        const float corr = exp2_approx(m[r] - base);
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < NS; ++n) {
          s[n][2 * r] = exp2_approx(s[n][2 * r] - base);
          s[n][2 * r + 1] = exp2_approx(s[n][2 * r + 1] - base);
          sum += s[n][2 * r] + s[n][2 * r + 1];
        }
        l[r] = l[r] * corr + sum;  // this lane's part of the row sum; the quad adds up at the end
        m[r] = m_new;
#pragma unroll
        for (int d = 0; d < NO; ++d) {
          o[d][2 * r] *= corr;
          o[d][2 * r + 1] *= corr;
        }
      }
      // O += P V: P's accumulator layout is the A operand's, two n-tiles per 16-key step
#pragma unroll
      for (int c = 0; c < BK / 16; ++c) {
        const uint32_t pa[4] = {Mma<T>::pack(s[2 * c][0], s[2 * c][1]), Mma<T>::pack(s[2 * c][2], s[2 * c][3]),
                                Mma<T>::pack(s[2 * c + 1][0], s[2 * c + 1][1]),
                                Mma<T>::pack(s[2 * c + 1][2], s[2 * c + 1][3])};
#pragma unroll
        for (int d = 0; d < HD / 16; ++d) {
          uint32_t vf[4];
          ldmatrix_x4_trans(vf, vs + (c * 16 + ((lane / 8) % 2) * 8 + lane % 8) * LD + d * 16 + (lane / 16) * 8);
          Mma<T>::run(o[2 * d], pa, vf[0], vf[1]);
          Mma<T>::run(o[2 * d + 1], pa, vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // the next iteration loads over this tile's buffer
  }

  // normalize, stage the warp's 16 rows in its own rows of the Q tile, store 16 bytes at a time
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;  // every key masked out: zeros, as the reference
  }
  cp_async_wait<0>();  // no key tiles at all: the Q tile's copies may still be in flight
  __syncthreads();
  T* so = sq + warp * 16 * LD;
#pragma unroll
  for (int d = 0; d < NO; ++d) {
    const int col = d * 8 + (lane % 4) * 2;
    *reinterpret_cast<uint32_t*>(so + (lane / 4) * LD + col) = Mma<T>::pack(o[d][0] * inv[0], o[d][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(so + (lane / 4 + 8) * LD + col) = Mma<T>::pack(o[d][2] * inv[1], o[d][3] * inv[1]);
  }
  __syncwarp();
  T* og = p.o + b * p.os[0] + h * p.os[1];
#pragma unroll
  for (int it = 0; it < NO / 2; ++it) {  // 16 rows of NO 16-byte chunks, 32 lanes
    const int c = lane + it * 32, r = c / NO, col = (c % NO) * 8;
    if (wrow0 + r < p.sq)
      *reinterpret_cast<uint4*>(og + (wrow0 + r) * p.os[2] + col) = *reinterpret_cast<const uint4*>(so + r * LD + col);
  }
}

template <typename T, typename M, int HD, int BQ, int MASK, bool CAUSAL>
inline void launch(const Params<T, M>& p, cudaStream_t stream) {
  constexpr int kSmem = (BQ + 4 * key_tile(HD)) * (HD + 8) * int(sizeof(T));  // Q tile + two K and two V tiles
  auto kernel = flash_attention_kernel<T, M, HD, BQ, MASK, CAUSAL>;
  // over 48 KiB of dynamic shared memory needs the opt-in (per device: set at every launch);
  // a failure shows up as the launch's error
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  const int64_t blocks = p.batch_heads * ((p.sq + BQ - 1) / BQ);
  gpu::launch(kernel, unsigned(blocks), BQ * 2, kSmem, stream, p);
}

}  // namespace flash

// Same arguments as attention_kernel (ait/cuda.h), which it falls back to where the 16-byte loads
// cannot be used (a pointer or a row/head/batch stride not a multiple of 16 bytes) or the head
// dims are not HD. MASK and CAUSAL are the lowering's static mask_kind and causal.
template <typename T, typename M, int HD, int MASK, bool CAUSAL>
inline void flash_attention(const T* q, const T* k, const T* v, T* o, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                            int64_t D, int64_t Dv, float scale, bool causal, int mask_kind, const M* mask,
                            int64_t msb, int64_t msh, int64_t msq, int64_t msk, int64_t qsb, int64_t qsh, int64_t qss,
                            int64_t ksb, int64_t ksh, int64_t kss, int64_t vsb, int64_t vsh, int64_t vss, int64_t osb,
                            int64_t osh, int64_t oss, cudaStream_t stream) {
  static_assert(sizeof(T) == 2 && (HD == 64 || HD == 128), "fp16/bf16 at head dim 64 or 128");
  if (B * H * Sq == 0) return;
  const int64_t strides[] = {qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, osb, osh, oss};
  bool vectors = D == HD && Dv == HD && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(o);
  for (int64_t s : strides) vectors = vectors && s % 8 == 0;
  if (!vectors) {
    launch(attention_kernel<T, M>, blocks_for(B * H * Sq * 32, 128), 128, 0, stream,
        q, k, v, o, B, H, Sq, Sk, D, Dv, scale, causal, mask_kind, mask, msb, msh, msq, msk, qsb, qsh, qss, ksb, ksh,
        kss, vsb, vsh, vss, osb, osh, oss);
    return;
  }
  const flash::Params<T, M> p{q, k, v, o, mask, H, B * H, int(Sq), int(Sk), scale * flash::kLog2e,
                              {msb, msh, msq, msk}, {qsb, qsh, qss}, {ksb, ksh, kss}, {vsb, vsh, vss}, {osb, osh, oss}};
  // 128-row blocks read each K/V tile for twice the queries; 64-row blocks are twice as many
  // (and at ~140 registers a thread three fit an SM, against one 128-row block), so they fill
  // the GPU where 128-row ones would make fewer than two waves (batch 1)
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (B * H * ((Sq + 127) / 128) >= 2 * int64_t(sms))
    flash::launch<T, M, HD, 128, MASK, CAUSAL>(p, stream);
  else
    flash::launch<T, M, HD, 64, MASK, CAUSAL>(p, stream);
}

}  // namespace gpu
}  // namespace ait
