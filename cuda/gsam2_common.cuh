// Shared helpers for the gsam2-video kernels: fixed-width aliases, float bit casts, and storage types for
// fp32 / fp16 / bf16 tensors. Half and bfloat16 are stored as raw 16-bit patterns and converted by hand so
// the same source compiles under NVRTC (no cuda_fp16.h needed) and under the host-emulation header with
// g++. On the device, half conversions use the hardware cvt instructions; on the host, an exact software
// conversion (round to nearest even) that the emulation tests compare against torch.
#pragma once

typedef long long i64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

__device__ __forceinline__ float g_half_to_float(u16 h) {
#ifdef __CUDA_ARCH__
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  const u32 sign = (u32)(h >> 15) << 31;
  const u32 exp = (h >> 10) & 0x1fu;
  const u32 mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24 is exact in float
    const float f = (float)mant * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
#endif
}

__device__ __forceinline__ u16 g_float_to_half(float f) {
#ifdef __CUDA_ARCH__
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  const u32 x = __float_as_uint(f);
  const u32 sign = (x >> 16) & 0x8000u;
  const u32 ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (u16)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (ax >= 0x477ff000u) return (u16)(sign | 0x7c00u);  // rounds past 65504 -> inf
  if (ax < 0x38800000u) {                                // below 2^-14: subnormal half or zero
    if (ax < 0x33000000u) return (u16)sign;              // below 2^-25 rounds to zero
    const u32 e = ax >> 23;
    const u32 m = (ax & 0x7fffffu) | 0x800000u;
    const u32 shift = 126u - e;
    u32 r = m >> shift;
    const u32 rem = m & ((1u << shift) - 1u);
    const u32 half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return (u16)(sign | r);
  }
  const u32 rebased = ax - 0x38000000u;
  u32 h = rebased >> 13;
  const u32 rem = rebased & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return (u16)(sign | h);
#endif
}

__device__ __forceinline__ float g_bf16_to_float(u16 b) { return __uint_as_float((u32)b << 16); }

__device__ __forceinline__ u16 g_float_to_bf16(float f) {
  u32 x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);                                      // round to nearest even
  return (u16)(x >> 16);
}

// Storage traits: how a tensor element is held in memory and converted to/from the fp32 accumulator.
struct StoreF32 {
  typedef float storage;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
struct StoreF16 {
  typedef u16 storage;
  static __device__ __forceinline__ float load(u16 v) { return g_half_to_float(v); }
  static __device__ __forceinline__ u16 store(float v) { return g_float_to_half(v); }
};
struct StoreBF16 {
  typedef u16 storage;
  static __device__ __forceinline__ float load(u16 v) { return g_bf16_to_float(v); }
  static __device__ __forceinline__ u16 store(float v) { return g_float_to_bf16(v); }
};

// V consecutive elements moved with one aligned (vector) load or store.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Grid-stride loop index helpers (64-bit so large batches never overflow).
__device__ __forceinline__ i64 g_thread_index() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 g_thread_stride() { return (i64)blockDim.x * gridDim.x; }
