// Fused kernels of the graphed audio decode step (one position per slot of 0..rows), replacing
// chains of small candle kernels: each node of a CUDA graph costs a few microseconds even when
// its work is tiny, and a decode step of the full model is ~28 layers x ~20 such nodes.
//
// decode_qkv_*: after the fused q|k|v GEMM, RoPE on q and k (rotate-half, as candle's rope_thd,
//   computed in f32 with one rounding), q written out, k and v written into the slot cache at each
//   row's write position (u32::MAX: no write). Replaces rope(q), rope(k) and two scatters.
// decode_softmax_*: scale, mask keys at or past the row's length, softmax in f32, one rounding.
//   Replaces scale, cast to f32, mask add, softmax and the cast back.
// add_rmsnorm_*: r = x + y (rounded to T) and rmsnorm(r) * w (as candle's rmsnorm: f32 sum of
//   squares, scale * r * w, one rounding) in one pass. Replaces a residual add and an RMSNorm.
// kv_write_rows_*: the K/V cache write of every prefill piece of a step (row gather + scatter).
//
// Regenerate decode.ptx (nvcc 13.0; compute_80 so that the PTX also JIT-compiles on A100/L40S):
//   nvcc -ptx -arch=compute_80 -O3 decode.cu -o decode.ptx
#include <cuda_bf16.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float load_f(const T *p);
template <> __device__ __forceinline__ float load_f<float>(const float *p) { return *p; }
template <> __device__ __forceinline__ float load_f<__nv_bfloat16>(const __nv_bfloat16 *p) {
    return __bfloat162float(*p);
}
template <typename T> __device__ __forceinline__ T store_f(float v);
template <> __device__ __forceinline__ float store_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 store_f<__nv_bfloat16>(float v) {
    return __float2bfloat16(v);
}

// One thread per (row, head, i < hd/2) over nh query heads, nkv key heads and nkv value heads.
// qkv: [rows, (nh + 2 nkv) hd]; cos, sin: [rows, hd/2]; q_out: [rows, nh hd];
// k_cache, v_cache: [slots >= rows, nkv, max_len, hd] (the layer's cache, slot 0 first).
template <typename T>
__device__ void decode_qkv(const T *qkv, const T *cos, const T *sin, const uint32_t *write_pos,
                           T *q_out, T *k_cache, T *v_cache, const uint32_t rows,
                           const uint32_t nh, const uint32_t nkv, const uint32_t hd,
                           const uint32_t max_len) {
    const uint32_t half = hd / 2;
    const uint32_t heads = nh + 2 * nkv;
    const uint64_t total = (uint64_t)rows * heads * half;
    for (uint64_t idx = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; idx < total;
         idx += (uint64_t)blockDim.x * gridDim.x) {
        const uint32_t i = idx % half;
        const uint32_t head = (idx / half) % heads;
        const uint32_t r = idx / ((uint64_t)half * heads);
        const T *src = qkv + (uint64_t)r * heads * hd + (uint64_t)head * hd;
        const float x1 = load_f(src + i);
        const float x2 = load_f(src + i + half);
        if (head < nh + nkv) {
            const float c = load_f(cos + (uint64_t)r * half + i);
            const float s = load_f(sin + (uint64_t)r * half + i);
            const float y1 = x1 * c - x2 * s;
            const float y2 = x1 * s + x2 * c;
            if (head < nh) {
                T *dst = q_out + (uint64_t)r * nh * hd + (uint64_t)head * hd;
                dst[i] = store_f<T>(y1);
                dst[i + half] = store_f<T>(y2);
            } else {
                const uint32_t pos = write_pos[r];
                if (pos != 0xffffffffu) {
                    const uint32_t g = head - nh;
                    T *dst = k_cache + (((uint64_t)r * nkv + g) * max_len + pos) * hd;
                    dst[i] = store_f<T>(y1);
                    dst[i + half] = store_f<T>(y2);
                }
            }
        } else {
            const uint32_t pos = write_pos[r];
            if (pos != 0xffffffffu) {
                const uint32_t g = head - nh - nkv;
                T *dst = v_cache + (((uint64_t)r * nkv + g) * max_len + pos) * hd;
                dst[i] = src[i];
                dst[i + half] = src[i + half];
            }
        }
    }
}

// One block per score row; scores/probs: [rows * heads_per_row, keys], row r of the batch owns
// heads_per_row consecutive score rows; keys j >= lens[r] get probability 0 (as an additive
// f32::MIN mask gives). Scale, max, exp and sum in f32.
template <typename T>
__device__ void decode_softmax(const T *scores, T *probs, const uint32_t *lens, const float scale,
                               const uint32_t heads_per_row, const uint32_t keys) {
    __shared__ float red[32];
    const uint64_t row = blockIdx.x;
    const uint32_t len = min(lens[row / heads_per_row], keys);
    const T *x = scores + row * keys;
    T *y = probs + row * keys;
    const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;

    float m = -INFINITY;
    for (uint32_t j = threadIdx.x; j < len; j += blockDim.x) {
        m = fmaxf(m, load_f<T>(x + j) * scale);
    }
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = lane < nwarps ? red[lane] : -INFINITY;
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    __syncthreads();

    float s = 0.0f;
    for (uint32_t j = threadIdx.x; j < len; j += blockDim.x) {
        s += expf(load_f<T>(x + j) * scale - m);
    }
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) red[warp] = s;
    __syncthreads();
    s = lane < nwarps ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float inv = 1.0f / s;

    for (uint32_t j = threadIdx.x; j < keys; j += blockDim.x) {
        y[j] = store_f<T>(j < len ? expf(load_f<T>(x + j) * scale - m) * inv : 0.0f);
    }
}

// One block per row of [rows, ncols]; out: [2, rows, ncols] = (r, rmsnorm(r) * w).
template <typename T>
__device__ void add_rmsnorm(const T *x, const T *y, const T *w, T *out, const uint32_t rows,
                            const uint32_t ncols, const float eps) {
    __shared__ float red[32];
    const uint64_t row = blockIdx.x;
    const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    T *r = out + row * ncols;
    T *h = out + ((uint64_t)rows + row) * ncols;
    float ss = 0.0f;
    for (uint32_t j = threadIdx.x; j < ncols; j += blockDim.x) {
        const T v = store_f<T>(load_f<T>(x + row * ncols + j) + load_f<T>(y + row * ncols + j));
        r[j] = v;
        const float f = load_f<T>(&v);
        ss += f * f;
    }
    for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    ss = lane < nwarps ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float scale = rsqrtf(ss / ncols + eps);
    // Each thread reads back only the elements it wrote itself.
    for (uint32_t j = threadIdx.x; j < ncols; j += blockDim.x) {
        h[j] = store_f<T>(scale * load_f<T>(r + j) * load_f<T>(w + j));
    }
}

// One thread per (piece row, KV head, i < hd): row `rows[r]` of `src` ([N, nkv hd], contiguous)
// goes to row `dst_rows[r nkv + g]` of the layer's cache viewed as [slots nkv max_len, hd]. The
// K/V cache write of all prefill pieces of a step in one launch. candle's scatter cannot do this
// well: its kernel runs one thread per element of the non-scattered dims (here head_dim = 128
// threads) and walks the scattered dim serially, so a prefill of thousands of rows took
// milliseconds per layer.
template <typename T>
__device__ void kv_write_rows(const T *src, const uint32_t *rows, const uint32_t *dst_rows,
                              T *cache, const uint32_t m, const uint32_t nkv, const uint32_t hd) {
    const uint64_t total = (uint64_t)m * nkv * hd;
    for (uint64_t idx = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; idx < total;
         idx += (uint64_t)blockDim.x * gridDim.x) {
        const uint32_t d = idx % hd;
        const uint64_t rg = idx / hd; // r * nkv + g
        const uint32_t g = rg % nkv;
        const uint32_t r = rg / nkv;
        cache[(uint64_t)dst_rows[rg] * hd + d] = src[((uint64_t)rows[r] * nkv + g) * hd + d];
    }
}

#define DECODE_OPS(T, SUFFIX)                                                                    \
    extern "C" __global__ void decode_qkv_##SUFFIX(                                              \
        const T *qkv, const T *cos, const T *sin, const uint32_t *write_pos, T *q_out,           \
        T *k_cache, T *v_cache, const uint32_t rows, const uint32_t nh, const uint32_t nkv,      \
        const uint32_t hd, const uint32_t max_len) {                                             \
        decode_qkv<T>(qkv, cos, sin, write_pos, q_out, k_cache, v_cache, rows, nh, nkv, hd,      \
                      max_len);                                                                  \
    }                                                                                            \
    extern "C" __global__ void decode_softmax_##SUFFIX(const T *scores, T *probs,                \
                                                       const uint32_t *lens, const float scale,  \
                                                       const uint32_t heads_per_row,             \
                                                       const uint32_t keys) {                    \
        decode_softmax<T>(scores, probs, lens, scale, heads_per_row, keys);                      \
    }                                                                                            \
    extern "C" __global__ void add_rmsnorm_##SUFFIX(const T *x, const T *y, const T *w, T *out,  \
                                                    const uint32_t rows, const uint32_t ncols,   \
                                                    const float eps) {                           \
        add_rmsnorm<T>(x, y, w, out, rows, ncols, eps);                                          \
    }                                                                                            \
    extern "C" __global__ void kv_write_rows_##SUFFIX(const T *src, const uint32_t *rows,        \
                                                      const uint32_t *dst_rows, T *cache,        \
                                                      const uint32_t m, const uint32_t nkv,      \
                                                      const uint32_t hd) {                       \
        kv_write_rows<T>(src, rows, dst_rows, cache, m, nkv, hd);                                \
    }

DECODE_OPS(float, f32)
DECODE_OPS(__nv_bfloat16, bf16)
