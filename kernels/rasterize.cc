// meshfit native visibility kernel: which triangle each pixel centre sees.
//
// Called from JAX through XLA's FFI (target "meshfit_rasterize_visibility", CPU). The triangle
// setup (edge functions, 1/w and NDC-z planes, pixel bounding boxes) is computed by
// meshfit/render/_setup.py:triangle_setup or natively by MeshfitTriangleSetup below; this kernel
// bins triangles into 32x32 pixel tiles (CSR lists, sized from the data: no fixed capacity,
// nothing is ever dropped) and resolves visibility per tile on the worker pool (small calls on the
// calling thread), four pixels of a row at a time, keeping the nearest fragment in a per-view
// depth buffer.
//
// Arithmetic mirrors meshfit/render/_coverage.py:covers exactly (float32, same operation order,
// compiled with -ffp-contract=off so no FMA contraction), so the pure-JAX path gives identical ids.
//
// MeshfitTriangleSetup computes that setup natively from clip positions and faces, with the same
// float32 operations in the same order as the JAX code.
//
// Buffers (row-major, leading dimensions flattened into B views):
//   clip:   [B, V, 4]  float32  clip-space positions (setup input)
//   faces:  [F, 3]     int32    vertex indices 0..V-1 (checked)
//   coeffs: [B, F, 15] float32  A0 B0 C0 A1 B1 C1 A2 B2 C2 SA SB SC ZA ZB ZC (NDC x, y)
//   bbox:   [B, F, 4]  int32    inclusive pixel box x0 y0 x1 y1; empty when x1 < x0 or y1 < y0.
//                               Visibility trusts no box: each is clamped to the image first, so
//                               a box for another image size or a negative one cannot index
//                               outside the image (it only limits which pixels the face may cover).
//   face_id:[B, H, W]  int32    output: visible face index, -1 for background
// Ties in depth go to the lower face index (faces are visited in increasing order).
//
// Memory (besides XLA's buffers), bounded whatever the boxes: when all views' face-tile pairs fit
// MESHFIT_MAX_TILE_PAIRS (default 2^24, 4 bytes each = 64 MiB), all views are binned at once (in
// parallel) and every (view, tile) resolved in parallel, with (H/32 + 1)(W/32 + 1) int64 tile
// offsets per view. Otherwise faces are binned in chunks of at most that many pairs over all views
// in flight, plus one H x W float depth buffer per view in flight; views are then resolved one at a
// time (tiles in parallel), or one per worker when an image has fewer tiles than there are workers. Triangles crossing the camera plane get whole-image boxes
// and so cost whole-image tile lists; chunking bounds that memory, the time stays O(faces x tiles).

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using meshfit::ParallelFor;
using meshfit::ParallelForIf;

constexpr int kTile = 32;
constexpr int kCoeffs = 15;
// Below these sizes a call runs on the calling thread (measured on 2 cores: 4 views of 1,500
// faces at 64^2, 75k box pixels, resolve in 0.28 ms alone and 0.3-0.5 ms on the pool).
constexpr int64_t kParallelFaces = int64_t(1) << 16;   // face boxes to count
constexpr int64_t kParallelTriangles = 8192;           // triangles to set up (~40 ns each)
constexpr int64_t kParallelPixels = int64_t(1) << 18;  // box pixels to test

// Face-tile pairs binned per pass over all views in flight (MESHFIT_MAX_TILE_PAIRS overrides).
int64_t MaxTilePairs() {
  if (const char* env = std::getenv("MESHFIT_MAX_TILE_PAIRS")) {
    const long long n = std::atoll(env);
    if (n > 0) return int64_t(n);
  }
  return int64_t(1) << 24;
}

// A face's pixel box clamped to the image; false when it covers no pixel of it.
struct Box {
  int x0, y0, x1, y1;
};
inline bool ClampBox(const int32_t* b, int width, int height, Box* out) {
  const int x0 = std::max(b[0], 0), y0 = std::max(b[1], 0);
  const int x1 = std::min(b[2], width - 1), y1 = std::min(b[3], height - 1);
  if (x1 < x0 || y1 < y0) return false;
  *out = Box{x0, y0, x1, y1};
  return true;
}

struct TileLists {
  std::vector<int64_t> start;  // [num_tiles + 1] CSR offsets into faces
  std::vector<int32_t> faces;  // face indices, increasing within each tile
};

// Bins faces [f0, f1) of one view into the tiles their clamped boxes touch.
void BinFaces(const int32_t* bbox, int64_t f0, int64_t f1, int width, int height, int tiles_x, int64_t num_tiles,
              TileLists* lists) {
  std::vector<int64_t>& start = lists->start;
  start.assign(size_t(num_tiles + 1), 0);
  Box b{};
  for (int64_t f = f0; f < f1; ++f) {
    if (!ClampBox(bbox + 4 * f, width, height, &b)) continue;
    for (int ty = b.y0 / kTile; ty <= b.y1 / kTile; ++ty)
      for (int tx = b.x0 / kTile; tx <= b.x1 / kTile; ++tx) ++start[size_t(int64_t(ty) * tiles_x + tx + 1)];
  }
  for (int64_t t = 0; t < num_tiles; ++t) start[size_t(t + 1)] += start[size_t(t)];
  lists->faces.resize(size_t(start[size_t(num_tiles)]));
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t f = f0; f < f1; ++f) {
    if (!ClampBox(bbox + 4 * f, width, height, &b)) continue;
    for (int ty = b.y0 / kTile; ty <= b.y1 / kTile; ++ty)
      for (int tx = b.x0 / kTile; tx <= b.x1 / kTile; ++tx)
        lists->faces[size_t(fill[size_t(int64_t(ty) * tiles_x + tx)]++)] = int32_t(f);
  }
}

// Four float32 / int32 lanes (GCC and Clang vector extensions: SSE on x86-64, NEON on ARM). Each
// lane does the scalar code's float operations in the same order, so results are bit-identical.
using F4 = float __attribute__((vector_size(16)));
using I4 = int32_t __attribute__((vector_size(16)));

template <typename V, typename T>
inline V Load4(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V, typename T>
inline void Store4(T* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
inline F4 Splat(float a) { return F4{a, a, a, a}; }
inline I4 SplatI(int32_t a) { return I4{a, a, a, a}; }

// A tile's row stride in the resolve buffers: 4 lanes past the tile's last column may be read
// and written back unchanged.
constexpr int kStride = kTile + 4;

// Resolves one tile against its face list, continuing from (and writing back to) the view's depth
// buffer depth [H, W] (1/w of the nearest fragment so far, 0 = none) and ids out [H, W]; with
// depth == nullptr the list holds all the view's faces: start empty and write the ids only.
// Pixels are tested four at a time along a row, without branches: the triangles are mostly a few
// pixels wide, where a per-pixel branch is a coin toss to the predictor.
void ResolveTile(const float* coef, const int32_t* bbox, const TileLists& lists, int64_t tile, int tiles_x, int height,
                 int width, const float* xs, const float* ys, float* depth, int32_t* out) {
  const int tx = int(tile % tiles_x), ty = int(tile / tiles_x);
  const int px0 = tx * kTile, py0 = ty * kTile;
  const int px1 = std::min(px0 + kTile, width) - 1, py1 = std::min(py0 + kTile, height) - 1;
  alignas(16) float best_w[kTile * kStride];
  alignas(16) int32_t best_f[kTile * kStride];
  alignas(16) float txs[kStride];  // the tile's pixel-centre x, padded (padded lanes are masked)
  for (int i = 0; i < kStride; ++i) txs[i] = xs[std::min(px0 + i, px1)];
  for (int y = py0; y <= py1; ++y)
    for (int x = px0; x <= px1; ++x) {
      best_w[(y - py0) * kStride + (x - px0)] = depth ? depth[int64_t(y) * width + x] : 0.0f;
      best_f[(y - py0) * kStride + (x - px0)] = depth ? out[int64_t(y) * width + x] : -1;
    }
  const I4 lane = {0, 1, 2, 3};
  Box b{};
  for (int64_t k = lists.start[size_t(tile)]; k < lists.start[size_t(tile + 1)]; ++k) {
    const int32_t f = lists.faces[size_t(k)];
    const float* c = coef + int64_t(kCoeffs) * f;
    ClampBox(bbox + 4 * int64_t(f), width, height, &b);  // non-empty: the face was binned here
    const int lx0 = std::max(b.x0, px0) - px0, lx1 = std::min(b.x1, px1) - px0;
    const int y0 = std::max(b.y0, py0), y1 = std::min(b.y1, py1);
    // Top-left rule: a pixel exactly on an edge belongs to the face whose edge function rises
    // to its right (or, on a horizontal edge, downwards).
    const I4 tl0 = SplatI((c[0] > 0) || (c[0] == 0 && c[1] > 0) ? -1 : 0);
    const I4 tl1 = SplatI((c[3] > 0) || (c[3] == 0 && c[4] > 0) ? -1 : 0);
    const I4 tl2 = SplatI((c[6] > 0) || (c[6] == 0 && c[7] > 0) ? -1 : 0);
    const F4 a0 = Splat(c[0]), a1 = Splat(c[3]), a2 = Splat(c[6]), aw = Splat(c[9]), az = Splat(c[12]);
    const F4 k0 = Splat(c[2]), k1 = Splat(c[5]), k2 = Splat(c[8]), kw = Splat(c[11]), kz = Splat(c[14]);
    const F4 zero = Splat(0.0f), lo = Splat(-1.0f), hi = Splat(1.0f);
    const I4 id = SplatI(f);
    for (int y = y0; y <= y1; ++y) {
      const float py = ys[y];
      // (A x + B y) + C as in covers(): B y formed once per row (a + b == b + a exactly).
      const F4 e0 = Splat(c[1] * py), e1 = Splat(c[4] * py), e2 = Splat(c[7] * py);
      const F4 ew = Splat(c[10] * py), ez = Splat(c[13] * py);
      float* bw = best_w + (y - py0) * kStride;
      int32_t* bf = best_f + (y - py0) * kStride;
      for (int lx = lx0; lx <= lx1; lx += 4) {
        const F4 px = Load4<F4>(txs + lx);
        const F4 u0 = (a0 * px + e0) + k0;
        const F4 u1 = (a1 * px + e1) + k1;
        const F4 u2 = (a2 * px + e2) + k2;
        const F4 invw = (aw * px + ew) + kw;
        const F4 zn = (az * px + ez) + kz;
        const F4 w_old = Load4<F4>(bw + lx);
        const I4 f_old = Load4<I4>(bf + lx);
        // Comparisons give -1 per true lane; NaNs fail every one, as in the scalar code.
        const I4 in = ((u0 > zero) | ((u0 == zero) & tl0)) & ((u1 > zero) | ((u1 == zero) & tl1)) &
                      ((u2 > zero) | ((u2 == zero) & tl2)) & (invw > zero) & (zn >= lo) & (zn <= hi) &
                      (invw > w_old) & (lane + lx <= lx1);
        I4 wi, oi;
        std::memcpy(&wi, &invw, sizeof wi);
        std::memcpy(&oi, &w_old, sizeof oi);
        const I4 w_new = (in & wi) | (~in & oi);
        Store4(bw + lx, w_new);
        Store4(bf + lx, (in & id) | (~in & f_old));
      }
    }
  }
  for (int y = py0; y <= py1; ++y)
    for (int x = px0; x <= px1; ++x) {
      if (depth) depth[int64_t(y) * width + x] = best_w[(y - py0) * kStride + (x - px0)];
      out[int64_t(y) * width + x] = best_f[(y - py0) * kStride + (x - px0)];
    }
}

// Visibility of one view: faces binned in chunks of at most max_pairs face-tile pairs, each chunk
// resolved over all tiles (in parallel unless called from a worker), lower face indices first.
void ResolveView(const float* coef, const int32_t* bbox, int64_t num_faces, int height, int width, int64_t max_pairs,
                 const float* xs, const float* ys, int32_t* out) {
  const int tiles_x = (width + kTile - 1) / kTile, tiles_y = (height + kTile - 1) / kTile;
  const int64_t num_tiles = int64_t(tiles_x) * tiles_y;
  std::vector<float> depth(size_t(height) * size_t(width), 0.0f);
  std::fill(out, out + int64_t(height) * width, -1);
  TileLists lists;
  Box b{};
  for (int64_t f0 = 0; f0 < num_faces;) {
    int64_t f1 = f0, pairs = 0;
    for (; f1 < num_faces; ++f1) {
      if (!ClampBox(bbox + 4 * f1, width, height, &b)) continue;
      const int64_t n = int64_t(b.y1 / kTile - b.y0 / kTile + 1) * (b.x1 / kTile - b.x0 / kTile + 1);
      if (pairs > 0 && pairs + n > max_pairs) break;
      pairs += n;
    }
    BinFaces(bbox, f0, f1, width, height, tiles_x, num_tiles, &lists);
    ParallelFor(num_tiles, [&](int64_t t) {
      ResolveTile(coef, bbox, lists, t, tiles_x, height, width, xs, ys, depth.data(), out);
    });
    f0 = f1;
  }
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
  const float x1 =
      clampf(in_front ? std::ceil(std::max({px[0], px[1], px[2]})) : float(width - 1), -1.0f, float(width - 1));
  const float y1 =
      clampf(in_front ? std::ceil(std::max({py[0], py[1], py[2]})) : float(height - 1), -1.0f, float(height - 1));
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
  if (auto e = meshfit::CheckImageSize(height, width); e.failure()) return e;
  const int64_t views = cd[0], verts = cd[1], num_faces = fd[0];
  if (auto e = meshfit::CheckDims(*coeffs, {views, num_faces, kCoeffs}, "coeffs", "[B, F, 15]"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*bbox, {views, num_faces, 4}, "bbox", "[B, F, 4]"); e.failure()) return e;
  const float* cl = clip.typed_data();
  const int32_t* fc = faces.typed_data();
  if (auto e = meshfit::CheckFaces(fc, num_faces, verts); e.failure()) return e;
  return meshfit::Guarded("meshfit_triangle_setup", [&] {
    float* co = coeffs->typed_data();
    int32_t* bb = bbox->typed_data();
    constexpr int64_t kChunk = 4096;
    const int64_t chunks = (num_faces + kChunk - 1) / kChunk;
    ParallelForIf(views * num_faces >= kParallelTriangles, views * chunks, [&](int64_t item) {
      const int64_t v = item / chunks, f0 = (item % chunks) * kChunk, f1 = std::min(f0 + kChunk, num_faces);
      for (int64_t f = f0; f < f1; ++f)
        SetupTriangle(cl + v * verts * 4, fc + 3 * f, width, height, co + (v * num_faces + f) * kCoeffs,
                      bb + (v * num_faces + f) * 4);
    });
    return ffi::Error::Success();
  });
}

ffi::Error Visibility(ffi::Buffer<ffi::F32> coeffs, ffi::Buffer<ffi::S32> bbox, int32_t height, int32_t width,
                      ffi::ResultBuffer<ffi::S32> face_id) {
  const auto cdims = coeffs.dimensions();
  const auto bdims = bbox.dimensions();
  const auto odims = face_id->dimensions();
  if (cdims.size() < 2 || cdims.back() != kCoeffs) return ffi::Error::InvalidArgument("coeffs must be [..., F, 15]");
  if (bdims.size() != cdims.size() || bdims.back() != 4)
    return ffi::Error::InvalidArgument("bbox must be [..., F, 4] matching coeffs");
  for (size_t i = 0; i + 1 < cdims.size(); ++i)
    if (bdims[i] != cdims[i]) return ffi::Error::InvalidArgument("bbox must be [..., F, 4] matching coeffs");
  if (auto e = meshfit::CheckImageSize(height, width); e.failure()) return e;
  if (odims.size() != cdims.size() || odims[odims.size() - 2] != height || odims.back() != width)
    return ffi::Error::InvalidArgument("face_id must be [..., H, W] with the leading dimensions of coeffs");
  for (size_t i = 0; i + 2 < cdims.size(); ++i)
    if (odims[i] != cdims[i])
      return ffi::Error::InvalidArgument("face_id must be [..., H, W] with the leading dimensions of coeffs");
  const int64_t num_faces = cdims[cdims.size() - 2];
  if (num_faces > INT32_MAX) return ffi::Error::InvalidArgument("more than 2^31 - 1 faces");
  int64_t views = 1;
  for (size_t i = 0; i + 2 < cdims.size(); ++i) views *= cdims[i];

  return meshfit::Guarded("meshfit_rasterize_visibility", [&] {
    const std::vector<float> xs = meshfit::PixelNdc(width), ys = meshfit::PixelNdc(height);
    const float* cdata = coeffs.typed_data();
    const int32_t* bdata = bbox.typed_data();
    int32_t* out = face_id->typed_data();
    const int64_t pixels = int64_t(height) * width;
    const int64_t num_tiles = int64_t((width + kTile - 1) / kTile) * ((height + kTile - 1) / kTile);
    const int tiles_x = (width + kTile - 1) / kTile;
    // The common case: every view's whole tile lists fit the pair budget together. Bin the views
    // in parallel, then resolve all (view, tile) items in parallel, one pass, no depth buffers.
    // Small calls (a few thousand faces at 64^2: a render-and-compare pass) run on the calling
    // thread: waking the pool would cost more than the work.
    std::vector<int64_t> pairs(size_t(views), 0), area(size_t(views), 0);
    ParallelForIf(views * num_faces >= kParallelFaces, views, [&](int64_t v) {
      Box b{};
      const int32_t* vb = bdata + v * num_faces * 4;
      for (int64_t f = 0; f < num_faces; ++f)
        if (ClampBox(vb + 4 * f, width, height, &b)) {
          pairs[size_t(v)] += int64_t(b.y1 / kTile - b.y0 / kTile + 1) * (b.x1 / kTile - b.x0 / kTile + 1);
          area[size_t(v)] += int64_t(b.y1 - b.y0 + 1) * (b.x1 - b.x0 + 1);
        }
    });
    int64_t total = 0, pixels_tested = 0;
    for (int64_t v = 0; v < views; ++v) total += pairs[size_t(v)], pixels_tested += area[size_t(v)];
    if (total <= MaxTilePairs()) {
      const bool parallel = pixels_tested >= kParallelPixels;
      std::vector<TileLists> lists(static_cast<size_t>(views));
      ParallelForIf(parallel, views, [&](int64_t v) {
        BinFaces(bdata + v * num_faces * 4, 0, num_faces, width, height, tiles_x, num_tiles, &lists[size_t(v)]);
      });
      ParallelForIf(parallel, views * num_tiles, [&](int64_t item) {
        const int64_t v = item / num_tiles, t = item % num_tiles;
        ResolveTile(cdata + v * num_faces * kCoeffs, bdata + v * num_faces * 4, lists[size_t(v)], t, tiles_x, height,
                    width, xs.data(), ys.data(), nullptr, out + v * pixels);
      });
      return ffi::Error::Success();
    }
    const int workers = meshfit::Pool::Get().size();
    // Few tiles per image: one whole view per worker (the nested tile loop then runs inline).
    const bool view_parallel = views > 1 && num_tiles < workers;
    const int64_t in_flight = view_parallel ? std::min<int64_t>(views, workers) : 1;
    const int64_t max_pairs = std::max<int64_t>(1, MaxTilePairs() / in_flight);
    auto view = [&](int64_t v) {
      ResolveView(cdata + v * num_faces * kCoeffs, bdata + v * num_faces * 4, num_faces, height, width, max_pairs,
                  xs.data(), ys.data(), out + v * pixels);
    };
    if (view_parallel) {
      ParallelFor(views, view);
    } else {
      for (int64_t v = 0; v < views; ++v) view(v);
    }
    return ffi::Error::Success();
  });
}

}  // namespace

// The FFI API version (XLA_FFI_API_MAJOR.MINOR of the headers) and jaxlib version this library
// was built against, as "ffi=MAJOR.MINOR;jaxlib=VERSION" (meshfit/render/_native.py reads it).
#ifndef MESHFIT_JAXLIB_VERSION
#define MESHFIT_JAXLIB_VERSION "unknown"
#endif
#define MESHFIT_STR2(x) #x
#define MESHFIT_STR(x) MESHFIT_STR2(x)
extern "C" MESHFIT_EXPORT const char* MeshfitBuildInfo() {
  return "ffi=" MESHFIT_STR(XLA_FFI_API_MAJOR) "." MESHFIT_STR(XLA_FFI_API_MINOR) ";jaxlib=" MESHFIT_JAXLIB_VERSION;
}

extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitRasterizeVisibility(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitTriangleSetup(XLA_FFI_CallFrame*);

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
