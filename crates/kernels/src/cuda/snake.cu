// Fused Snake1d for the codec decoder on CUDA: y = x + inv_alpha[c] * sin(alpha[c] * x)^2
// over a contiguous [B, C, T] tensor (one pass instead of five elementwise kernels), f32 or
// bf16 activations; the maths is f32 in both (alphas are f32).
// Regenerate snake.ptx (nvcc 13.0, as candle's kernels; see ../../../../../shared/cuda/README.md):
//   nvcc -ptx -arch=compute_80 -O3 snake.cu -o snake.ptx   (compute_80: JIT-compiles on A100/L40S/H100)
#include <cuda_bf16.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

template <typename T>
__device__ __forceinline__ void snake(
    const T *x, const float *alpha, const float *inv_alpha, T *y, const unsigned int channels,
    const unsigned int t, const unsigned long long n
) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const unsigned int c = (unsigned int)((i / t) % channels);
        const float v = to_f32(x[i]);
        const float s = sinf(alpha[c] * v);
        store(&y[i], v + inv_alpha[c] * (s * s));
    }
}

extern "C" __global__ void snake_f32(
    const float *x,
    const float *alpha,
    const float *inv_alpha,
    float *y,
    const unsigned int channels,
    const unsigned int t,
    const unsigned long long n
) {
    snake(x, alpha, inv_alpha, y, channels, t, n);
}

extern "C" __global__ void snake_bf16(
    const __nv_bfloat16 *x,
    const float *alpha,
    const float *inv_alpha,
    __nv_bfloat16 *y,
    const unsigned int channels,
    const unsigned int t,
    const unsigned long long n
) {
    snake(x, alpha, inv_alpha, y, channels, t, n);
}
