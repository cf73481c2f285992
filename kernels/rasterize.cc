// meshfit native visibility kernel: which triangle each pixel centre sees.
//
// Called from JAX through XLA's FFI (target "meshfit_rasterize_visibility", CPU). The triangle
// setup (edge functions, 1/w and NDC-z planes, pixel bounding boxes) is computed in JAX by
// meshfit/render/rasterize.py:triangle_setup; this kernel bins triangles into 32x32 pixel tiles
// (CSR lists, sized from the data: no fixed capacity, nothing is ever dropped) and resolves
// visibility per tile on all cores, with a tile-local depth buffer.
//
// Arithmetic mirrors rasterize.py:_covers exactly (float32, same operation order, compiled with
// -ffp-contract=off so no FMA contraction), so the pure-JAX path gives identical ids.
//
// A second handler, MeshfitTriangleSetup, computes that setup natively from clip positions and
// faces, with the same float32 operations in the same order as the JAX code.
//
// Buffers (row-major, leading dimensions flattened into B views):
//   coeffs: [B, F, 15] float32  A0 B0 C0 A1 B1 C1 A2 B2 C2 SA SB SC ZA ZB ZC (NDC x, y)
//   bbox:   [B, F, 4]  int32    inclusive pixel box x0 y0 x1 y1; empty when x1 < x0 or y1 < y0
//   face_id:[B, H, W]  int32    output: visible face index, -1 for background
// Ties in depth go to the lower face index (faces are visited in increasing order).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using meshfit::ParallelFor;

constexpr int kTile = 32;
constexpr int kCoeffs = 15;

struct TileLists {
  std::vector<int64_t> start;  // [num_tiles + 1] CSR offsets into faces
  std::vector<int32_t> faces;  // face indices, increasing within each tile
};

void BinView(const float* /*coef*/, const int32_t* bbox, int64_t num_faces, int tiles_x, int tiles_y,
             TileLists* lists) {
  const int64_t num_tiles = int64_t(tiles_x) * tiles_y;
  std::vector<int64_t>& start = lists->start;
  start.assign(num_tiles + 1, 0);
  for (int64_t f = 0; f < num_faces; ++f) {
    const int32_t* b = bbox + 4 * f;
    if (b[2] < b[0] || b[3] < b[1]) continue;
    for (int ty = b[1] / kTile; ty <= b[3] / kTile; ++ty)
      for (int tx = b[0] / kTile; tx <= b[2] / kTile; ++tx) ++start[int64_t(ty) * tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < num_tiles; ++t) start[t + 1] += start[t];
  lists->faces.resize(start[num_tiles]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t f = 0; f < num_faces; ++f) {
    const int32_t* b = bbox + 4 * f;
    if (b[2] < b[0] || b[3] < b[1]) continue;
    for (int ty = b[1] / kTile; ty <= b[3] / kTile; ++ty)
      for (int tx = b[0] / kTile; tx <= b[2] / kTile; ++tx)
        lists->faces[fill[int64_t(ty) * tiles_x + tx]++] = int32_t(f);
  }
}

void ResolveTile(const float* coef, const int32_t* bbox, const TileLists& lists, int64_t tile, int tiles_x,
                 int height, int width, const float* xs, const float* ys, int32_t* out) {
  const int tx = int(tile % tiles_x), ty = int(tile / tiles_x);
  const int px0 = tx * kTile, py0 = ty * kTile;
  const int px1 = std::min(px0 + kTile, width) - 1, py1 = std::min(py0 + kTile, height) - 1;
  float best_w[kTile * kTile];
  int32_t best_f[kTile * kTile];
  std::fill(best_w, best_w + kTile * kTile, 0.0f);
  std::fill(best_f, best_f + kTile * kTile, -1);
  for (int64_t k = lists.start[tile]; k < lists.start[tile + 1]; ++k) {
    const int32_t f = lists.faces[k];
    const float* c = coef + int64_t(kCoeffs) * f;
    const int32_t* b = bbox + 4 * int64_t(f);
    const int x0 = std::max(b[0], px0), x1 = std::min(b[2], px1);
    const int y0 = std::max(b[1], py0), y1 = std::min(b[3], py1);
    const bool tl0 = (c[0] > 0) || (c[0] == 0 && c[1] > 0);
    const bool tl1 = (c[3] > 0) || (c[3] == 0 && c[4] > 0);
    const bool tl2 = (c[6] > 0) || (c[6] == 0 && c[7] > 0);
    for (int y = y0; y <= y1; ++y) {
      const float py = ys[y];
      for (int x = x0; x <= x1; ++x) {
        const float px = xs[x];
        const float u0 = (c[0] * px + c[1] * py) + c[2];
        if (!(u0 > 0 || (u0 == 0 && tl0))) continue;
        const float u1 = (c[3] * px + c[4] * py) + c[5];
        if (!(u1 > 0 || (u1 == 0 && tl1))) continue;
        const float u2 = (c[6] * px + c[7] * py) + c[8];
        if (!(u2 > 0 || (u2 == 0 && tl2))) continue;
        const float invw = (c[9] * px + c[10] * py) + c[11];
        const float zn = (c[12] * px + c[13] * py) + c[14];
        if (!(invw > 0) || !(zn >= -1.0f) || !(zn <= 1.0f)) continue;
        const int i = (y - py0) * kTile + (x - px0);
        if (invw > best_w[i]) {
          best_w[i] = invw;
          best_f[i] = f;
        }
      }
    }
  }
  for (int y = py0; y <= py1; ++y)
    for (int x = px0; x <= px1; ++x) out[int64_t(y) * width + x] = best_f[(y - py0) * kTile + (x - px0)];
}

// Per-triangle setup: mirrors rasterize.py:triangle_setup operation for operation.
void SetupTriangle(const float* clip, const int32_t* tri, int width, int height, float* coef, int32_t* box) {
  float x[3], y[3], z[3], w[3];
  bool finite = true;
  for (int i = 0; i < 3; ++i) {
    const float* v = clip + 4 * int64_t(tri[i]);
    x[i] = v[0], y[i] = v[1], z[i] = v[2], w[i] = v[3];
    finite = finite && std::isfinite(x[i]) && std::isfinite(y[i]) && std::isfinite(z[i]) && std::isfinite(w[i]);
  }
  float A[3], B[3], C[3];
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    A[i] = w[k] * y[j] - w[j] * y[k];
    B[i] = w[j] * x[k] - w[k] * x[j];
    C[i] = x[j] * y[k] - x[k] * y[j];
  }
  const float det = (w[0] * C[0] + w[1] * C[1]) + w[2] * C[2];
  const float s = det > 0 ? 1.0f : (det < 0 ? -1.0f : (det == 0 ? 0.0f : det));
  for (int i = 0; i < 3; ++i) A[i] *= s, B[i] *= s, C[i] *= s;
  const float adet = std::fabs(det);
  const bool ok = adet > 0;
  const float inv = ok ? 1.0f / adet : 0.0f;
  for (int i = 0; i < 3; ++i) coef[3 * i] = A[i], coef[3 * i + 1] = B[i], coef[3 * i + 2] = C[i];
  const float* E[3] = {A, B, C};
  for (int e = 0; e < 3; ++e) {
    coef[9 + e] = ((E[e][0] + E[e][1]) + E[e][2]) * inv;
    coef[12 + e] = ((z[0] * E[e][0] + z[1] * E[e][1]) + z[2] * E[e][2]) * inv;
  }
  const bool in_front = w[0] > 0 && w[1] > 0 && w[2] > 0;
  float px[3], py[3];
  for (int i = 0; i < 3; ++i) {
    const float ws = w[i] > 0 ? w[i] : 1.0f;
    px[i] = ((x[i] / ws + 1.0f) * float(width) - 1.0f) * 0.5f;
    py[i] = ((y[i] / ws + 1.0f) * float(height) - 1.0f) * 0.5f;
  }
  auto clampf = [](float v, float lo, float hi) { return std::min(std::max(v, lo), hi); };
  const float x0 = clampf(in_front ? std::floor(std::min({px[0], px[1], px[2]})) : 0.0f, 0.0f, float(width));
  const float y0 = clampf(in_front ? std::floor(std::min({py[0], py[1], py[2]})) : 0.0f, 0.0f, float(height));
  const float x1 = clampf(in_front ? std::ceil(std::max({px[0], px[1], px[2]})) : float(width - 1), -1.0f,
                          float(width - 1));
  const float y1 = clampf(in_front ? std::ceil(std::max({py[0], py[1], py[2]})) : float(height - 1), -1.0f,
                          float(height - 1));
  auto all3 = [](bool a, bool b, bool c) { return a && b && c; };
  const bool outside = all3(x[0] > w[0], x[1] > w[1], x[2] > w[2]) || all3(x[0] < -w[0], x[1] < -w[1], x[2] < -w[2]) ||
                       all3(y[0] > w[0], y[1] > w[1], y[2] > w[2]) || all3(y[0] < -w[0], y[1] < -w[1], y[2] < -w[2]) ||
                       all3(z[0] > w[0], z[1] > w[1], z[2] > w[2]) || all3(z[0] < -w[0], z[1] < -w[1], z[2] < -w[2]) ||
                       all3(w[0] <= 0, w[1] <= 0, w[2] <= 0);
  if (ok && !outside && finite) {
    box[0] = int32_t(x0), box[1] = int32_t(y0), box[2] = int32_t(x1), box[3] = int32_t(y1);
  } else {
    box[0] = 0, box[1] = 0, box[2] = -1, box[3] = -1;
  }
}

ffi::Error TriangleSetup(ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces, int32_t height, int32_t width,
                         ffi::ResultBuffer<ffi::F32> coeffs, ffi::ResultBuffer<ffi::S32> bbox) {
  const auto cd = clip.dimensions();
  const auto fd = faces.dimensions();
  if (cd.size() != 3 || cd[2] != 4) return ffi::Error::InvalidArgument("clip must be [B, V, 4]");
  if (fd.size() != 2 || fd[1] != 3) return ffi::Error::InvalidArgument("faces must be [F, 3]");
  const int64_t views = cd[0], verts = cd[1], num_faces = fd[0];
  const float* cl = clip.typed_data();
  const int32_t* fc = faces.typed_data();
  if (auto e = meshfit::CheckFaces(fc, num_faces, verts); e.failure()) return e;
  float* co = coeffs->typed_data();
  int32_t* bb = bbox->typed_data();
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (num_faces + kChunk - 1) / kChunk;
  ParallelFor(views * chunks, [&](int64_t item) {
    const int64_t v = item / chunks, f0 = (item % chunks) * kChunk, f1 = std::min(f0 + kChunk, num_faces);
    for (int64_t f = f0; f < f1; ++f)
      SetupTriangle(cl + v * verts * 4, fc + 3 * f, width, height, co + (v * num_faces + f) * kCoeffs,
                    bb + (v * num_faces + f) * 4);
  });
  return ffi::Error::Success();
}

ffi::Error Visibility(ffi::Buffer<ffi::F32> coeffs, ffi::Buffer<ffi::S32> bbox, int32_t height, int32_t width,
                      ffi::ResultBuffer<ffi::S32> face_id) {
  const auto cdims = coeffs.dimensions();
  const auto bdims = bbox.dimensions();
  const auto odims = face_id->dimensions();
  if (cdims.size() < 2 || cdims.back() != kCoeffs)
    return ffi::Error::InvalidArgument("coeffs must be [..., F, 15]");
  if (bdims.size() != cdims.size() || bdims.back() != 4 || bdims[bdims.size() - 2] != cdims[cdims.size() - 2])
    return ffi::Error::InvalidArgument("bbox must be [..., F, 4] matching coeffs");
  if (height <= 0 || width <= 0) return ffi::Error::InvalidArgument("height and width must be positive");
  const int64_t num_faces = cdims[cdims.size() - 2];
  int64_t views = 1;
  for (size_t i = 0; i + 2 < cdims.size(); ++i) views *= cdims[i];
  if (int64_t(face_id->element_count()) != views * height * width)
    return ffi::Error::InvalidArgument("face_id must be [..., H, W]");
  (void)odims;

  const std::vector<float> xs = meshfit::PixelNdc(width), ys = meshfit::PixelNdc(height);
  const int tiles_x = (width + kTile - 1) / kTile, tiles_y = (height + kTile - 1) / kTile;
  const int64_t num_tiles = int64_t(tiles_x) * tiles_y;

  const float* cdata = coeffs.typed_data();
  const int32_t* bdata = bbox.typed_data();
  int32_t* out = face_id->typed_data();
  std::vector<TileLists> lists(views);
  ParallelFor(views, [&](int64_t v) {
    BinView(cdata + v * num_faces * kCoeffs, bdata + v * num_faces * 4, num_faces, tiles_x, tiles_y, &lists[v]);
  });
  ParallelFor(views * num_tiles, [&](int64_t item) {
    const int64_t v = item / num_tiles, t = item % num_tiles;
    ResolveTile(cdata + v * num_faces * kCoeffs, bdata + v * num_faces * 4, lists[v], t, tiles_x, height, width,
                xs.data(), ys.data(), out + v * int64_t(height) * width);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitRasterizeVisibility, Visibility,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int32_t>("height")
                                  .Attr<int32_t>("width")
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitTriangleSetup, TriangleSetup,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int32_t>("height")
                                  .Attr<int32_t>("width")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
