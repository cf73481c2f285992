// meshfit native barycentrics (forward and backward of rasterize.py:barycentrics) and attribute
// interpolation (interpolate.py:interpolate) on the CPU.
//
// For pixel centre (px, py) in NDC and the clip corners (x_i, y_i, w_i) of its face,
//   a_i = x_i - px w_i,  b_i = y_i - py w_i,  u = a x b,  bary = u / sum(u),  depth = bary . w.
// The backward pass applies the chain rule of exactly these expressions and scatter-adds into
// per-worker vertex-gradient buffers (no atomics), summed at the end. It runs view by view (a
// pixel row touches one view's vertices), so its scratch is min(workers, H) x V x 4 floats.
//
// Buffers: clip [B, V, 4] f32; faces [F, 3] s32; face_id [B, H, W] s32 (-1 background);
//          bary [B, H, W, 3] f32; depth [B, H, W] f32; gradients have the same shapes. Every
//          buffer's dimensions, every face index and every face id are checked before use.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Dims {
  int64_t views, verts, height, width;
};

ffi::Error CheckBary(const ffi::Buffer<ffi::F32>& clip, const ffi::Buffer<ffi::S32>& faces,
                     const ffi::Buffer<ffi::S32>& face_id, Dims* d) {
  const auto c = clip.dimensions();
  const auto f = faces.dimensions();
  const auto p = face_id.dimensions();
  if (c.size() != 3 || c[2] != 4) return ffi::Error::InvalidArgument("clip must be [B, V, 4]");
  if (f.size() != 2 || f[1] != 3) return ffi::Error::InvalidArgument("faces must be [F, 3]");
  if (p.size() != 3 || p[0] != c[0]) return ffi::Error::InvalidArgument("face_id must be [B, H, W]");
  if (auto e = meshfit::CheckImageSize(p[1], p[2]); e.failure()) return e;
  *d = Dims{c[0], c[1], p[1], p[2]};
  if (auto e = meshfit::CheckFaces(faces.typed_data(), f[0], c[1]); e.failure()) return e;
  return meshfit::CheckFaceIds(face_id.typed_data(), int64_t(face_id.element_count()), f[0]);
}

// One pixel's face in homogeneous form: a_i = x_i - px w_i, b_i = y_i - py w_i, u = a x b, s = sum(u).
struct PixelFace {
  int64_t vi[3];  // offsets of the corners in clip
  float w[3], a[3], b[3], u[3], s;
};

inline PixelFace Gather(const float* clip, const int32_t* faces, int64_t vertex_base, int32_t f, float px, float py) {
  PixelFace p;
  for (int i = 0; i < 3; ++i) {
    p.vi[i] = (vertex_base + faces[3 * f + i]) * 4;
    const float* v = clip + p.vi[i];
    p.w[i] = v[3];
    p.a[i] = v[0] - px * v[3];
    p.b[i] = v[1] - py * v[3];
  }
  p.u[0] = p.a[1] * p.b[2] - p.a[2] * p.b[1];
  p.u[1] = p.a[2] * p.b[0] - p.a[0] * p.b[2];
  p.u[2] = p.a[0] * p.b[1] - p.a[1] * p.b[0];
  p.s = p.u[0] + p.u[1] + p.u[2];
  return p;
}

ffi::Error BaryFwd(ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> face_id,
                   ffi::ResultBuffer<ffi::F32> bary, ffi::ResultBuffer<ffi::F32> depth) {
  Dims d;
  if (auto e = CheckBary(clip, faces, face_id, &d); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*bary, {d.views, d.height, d.width, 3}, "bary", "[B, H, W, 3]"); e.failure())
    return e;
  if (auto e = meshfit::CheckDims(*depth, {d.views, d.height, d.width}, "depth", "[B, H, W]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_bary_fwd", [&] {
    const std::vector<float> xs = meshfit::PixelNdc(d.width), ys = meshfit::PixelNdc(d.height);
    const float* cl = clip.typed_data();
    const int32_t* fc = faces.typed_data();
    const int32_t* id = face_id.typed_data();
    float* ob = bary->typed_data();
    float* od = depth->typed_data();
    meshfit::ParallelFor(d.views * d.height, [&](int64_t row) {
      const int64_t b = row / d.height, y = row % d.height;
      const float py = ys[y];
      for (int64_t x = 0; x < d.width; ++x) {
        const int64_t pix = row * d.width + x;
        const int32_t f = id[pix];
        float* bo = ob + 3 * pix;
        if (f < 0) {
          bo[0] = bo[1] = bo[2] = 0.0f;
          od[pix] = 0.0f;
          continue;
        }
        const PixelFace q = Gather(cl, fc, b * d.verts, f, xs[x], py);
        if (q.s == 0.0f) {
          bo[0] = bo[1] = bo[2] = 0.0f;
          od[pix] = 0.0f;
          continue;
        }
        for (int i = 0; i < 3; ++i) bo[i] = q.u[i] / q.s;
        od[pix] = bo[0] * q.w[0] + bo[1] * q.w[1] + bo[2] * q.w[2];
      }
    });
    return ffi::Error::Success();
  });
}

ffi::Error BaryBwd(ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> face_id,
                   ffi::Buffer<ffi::F32> g_bary, ffi::Buffer<ffi::F32> g_depth, ffi::ResultBuffer<ffi::F32> g_clip) {
  Dims d;
  if (auto e = CheckBary(clip, faces, face_id, &d); e.failure()) return e;
  if (auto e = meshfit::CheckDims(g_bary, {d.views, d.height, d.width, 3}, "g_bary", "[B, H, W, 3]"); e.failure())
    return e;
  if (auto e = meshfit::CheckDims(g_depth, {d.views, d.height, d.width}, "g_depth", "[B, H, W]"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*g_clip, {d.views, d.verts, 4}, "g_clip", "[B, V, 4]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_bary_bwd", [&] {
    const std::vector<float> xs = meshfit::PixelNdc(d.width), ys = meshfit::PixelNdc(d.height);
    const float* cl = clip.typed_data();
    const int32_t* fc = faces.typed_data();
    const int32_t* id = face_id.typed_data();
    const float* gb = g_bary.typed_data();
    const float* gd = g_depth.typed_data();
    const int64_t n = d.verts * 4;  // one view's clip gradient
    meshfit::Scatter scatter(d.height, n);
    for (int64_t b = 0; b < d.views; ++b) {
      const float* view_clip = cl + b * n;
      scatter.Run(d.height, g_clip->typed_data() + b * n, [&](int64_t y, float* g) {
        const float py = ys[size_t(y)];
        for (int64_t x = 0; x < d.width; ++x) {
          const int64_t pix = (b * d.height + y) * d.width + x;
          const int32_t f = id[pix];
          if (f < 0) continue;
          const float px = xs[size_t(x)];
          const PixelFace q = Gather(view_clip, fc, 0, f, px, py);
          const float s = q.s;
          if (s == 0.0f) continue;
          const float *u = q.u, *a = q.a, *bb = q.b, *w = q.w;
          const int64_t* vi = q.vi;
          const float br[3] = {u[0] / s, u[1] / s, u[2] / s};
          // depth = bary . w: its gradient reaches bary and w directly.
          float gbr[3], gw[3];
          for (int i = 0; i < 3; ++i) {
            gbr[i] = gb[3 * pix + i] + gd[pix] * w[i];
            gw[i] = gd[pix] * br[i];
          }
          const float dot = gbr[0] * br[0] + gbr[1] * br[1] + gbr[2] * br[2];
          float gu[3];
          for (int i = 0; i < 3; ++i) gu[i] = (gbr[i] - dot) / s;
          // u = a x b:  dL/da = b x gu,  dL/db = gu x a.
          const float ga[3] = {bb[1] * gu[2] - bb[2] * gu[1], bb[2] * gu[0] - bb[0] * gu[2],
                               bb[0] * gu[1] - bb[1] * gu[0]};
          const float gbv[3] = {gu[1] * a[2] - gu[2] * a[1], gu[2] * a[0] - gu[0] * a[2], gu[0] * a[1] - gu[1] * a[0]};
          for (int i = 0; i < 3; ++i) {
            float* o = g + vi[i];
            o[0] += ga[i];
            o[1] += gbv[i];
            o[3] += gw[i] - px * ga[i] - py * gbv[i];
          }
        }
      });
    }
    return ffi::Error::Success();
  });
}

// ---- attribute interpolation: out[pix] = sum_k bary[pix, k] attr[faces[f, k]] ----------------------
//
// Buffers: attr [A, C] f32 (shared by all views); faces [F, 3] s32 indexing attr; face_id [P...] s32
// and bary [P..., 3] f32 for the P = B*H*W pixels; out and its gradient [P..., C]. The backward
// pass's scratch is min(workers, pixel blocks) x A x C floats (attr is shared by all views).

// Checks the inputs, and that `named` (out, g_out, g_bary, ...) has face_id's dimensions + [last].
ffi::Error CheckInterp(const ffi::Buffer<ffi::F32>& attr, const ffi::Buffer<ffi::S32>& faces,
                       const ffi::Buffer<ffi::S32>& face_id, const ffi::Buffer<ffi::F32>& bary) {
  const auto a = attr.dimensions();
  const auto f = faces.dimensions();
  if (a.size() != 2) return ffi::Error::InvalidArgument("attr must be [A, C]");
  if (f.size() != 2 || f[1] != 3) return ffi::Error::InvalidArgument("faces must be [F, 3]");
  if (auto e = meshfit::CheckPerPixel(bary, face_id, 3, "bary", "face_id"); e.failure()) return e;
  if (auto e = meshfit::CheckFaces(faces.typed_data(), f[0], a[0]); e.failure()) return e;
  return meshfit::CheckFaceIds(face_id.typed_data(), int64_t(face_id.element_count()), f[0]);
}

ffi::Error InterpFwd(ffi::Buffer<ffi::F32> attr, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> face_id,
                     ffi::Buffer<ffi::F32> bary, ffi::ResultBuffer<ffi::F32> out) {
  if (auto e = CheckInterp(attr, faces, face_id, bary); e.failure()) return e;
  const int64_t C = attr.dimensions()[1], P = int64_t(face_id.element_count());
  if (auto e = meshfit::CheckPerPixel(*out, face_id, C, "out", "face_id"); e.failure()) return e;
  return meshfit::Guarded("meshfit_interp_fwd", [&] {
    const float* at = attr.typed_data();
    const int32_t* fc = faces.typed_data();
    const int32_t* id = face_id.typed_data();
    const float* br = bary.typed_data();
    float* o = out->typed_data();
    constexpr int64_t kBlock = 4096;
    meshfit::ParallelFor((P + kBlock - 1) / kBlock, [&](int64_t blk) {
      for (int64_t pix = blk * kBlock; pix < std::min(P, (blk + 1) * kBlock); ++pix) {
        float* op = o + pix * C;
        const int32_t f = id[pix];
        if (f < 0) {
          for (int64_t c = 0; c < C; ++c) op[c] = 0.0f;
          continue;
        }
        const float* a0 = at + int64_t(fc[3 * f]) * C;
        const float* a1 = at + int64_t(fc[3 * f + 1]) * C;
        const float* a2 = at + int64_t(fc[3 * f + 2]) * C;
        const float b0 = br[3 * pix], b1 = br[3 * pix + 1], b2 = br[3 * pix + 2];
        for (int64_t c = 0; c < C; ++c) op[c] = b0 * a0[c] + b1 * a1[c] + b2 * a2[c];
      }
    });
    return ffi::Error::Success();
  });
}

ffi::Error InterpBwd(ffi::Buffer<ffi::F32> attr, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> face_id,
                     ffi::Buffer<ffi::F32> bary, ffi::Buffer<ffi::F32> g_out, ffi::ResultBuffer<ffi::F32> g_attr,
                     ffi::ResultBuffer<ffi::F32> g_bary) {
  if (auto e = CheckInterp(attr, faces, face_id, bary); e.failure()) return e;
  const int64_t A = attr.dimensions()[0], C = attr.dimensions()[1], P = int64_t(face_id.element_count());
  if (auto e = meshfit::CheckPerPixel(g_out, face_id, C, "g_out", "face_id"); e.failure()) return e;
  if (auto e = meshfit::CheckPerPixel(*g_bary, face_id, 3, "g_bary", "face_id"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*g_attr, {A, C}, "g_attr", "[A, C]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_interp_bwd", [&] {
    const float* at = attr.typed_data();
    const int32_t* fc = faces.typed_data();
    const int32_t* id = face_id.typed_data();
    const float* br = bary.typed_data();
    const float* g = g_out.typed_data();
    float* gb = g_bary->typed_data();
    constexpr int64_t kBlock = 4096;
    const int64_t blocks = (P + kBlock - 1) / kBlock;
    meshfit::Scatter scatter(blocks, A * C);
    scatter.Run(blocks, g_attr->typed_data(), [&](int64_t blk, float* ga) {
      for (int64_t pix = blk * kBlock; pix < std::min(P, (blk + 1) * kBlock); ++pix) {
        float* gbp = gb + 3 * pix;
        const int32_t f = id[pix];
        if (f < 0) {
          gbp[0] = gbp[1] = gbp[2] = 0.0f;
          continue;
        }
        const float* gp = g + pix * C;
        for (int k = 0; k < 3; ++k) {
          const int64_t v = int64_t(fc[3 * f + k]) * C;
          const float b = br[3 * pix + k];
          float dot = 0.0f;
          for (int64_t c = 0; c < C; ++c) {
            dot += gp[c] * at[v + c];
            ga[v + c] += b * gp[c];
          }
          gbp[k] = dot;
        }
      }
    });
    return ffi::Error::Success();
  });
}

}  // namespace

extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitInterpFwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitInterpBwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitBaryFwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitBaryBwd(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitInterpFwd, InterpFwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitInterpBwd, InterpBwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitBaryFwd, BaryFwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitBaryBwd, BaryBwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
