// COCO run-length encoding from a label map: flag where the label changes in column-major order.
//
// COCO RLE walks a mask column by column (Fortran order). For a label map, the runs of every track are
// delimited by the positions where the label changes: flags[p] = 1 when pixel p (column-major) has a
// different label than pixel p - 1, and at p = 0 (where the first run starts). One pass covers every track;
// the host side compacts the flags on the device (torch.nonzero), gathers the labels on both sides of each
// change and copies only those few arrays (see gsam2_video/ops/rle.py).
#include "gsam2_common.cuh"

template <typename T>
__device__ __forceinline__ void rle_changes(const T* __restrict__ labels, u8* __restrict__ flags, int height,
                                            int width) {
  const i64 pixels = (i64)height * width;
  for (i64 p = g_thread_index(); p < pixels; p += g_thread_stride()) {
    u8 flag = 1;
    if (p > 0) {
      const i64 x = p / height;
      const i64 y = p - x * height;
      const i64 q = p - 1;  // the column-major predecessor
      const i64 qx = q / height;
      const i64 qy = q - qx * height;
      flag = labels[y * width + x] != labels[qy * width + qx] ? 1 : 0;
    }
    flags[p] = flag;
  }
}

extern "C" __global__ void rle_label_changes_u8(const u8* __restrict__ labels, u8* __restrict__ flags,
                                                int height, int width) {
  rle_changes(labels, flags, height, width);
}

extern "C" __global__ void rle_label_changes_u16(const u16* __restrict__ labels, u8* __restrict__ flags,
                                                 int height, int width) {
  rle_changes(labels, flags, height, width);
}

extern "C" __global__ void rle_label_changes_i32(const int* __restrict__ labels, u8* __restrict__ flags,
                                                 int height, int width) {
  rle_changes(labels, flags, height, width);
}
