// Column matrix of a stride-1 1-D convolution over a contiguous [B, C, T] input, written as
// [B, rows, L] so that one strided-batched GEMM  W[C_out, rows] x cols[b]  gives the output
// directly in [B, C_out, L] (candle's conv1d writes [B, L, C*K], multiplies into [B, L, C_out]
// and copies that transposed: two passes more, and its im2col reads are strided across
// channels; here every warp reads and writes consecutive time steps).
//
//   row r < C*K (r = c*K + tap): cols[b, r, l] = f(x[b, c, l + tap*dilation - padding]), 0 outside
//   row r == C*K with bias_row:  1 (the GEMM adds the bias column of W: no separate bias pass)
//   other rows up to `rows`:     0 (rows is rounded up so GEMM leading dimensions stay aligned)
//
// f is the identity, or with SNAKE the Snake1d activation x + inv_alpha[c] * sin(alpha[c] x)^2
// computed exactly as snake.cu does (f32 maths, one rounding to T), so the Snake before a conv
// costs no pass of its own. Zero padding is applied after the activation, as torch pads the
// activation's output.
//
// Grid: x over time (256 threads a block), y over rows, z over the batch: no 64-bit divisions.
// Regenerate conv_cols.ptx (nvcc 13.0, as candle's kernels; see ../../../../../shared/cuda/README.md):
//   nvcc -ptx -arch=compute_80 -O3 conv_cols.cu -o conv_cols.ptx
#include <cuda_bf16.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

template <typename T, bool SNAKE>
__device__ __forceinline__ void conv_cols(
    const T *x, const float *alpha, const float *inv_alpha, T *cols, const unsigned int channels,
    const unsigned int t_in, const unsigned int l_out, const unsigned int kernel,
    const unsigned int dilation, const unsigned int padding, const unsigned int rows,
    const unsigned int bias_row
) {
    const unsigned int l = blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= l_out) {
        return;
    }
    const unsigned int r = blockIdx.y;
    const unsigned long long b = blockIdx.z;
    const unsigned int taps = channels * kernel;
    float v = 0.0f;
    if (r < taps) {
        const unsigned int c = r / kernel;
        const long long s = (long long)l + (long long)((r % kernel) * dilation) - (long long)padding;
        if (s >= 0 && s < (long long)t_in) {
            v = to_f32(x[(b * channels + c) * t_in + (unsigned long long)s]);
            if (SNAKE) {
                const float sn = sinf(alpha[c] * v);
                v = v + inv_alpha[c] * (sn * sn);
            }
        }
    } else if (bias_row != 0 && r == taps) {
        v = 1.0f;
    }
    store(&cols[(b * rows + r) * l_out + l], v);
}

#define CONV_COLS(name, T)                                                                         \
    extern "C" __global__ void name(                                                               \
        const T *x, T *cols, const unsigned int channels, const unsigned int t_in,                 \
        const unsigned int l_out, const unsigned int kernel, const unsigned int dilation,          \
        const unsigned int padding, const unsigned int rows, const unsigned int bias_row           \
    ) {                                                                                            \
        conv_cols<T, false>(                                                                       \
            x, nullptr, nullptr, cols, channels, t_in, l_out, kernel, dilation, padding, rows,     \
            bias_row                                                                               \
        );                                                                                         \
    }

#define SNAKE_CONV_COLS(name, T)                                                                   \
    extern "C" __global__ void name(                                                               \
        const T *x, const float *alpha, const float *inv_alpha, T *cols,                           \
        const unsigned int channels, const unsigned int t_in, const unsigned int l_out,            \
        const unsigned int kernel, const unsigned int dilation, const unsigned int padding,        \
        const unsigned int rows, const unsigned int bias_row                                       \
    ) {                                                                                            \
        conv_cols<T, true>(                                                                        \
            x, alpha, inv_alpha, cols, channels, t_in, l_out, kernel, dilation, padding, rows,     \
            bias_row                                                                               \
        );                                                                                         \
    }

CONV_COLS(conv_cols_f32, float)
CONV_COLS(conv_cols_bf16, __nv_bfloat16)
SNAKE_CONV_COLS(snake_conv_cols_f32, float)
SNAKE_CONV_COLS(snake_conv_cols_bf16, __nv_bfloat16)
