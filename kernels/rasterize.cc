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
// Buffers (row-major, leading dimensions flattened into B views):
//   coeffs: [B, F, 15] float32  A0 B0 C0 A1 B1 C1 A2 B2 C2 SA SB SC ZA ZB ZC (NDC x, y)
//   bbox:   [B, F, 4]  int32    inclusive pixel box x0 y0 x1 y1; empty when x1 < x0 or y1 < y0
//   face_id:[B, H, W]  int32    output: visible face index, -1 for background
// Ties in depth go to the lower face index (faces are visited in increasing order).

#include <algorithm>
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
