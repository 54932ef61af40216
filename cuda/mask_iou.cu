// Pairwise mask overlap counts for IoU / coverage matrices between two batches of masks.
//
// Masks are first packed to 32-pixel words (one pass over the bytes); every (i, j) pair then needs only
// popcount(a_i AND b_j) over H*W/32 words, read from L2 for all pairs. Each thread sums a strided slice of
// the words and adds its partial count with one atomicAdd; no shared memory, so the host emulation runs the
// exact same code.
#include "gsam2_common.cuh"

// bits[row * words + w] holds pixels 32w .. 32w+31 of mask `row` (bit k = pixel 32w + k); tail bits are 0.
extern "C" __global__ void iou_pack_bits(const u8* __restrict__ masks, u32* __restrict__ bits, int rows,
                                         i64 pixels, i64 words) {
  for (i64 t = g_thread_index(); t < (i64)rows * words; t += g_thread_stride()) {
    const i64 row = t / words;
    const i64 start = (t - row * words) * 32;
    const u8* m = masks + row * pixels;
    u32 word = 0;
    const int n = (int)(pixels - start < 32 ? pixels - start : 32);
    for (int k = 0; k < n; ++k) word |= (m[start + k] ? 1u : 0u) << k;
    bits[t] = word;
  }
}

// counts[row] += popcount of the row's words; blockIdx.y = row, x-threads stride over the words.
extern "C" __global__ void iou_row_popcount(const u32* __restrict__ bits, int rows, i64 words, int* counts) {
  const i64 row = blockIdx.y;
  if (row >= rows) return;
  int partial = 0;
  for (i64 w = g_thread_index(); w < words; w += g_thread_stride()) partial += __popc(bits[row * words + w]);
  if (partial) atomicAdd(counts + row, partial);
}

// inter[i * m + j] += |a_i AND b_j|; blockIdx.x = pair, blockIdx.y and threadIdx.x stride over the words.
extern "C" __global__ void iou_pair_intersections(const u32* __restrict__ a, const u32* __restrict__ b, int n,
                                                  int m, i64 words, int* inter) {
  const i64 pair = blockIdx.x;
  if (pair >= (i64)n * m) return;
  const i64 i = pair / m;
  const i64 j = pair - i * m;
  const u32* ra = a + i * words;
  const u32* rb = b + j * words;
  int partial = 0;
  const i64 stride = (i64)blockDim.x * gridDim.y;
  for (i64 w = (i64)blockIdx.y * blockDim.x + threadIdx.x; w < words; w += stride) partial += __popc(ra[w] & rb[w]);
  if (partial) atomicAdd(inter + pair, partial);
}
