// Fused frame preprocessing: uint8 B x H x W x C frames -> resized, normalised float B x C x h x w.
//
// One thread per output pixel, all channels (C <= 4) at once. The resize is the antialiased separable
// filter torch uses with antialias=True (PIL's filters): for output index i, scale s = in / out,
// center = s * (i + 0.5), support = r * max(s, 1) (r = 2 bicubic, 1 bilinear), taps from
// max(int(center - support + 0.5), 0) to min(int(center + support + 0.5), in), tap weight
// filter((j - center + 0.5) / max(s, 1)) normalised to sum 1. The horizontal sum is taken first, then the
// vertical one, as torch does; the result is clamped to [0, 255] and normalised as (v / 255 - mean) / std.
#include "gsam2_common.cuh"

__device__ __forceinline__ float pp_cubic(float x) {  // a = -0.5, PIL's bicubic
  const float a = -0.5f;
  x = fabsf(x);
  if (x < 1.f) return ((a + 2.f) * x - (a + 3.f)) * x * x + 1.f;
  if (x < 2.f) return (((x - 5.f) * x + 8.f) * x - 4.f) * a;
  return 0.f;
}

__device__ __forceinline__ float pp_triangle(float x) {
  x = fabsf(x);
  return x < 1.f ? 1.f - x : 0.f;
}

__device__ __forceinline__ float pp_filter(float x, int cubic) { return cubic ? pp_cubic(x) : pp_triangle(x); }

struct PPWindow {
  int lo;
  int n;
  float center;
  float inv;
  float total;
};

__device__ __forceinline__ PPWindow pp_window(int i, int in_size, int out_size, int cubic) {
  const float scale = (float)in_size / (float)out_size;
  const float radius = cubic ? 2.f : 1.f;
  const float support = scale >= 1.f ? radius * scale : radius;
  PPWindow w;
  w.center = scale * ((float)i + 0.5f);
  w.inv = scale >= 1.f ? 1.f / scale : 1.f;
  const int lo = (int)(w.center - support + 0.5f);
  w.lo = lo > 0 ? lo : 0;
  const int hi = (int)(w.center + support + 0.5f);
  w.n = (hi < in_size ? hi : in_size) - w.lo;
  w.total = 0.f;
  for (int j = 0; j < w.n; ++j) w.total += pp_filter(((float)(j + w.lo) - w.center + 0.5f) * w.inv, cubic);
  return w;
}

__device__ __forceinline__ float pp_weight(const PPWindow& w, int j, int cubic) {
  const float f = pp_filter(((float)(j + w.lo) - w.center + 0.5f) * w.inv, cubic);
  return w.total != 0.f ? f / w.total : f;
}

extern "C" __global__ void preprocess_resize_normalize(const u8* __restrict__ src, float* __restrict__ dst,
                                                       int batch, int in_h, int in_w, int channels, int out_h,
                                                       int out_w, const float* __restrict__ mean,
                                                       const float* __restrict__ stdev, int cubic) {
  const i64 plane = (i64)out_h * out_w;
  for (i64 t = g_thread_index(); t < (i64)batch * plane; t += g_thread_stride()) {
    const i64 b = t / plane;
    const int oy = (int)((t - b * plane) / out_w);
    const int ox = (int)(t - b * plane - (i64)oy * out_w);
    const PPWindow wy = pp_window(oy, in_h, out_h, cubic);
    const PPWindow wx = pp_window(ox, in_w, out_w, cubic);
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    const u8* img = src + b * in_h * (i64)in_w * channels;
    for (int jy = 0; jy < wy.n; ++jy) {
      const float ky = pp_weight(wy, jy, cubic);
      const u8* row = img + (i64)(wy.lo + jy) * in_w * channels;
      float line[4] = {0.f, 0.f, 0.f, 0.f};
      for (int jx = 0; jx < wx.n; ++jx) {
        const float kx = pp_weight(wx, jx, cubic);
        const u8* px = row + (i64)(wx.lo + jx) * channels;
        for (int c = 0; c < channels; ++c) line[c] += kx * (float)px[c];
      }
      for (int c = 0; c < channels; ++c) acc[c] += ky * line[c];
    }
    for (int c = 0; c < channels; ++c) {
      float v = acc[c];
      v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
      dst[((b * channels + c) * (i64)out_h + oy) * out_w + ox] = (v / 255.f - mean[c]) / stdev[c];
    }
  }
}
