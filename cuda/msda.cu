// Multi-scale deformable attention forward (Deformable DETR / Grounding DINO).
//
// One thread owns V consecutive channels of one (batch, query, head): it walks every level and sampling
// point, bilinearly samples the value map with grid_sample's rule (align_corners=False, zero padding:
// location u maps to pixel u * size - 0.5, taps outside the map read zero), and accumulates
// weight * sample in fp32 registers. Nothing per point is written to memory, unlike the grid_sample path
// that materialises every sampled value. Value and output use the storage type S (fp32, fp16 or bf16);
// sampling locations and attention weights arrive as fp32. V-wide channel packs give 8- or 16-byte loads.
#include "gsam2_common.cuh"

template <typename S, int V>
__device__ __forceinline__ void msda_forward(
    const typename S::storage* __restrict__ value, const i64* __restrict__ shapes,
    const i64* __restrict__ starts, const float* __restrict__ loc, const float* __restrict__ attn,
    typename S::storage* __restrict__ out, int batch, int tokens, int heads, int channels, int queries,
    int levels, int points) {
  typedef typename S::storage T;
  const i64 groups = channels / V;
  const i64 total = (i64)batch * queries * heads * groups;
  const i64 token_stride = (i64)heads * channels;
  for (i64 t = g_thread_index(); t < total; t += g_thread_stride()) {
    const i64 g = t % groups;
    i64 r = t / groups;
    const i64 h = r % heads;
    r /= heads;
    const i64 q = r % queries;
    const i64 b = r / queries;
    float acc[V];
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    const i64 head_row = (b * queries + q) * heads + h;
    const float* lp = loc + head_row * levels * points * 2;
    const float* ap = attn + head_row * levels * points;
    for (int l = 0; l < levels; ++l) {
      const int hl = (int)shapes[2 * l];
      const int wl = (int)shapes[2 * l + 1];
      const T* vbase = value + (b * tokens + starts[l]) * token_stride + h * channels + g * V;
      for (int p = 0; p < points; ++p) {
        const int k = l * points + p;
        const float w = ap[k];
        const float x = lp[2 * k] * (float)wl - 0.5f;
        const float y = lp[2 * k + 1] * (float)hl - 0.5f;
        if (!(x > -1.f && x < (float)wl && y > -1.f && y < (float)hl)) continue;  // every tap outside
        const float x0f = floorf(x);
        const float y0f = floorf(y);
        const int x0 = (int)x0f;
        const int y0 = (int)y0f;
        const float fx = x - x0f;
        const float fy = y - y0f;
        const float cw[4] = {(1.f - fy) * (1.f - fx) * w, (1.f - fy) * fx * w, fy * (1.f - fx) * w, fy * fx * w};
        for (int c = 0; c < 4; ++c) {
          const int yy = y0 + (c >> 1);
          const int xx = x0 + (c & 1);
          if (yy < 0 || yy >= hl || xx < 0 || xx >= wl) continue;
          const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(vbase + ((i64)yy * wl + xx) * token_stride);
          for (int v = 0; v < V; ++v) acc[v] += cw[c] * S::load(pk.v[v]);
        }
      }
    }
    Pack<T, V> res;
    for (int v = 0; v < V; ++v) res.v[v] = S::store(acc[v]);
    *reinterpret_cast<Pack<T, V>*>(out + head_row * channels + g * V) = res;
  }
}

#define GSAM2_MSDA_ENTRY(NAME, STORE, V)                                                                   \
  extern "C" __global__ void NAME(const STORE::storage* value, const i64* shapes, const i64* starts,       \
                                  const float* loc, const float* attn, STORE::storage* out, int batch,     \
                                  int tokens, int heads, int channels, int queries, int levels,            \
                                  int points) {                                                            \
    msda_forward<STORE, V>(value, shapes, starts, loc, attn, out, batch, tokens, heads, channels, queries, \
                           levels, points);                                                                \
  }

GSAM2_MSDA_ENTRY(msda_forward_f32_v1, StoreF32, 1)
GSAM2_MSDA_ENTRY(msda_forward_f32_v2, StoreF32, 2)
GSAM2_MSDA_ENTRY(msda_forward_f32_v4, StoreF32, 4)
GSAM2_MSDA_ENTRY(msda_forward_f16_v1, StoreF16, 1)
GSAM2_MSDA_ENTRY(msda_forward_f16_v2, StoreF16, 2)
GSAM2_MSDA_ENTRY(msda_forward_f16_v4, StoreF16, 4)
GSAM2_MSDA_ENTRY(msda_forward_f16_v8, StoreF16, 8)
GSAM2_MSDA_ENTRY(msda_forward_bf16_v1, StoreBF16, 1)
GSAM2_MSDA_ENTRY(msda_forward_bf16_v2, StoreBF16, 2)
GSAM2_MSDA_ENTRY(msda_forward_bf16_v4, StoreBF16, 4)
GSAM2_MSDA_ENTRY(msda_forward_bf16_v8, StoreBF16, 8)
