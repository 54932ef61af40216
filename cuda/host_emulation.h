// Host emulation of the small CUDA subset the gsam2-video kernels use, so the SAME .cu sources compile
// with g++ and run on the CPU for verification against the torch references (this machine has no GPU).
//
// - __global__ / __device__ / __forceinline__ become plain (inline) C++.
// - blockIdx, threadIdx, blockDim, gridDim are thread_local variables set by gsam2_emu_launch, which runs
//   every block and every thread of a launch sequentially (z, y, x order).
// - Atomics are plain read-modify-write operations returning the old value (sequential execution is one
//   of the interleavings a GPU may produce; the kernels are written to be correct under any of them).
// - The kernels use no shared memory and no __syncthreads, so sequential threads are faithful.
// - Float bit casts and __popc map to memcpy and the GCC builtin, the _rn arithmetic intrinsics to plain
//   IEEE operations; __CUDA_ARCH__ stays undefined, so the software half conversions in gsam2_common.cuh
//   are the ones exercised.
#pragma once
#define GSAM2_HOST_EMULATION 1

#include <math.h>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

inline thread_local uint3 blockIdx = {0, 0, 0};
inline thread_local uint3 threadIdx = {0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

inline int atomicAdd(int* p, int v) { const int old = *p; *p = old + v; return old; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { const unsigned old = *p; *p = old + v; return old; }
inline float atomicAdd(float* p, float v) { const float old = *p; *p = old + v; return old; }
inline int atomicMin(int* p, int v) { const int old = *p; if (v < old) *p = v; return old; }
inline int atomicCAS(int* p, int cmp, int v) { const int old = *p; if (old == cmp) *p = v; return old; }
inline void __syncthreads() {}

inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, sizeof u); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, sizeof f); return f; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }

// Explicitly rounded arithmetic (the kernels use them where an FMA contraction would change results): on
// the host, plain IEEE operations; g++ in ISO C++ mode (-std=c++17) does not contract a * b + c.
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }



// Run kernel(args...) for every (block, thread) of the launch. Arguments arrive as an array of pointers
// to each parameter's value, the same convention as cuLaunchKernel's kernelParams.
template <typename... A, std::size_t... I>
inline void gsam2_emu_call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
inline void gsam2_emu_launch(void (*kernel)(A...), dim3 grid, dim3 block, void** args) {
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx)
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              blockIdx = {bx, by, bz};
              threadIdx = {tx, ty, tz};
              gsam2_emu_call(kernel, args, std::index_sequence_for<A...>{});
            }
}

// Export `emu_<kernel>(gx, gy, gz, bx, by, bz, args)` with C linkage for ctypes.
#define GSAM2_EMU_EXPORT(kernel)                                                                     \
  extern "C" void emu_##kernel(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,    \
                               unsigned bz, void** args) {                                         \
    gsam2_emu_launch(&kernel, dim3(gx, gy, gz), dim3(bx, by, bz), args);                           \
  }
