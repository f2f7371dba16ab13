// Fused Snake1d for the codec decoder on CUDA: y = x + inv_alpha[c] * sin(alpha[c] * x)^2
// over a contiguous f32 [B, C, T] tensor (one pass instead of five elementwise kernels).
// Regenerate snake.ptx (nvcc 13.0, as candle's kernels; see ../../../../../shared/cuda/README.md):
//   nvcc -ptx -arch=compute_80 -O3 snake.cu -o snake.ptx   (compute_80: JIT-compiles on A100/L40S/H100)
extern "C" __global__ void snake_f32(
    const float *x,
    const float *alpha,
    const float *inv_alpha,
    float *y,
    const unsigned int channels,
    const unsigned int t,
    const unsigned long long n
) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        const unsigned int c = (unsigned int)((i / t) % channels);
        const float v = x[i];
        const float s = sinf(alpha[c] * v);
        y[i] = v + inv_alpha[c] * (s * s);
    }
}
