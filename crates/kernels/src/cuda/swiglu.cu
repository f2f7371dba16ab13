// Fused SwiGLU for the Llama MLP on CUDA: out[r, j] = silu(gu[r, j]) * gu[r, I + j] where `gu` is
// the [rows, 2I] output of the fused gate|up projection (silu and the product in f32, one
// rounding to the storage type). Replaces the silu and mul kernels and lets gate and up be one GEMM.
// Regenerate swiglu.ptx (nvcc 13.0, as candle's kernels):
//   nvcc -ptx -arch=compute_80 -O3 swiglu.cu -o swiglu.ptx   (compute_80: JIT-compiles on A100/L40S/H100)
#include <cuda_bf16.h>

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

template <typename T>
__device__ void swiglu(const T *gu, T *out, const unsigned int inter, const unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const unsigned long long row = i / inter;
        const unsigned long long col = i % inter;
        const T *base = gu + row * 2ull * inter;
        const float g = load_f(base + col);
        const float u = load_f(base + inter + col);
        out[i] = store_f<T>(g / (1.0f + expf(-g)) * u);
    }
}

extern "C" __global__ void swiglu_f32(const float *gu, float *out, const unsigned int inter,
                                      const unsigned long long n) {
    swiglu(gu, out, inter, n);
}

extern "C" __global__ void swiglu_bf16(const __nv_bfloat16 *gu, __nv_bfloat16 *out,
                                       const unsigned int inter, const unsigned long long n) {
    swiglu(gu, out, inter, n);
}
