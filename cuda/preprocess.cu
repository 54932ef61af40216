// SAM 2 frame preprocessing on the device, bit-exact with Meta's reference (PIL bicubic + ImageNet norm).
//
// Meta's video predictor resizes the uint8 RGB frame with PIL's bicubic filter, divides by 255 in double,
// stores float32 and normalises with the ImageNet mean/std in float32. PIL resamples 8-bit images in integer
// fixed point, so a float resize cannot match it; these kernels reimplement PIL's 8-bit algorithm:
//
// * Coefficients per output index (pp_coeffs), in double, as PIL computes them: scale = in / out,
//   filterscale = max(scale, 1), support = 2 * filterscale, center = (i + 0.5) * scale, taps from
//   xmin = max(int(center - support + 0.5), 0) to min(int(center + support + 0.5), in), tap weight
//   bicubic((j + xmin - center + 0.5) / filterscale) with a = -0.5, normalised by their sequential sum, then
//   converted to fixed point with 22 fraction bits (32 - 8 - 2), rounding half away from zero.
// * Two separable passes, horizontal first, each accumulating in int32 from 2^21 (the rounding half) and
//   clipping (acc >> 22) to 0..255, so the intermediate image is uint8 as in PIL. A pass whose size does
//   not change is skipped (PIL does the same). PIL runs the horizontal pass only on the rows the vertical
//   pass reads; rows are independent, so running it on every row gives the same pixels.
// * pp_normalize: (float)(v / 255.0 in double), minus mean, divided by std, in float32, HWC -> CHW.
//
// Every double operation is an explicit _rn intrinsic: plain a * b + c may be contracted into an FMA by
// nvcc, which rounds once instead of twice and would move a coefficient by one unit in rare cases. The
// host emulation maps the intrinsics to plain IEEE operations (g++ in ISO C++ mode does not contract).
#include "gsam2_common.cuh"

#define PP_PRECISION_BITS 22
#define PP_FIXED_ONE 4194304.0  // 2^22

__device__ __forceinline__ double pp_bicubic(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return __dadd_rn(__dmul_rn(__dmul_rn(__dsub_rn(__dmul_rn(1.5, x), 2.5), x), x), 1.0);
  if (x < 2.0) {
    return __dmul_rn(__dsub_rn(__dmul_rn(__dadd_rn(__dmul_rn(__dsub_rn(x, 5.0), x), 8.0), x), 4.0), -0.5);
  }
  return 0.0;
}

__device__ __forceinline__ double pp_tap(int j, double center, double inv_filterscale) {
  return pp_bicubic(__dmul_rn(__dadd_rn(__dsub_rn((double)j, center), 0.5), inv_filterscale));
}

// bounds[2 i] = first input index, bounds[2 i + 1] = number of taps; kk[i * ksize + t] = fixed-point weight.
extern "C" __global__ void pp_coeffs(int in_size, int out_size, int ksize, int* __restrict__ bounds,
                                     int* __restrict__ kk) {
  for (i64 t = g_thread_index(); t < (i64)out_size; t += g_thread_stride()) {
    const int i = (int)t;
    const double scale = __ddiv_rn((double)in_size, (double)out_size);
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = __dmul_rn(2.0, filterscale);
    const double center = __dmul_rn(__dadd_rn((double)i, 0.5), scale);
    const double inv = __ddiv_rn(1.0, filterscale);
    int xmin = (int)__dadd_rn(__dsub_rn(center, support), 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)__dadd_rn(__dadd_rn(center, support), 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) ww = __dadd_rn(ww, pp_tap(x + xmin, center, inv));
    int* k = kk + (i64)i * ksize;
    for (int x = 0; x < ksize; ++x) {
      if (x >= xmax) {
        k[x] = 0;
        continue;
      }
      double w = pp_tap(x + xmin, center, inv);
      if (ww != 0.0) w = __ddiv_rn(w, ww);
      const double scaled = __dmul_rn(w, PP_FIXED_ONE);
      k[x] = w < 0.0 ? (int)__dadd_rn(-0.5, scaled) : (int)__dadd_rn(0.5, scaled);
    }
    bounds[2 * i] = xmin;
    bounds[2 * i + 1] = xmax;
  }
}

__device__ __forceinline__ u8 pp_clip8(int acc) {
  const int v = acc >> PP_PRECISION_BITS;  // arithmetic shift: floor division, as PIL's lookup index
  return (u8)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// src rows x in_w x C -> dst rows x out_w x C (one thread per output value).
extern "C" __global__ void pp_resample_horizontal(const u8* __restrict__ src, u8* __restrict__ dst, int rows,
                                                  int in_w, int out_w, int channels,
                                                  const int* __restrict__ bounds, const int* __restrict__ kk,
                                                  int ksize) {
  const i64 total = (i64)rows * out_w * channels;
  for (i64 t = g_thread_index(); t < total; t += g_thread_stride()) {
    const int c = (int)(t % channels);
    const i64 p = t / channels;
    const int xx = (int)(p % out_w);
    const i64 row = p / out_w;
    const int xmin = bounds[2 * xx];
    const int taps = bounds[2 * xx + 1];
    const int* k = kk + (i64)xx * ksize;
    const u8* line = src + (row * in_w + xmin) * channels + c;
    int acc = 1 << (PP_PRECISION_BITS - 1);
    for (int x = 0; x < taps; ++x) acc += (int)line[(i64)x * channels] * k[x];
    dst[t] = pp_clip8(acc);
  }
}

// src in_h x width x C -> dst out_h x width x C (one thread per output value).
extern "C" __global__ void pp_resample_vertical(const u8* __restrict__ src, u8* __restrict__ dst, int out_h,
                                                int width, int channels, const int* __restrict__ bounds,
                                                const int* __restrict__ kk, int ksize) {
  const i64 row_len = (i64)width * channels;
  const i64 total = (i64)out_h * row_len;
  for (i64 t = g_thread_index(); t < total; t += g_thread_stride()) {
    const int yy = (int)(t / row_len);
    const i64 col = t - (i64)yy * row_len;
    const int ymin = bounds[2 * yy];
    const int taps = bounds[2 * yy + 1];
    const int* k = kk + (i64)yy * ksize;
    const u8* column = src + (i64)ymin * row_len + col;
    int acc = 1 << (PP_PRECISION_BITS - 1);
    for (int y = 0; y < taps; ++y) acc += (int)column[(i64)y * row_len] * k[y];
    dst[t] = pp_clip8(acc);
  }
}

// uint8 H x W x 3 -> float32 3 x H x W: ((float)(v / 255.0) - mean[c]) / std[c], each step rounded as torch.
extern "C" __global__ void pp_normalize(const u8* __restrict__ src, float* __restrict__ dst, int pixels,
                                        float mean0, float mean1, float mean2, float std0, float std1,
                                        float std2) {
  for (i64 t = g_thread_index(); t < (i64)pixels * 3; t += g_thread_stride()) {
    const int c = (int)(t / pixels);
    const i64 p = t - (i64)c * pixels;
    const float mean = c == 0 ? mean0 : (c == 1 ? mean1 : mean2);
    const float stdev = c == 0 ? std0 : (c == 1 ? std1 : std2);
    const float v = (float)__ddiv_rn((double)src[p * 3 + c], 255.0);
    dst[t] = __fdiv_rn(__fsub_rn(v, mean), stdev);
  }
}
