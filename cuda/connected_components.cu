// Connected-component labelling (8-connectivity) with component areas, batched over B images of H x W.
//
// Lock-free union-find over pixel indices (local to each image): every foreground pixel links with its
// already-visited neighbours (left, up-left, up, up-right) by atomicMin on the roots, so each component's
// root ends up being its smallest index, i.e. its first pixel in raster order. After path compression,
// roots are flagged; the host takes an inclusive prefix sum of the flags per image (torch.cumsum) so the
// root's rank 1..K is the canonical label, the same numbering as the torch reference. Areas are counted
// with atomicAdd at the root. Any interleaving of the atomics gives the same final roots, which is why the
// sequential host emulation is a faithful test of this code.
#include "gsam2_common.cuh"

__device__ __forceinline__ int ccl_find(const int* label, int n) {
  while (label[n] != n) n = label[n];
  return n;
}

__device__ __forceinline__ void ccl_union(int* label, int a, int b) {
  bool done = false;
  while (!done) {
    a = ccl_find(label, a);
    b = ccl_find(label, b);
    if (a < b) {
      const int old = atomicMin(label + b, a);
      done = (old == b);
      b = old;
    } else if (b < a) {
      const int old = atomicMin(label + a, b);
      done = (old == a);
      a = old;
    } else {
      done = true;
    }
  }
}

extern "C" __global__ void ccl_init(int* label, int batch, int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 i = g_thread_index(); i < batch * pixels; i += g_thread_stride()) label[i] = (int)(i % pixels);
}

extern "C" __global__ void ccl_merge(const u8* __restrict__ img, int* label, int batch, int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 i = g_thread_index(); i < batch * pixels; i += g_thread_stride()) {
    if (!img[i]) continue;
    const i64 base = i - i % pixels;
    const int p = (int)(i - base);
    const int y = p / width;
    const int x = p - y * width;
    const u8* im = img + base;
    int* lab = label + base;
    if (x > 0 && im[p - 1]) ccl_union(lab, p, p - 1);
    if (y > 0) {
      if (x > 0 && im[p - width - 1]) ccl_union(lab, p, p - width - 1);
      if (im[p - width]) ccl_union(lab, p, p - width);
      if (x + 1 < width && im[p - width + 1]) ccl_union(lab, p, p - width + 1);
    }
  }
}

extern "C" __global__ void ccl_compress(const u8* __restrict__ img, int* label, int batch, int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 i = g_thread_index(); i < batch * pixels; i += g_thread_stride()) {
    if (!img[i]) continue;
    const i64 base = i - i % pixels;
    label[i] = ccl_find(label + base, (int)(i - base));
  }
}

// roots[i] = 1 where pixel i is a component root; area[base + root] counts the component's pixels.
extern "C" __global__ void ccl_count(const u8* __restrict__ img, const int* __restrict__ label, int* roots,
                                     int* area, int batch, int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 i = g_thread_index(); i < batch * pixels; i += g_thread_stride()) {
    if (!img[i]) {
      roots[i] = 0;
      continue;
    }
    const i64 base = i - i % pixels;
    const int root = label[i];
    roots[i] = (root == (int)(i - base)) ? 1 : 0;
    atomicAdd(area + base + root, 1);
  }
}

// rank = per-image inclusive prefix sum of roots: the component number of each root.
extern "C" __global__ void ccl_finalize(const u8* __restrict__ img, const int* __restrict__ label,
                                        const int* __restrict__ rank, const int* __restrict__ area,
                                        int* out_label, int* out_area, int batch, int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 i = g_thread_index(); i < batch * pixels; i += g_thread_stride()) {
    if (!img[i]) {
      out_label[i] = 0;
      out_area[i] = 0;
      continue;
    }
    const i64 root = i - i % pixels + label[i];
    out_label[i] = rank[root];
    out_area[i] = area[root];
  }
}
