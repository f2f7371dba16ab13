// Fused sampling of logits rows (temperature -> top-k -> top-p -> softmax -> inverse-CDF draw, or
// argmax when greedy): one block per row, the whole row sorted in shared memory, then one thread
// walks it in exactly the order the host sampler (`higgs_engine::sampling::sample_row`) adds its
// floats, so both give the same id for the same uniform up to the last ulp of expf. It replaces a
// chain of ~25 candle ops (each a launch, several with a host->device copy) with one launch and
// one small parameter upload.
//
// Regenerate sample.ptx (nvcc 13.0; compute_80 so that the PTX also JIT-compiles on A100/L40S):
//   nvcc -ptx -arch=compute_80 -O3 sample.cu -o sample.ptx

#include <stdint.h>

#define SORT_N 2048 // widest row (audio rows are 1,026); the caller checks cols <= SORT_N
#define NEG_INF (-__int_as_float(0x7f800000))

// Sort order: descending value, ascending index on ties; padding (index INT_MAX) last.
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
    if (va != vb) return va > vb;
    return ia < ib;
}

// params: [rows, 4] = temperature (<= 0: greedy), top_k (0: off), top_p (>= 1: off), uniform.
extern "C" __global__ void sample_rows_f32(const float* __restrict__ logits,
                                           const float* __restrict__ params,
                                           uint32_t* __restrict__ out, int rows, int cols) {
    __shared__ float val[SORT_N];
    __shared__ int idx[SORT_N];
    __shared__ float ex[SORT_N];           // exp(v - max) of kept entries, by vocabulary index
    __shared__ unsigned char gone[SORT_N]; // removed by top-p, by sorted position
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* x = logits + (size_t)r * cols;
    const float temp = params[r * 4 + 0];
    const int top_k = (int)params[r * 4 + 1];
    const float top_p = params[r * 4 + 2];
    const float u = params[r * 4 + 3];
    const bool greedy = temp <= 0.0f;
    const bool scale = !greedy && temp != 1.0f;
    for (int i = threadIdx.x; i < SORT_N; i += blockDim.x) {
        if (i < cols) {
            const float v = x[i];
            val[i] = scale ? v / temp : v;
            idx[i] = i;
        } else {
            val[i] = NEG_INF;
            idx[i] = 0x7fffffff;
        }
        ex[i] = 0.0f;
        gone[i] = 0;
    }
    __syncthreads();
    // Bitonic sort of (val, idx) pairs.
    for (int k = 2; k <= SORT_N; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < SORT_N; i += blockDim.x) {
                const int l = i ^ j;
                if (l > i) {
                    const float vi = val[i], vl = val[l];
                    const int ii = idx[i], il = idx[l];
                    const bool up = (i & k) == 0;
                    const bool swap = up ? before(vl, il, vi, ii) : before(vi, ii, vl, il);
                    if (swap) {
                        val[i] = vl;
                        val[l] = vi;
                        idx[i] = il;
                        idx[l] = ii;
                    }
                }
            }
            __syncthreads();
        }
    }
    if (threadIdx.x != 0) return;
    if (greedy) { // argmax, first index on ties
        out[r] = (uint32_t)idx[0];
        return;
    }
    int finite = 0;
    while (finite < cols && val[finite] != NEG_INF) finite++;
    if (finite == 0) { // everything masked: the host falls back to uniform; take the first entry
        out[r] = (uint32_t)idx[0];
        return;
    }
    // top-k keeps every entry >= the k-th largest (ties included): a prefix of the sorted row.
    int n = finite;
    if (top_k > 0) {
        const float kth = val[(top_k < cols ? top_k : cols) - 1];
        int m = 0;
        while (m < cols && val[m] >= kth) m++;
        if (m < n) n = m;
    }
    const float mx = val[0];
    if (top_p < 1.0f) {
        // The host walks the kept entries in ascending order (ties by ascending index): value
        // groups from the end of the prefix, each group forwards.
        float sum = 0.0f;
        for (int end = n; end > 0;) {
            int start = end - 1;
            while (start > 0 && val[start - 1] == val[end - 1]) start--;
            for (int p = start; p < end; p++) sum += expf(val[p] - mx);
            end = start;
        }
        float cum = 0.0f;
        int seen = 0;
        for (int end = n; end > 0;) {
            int start = end - 1;
            while (start > 0 && val[start - 1] == val[end - 1]) start--;
            for (int p = start; p < end; p++) {
                cum += expf(val[p] - mx) / sum;
                seen++;
                if (cum <= 1.0f - top_p && seen != n) gone[p] = 1;
            }
            end = start;
        }
    }
    // Softmax over the whole row, summed in vocabulary order as the host does.
    for (int p = 0; p < n; p++)
        if (!gone[p]) ex[idx[p]] = expf(val[p] - mx);
    float sum = 0.0f;
    for (int i = 0; i < cols; i++) sum += ex[i];
    // Inverse-CDF draw over the entries with p > 0, most probable first.
    float total = 0.0f;
    for (int p = 0; p < n; p++) {
        if (gone[p]) continue;
        const float q = ex[idx[p]] / sum;
        if (q > 0.0f) total += q;
    }
    const float target = u * total;
    float acc = 0.0f;
    int last = idx[0];
    for (int p = 0; p < n; p++) {
        if (gone[p]) continue;
        const float q = ex[idx[p]] / sum;
        if (!(q > 0.0f)) continue;
        acc += q;
        last = idx[p];
        if (acc > target) {
            out[r] = (uint32_t)idx[p];
            return;
        }
    }
    out[r] = (uint32_t)last;
}
