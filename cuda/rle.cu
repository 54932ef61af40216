// COCO run-length encoding support: flag where each column-major run starts.
//
// COCO RLE walks a mask column by column (Fortran order) and alternates run lengths starting with a run of
// zeros. starts[n * P + p] = 1 when pixel p (column-major) differs from pixel p - 1, and at p = 0 when the
// first pixel is foreground (the leading zero run is then empty). The host compacts the flags
// (torch.nonzero) into run lengths; pycocotools only compresses those lengths to its string form.
#include "gsam2_common.cuh"

extern "C" __global__ void rle_run_starts(const u8* __restrict__ masks, u8* __restrict__ starts, int n,
                                          int height, int width) {
  const i64 pixels = (i64)height * width;
  for (i64 t = g_thread_index(); t < (i64)n * pixels; t += g_thread_stride()) {
    const i64 k = t / pixels;
    const i64 p = t - k * pixels;  // column-major position: x = p / height, y = p % height
    const u8* m = masks + k * pixels;
    const i64 x = p / height;
    const i64 y = p - x * height;
    const u8 cur = m[y * width + x] ? 1 : 0;
    u8 flag;
    if (p == 0) {
      flag = cur;
    } else {
      const i64 px = (p - 1) / height;
      const i64 py = (p - 1) - px * height;
      flag = (u8)(cur != (m[py * width + px] ? 1 : 0));
    }
    starts[t] = flag;
  }
}
