// meshfit native antialiasing: forward and backward of render/antialias.py on the CPU.
//
// For each horizontally or vertically adjacent pixel pair seeing different faces, the front
// face's edge that the segment between the two pixel centres crosses is found from homogeneous
// edge functions u = a x b (a_i = x_i - px w_i, b_i = y_i - py w_i); the crossing t (0 at the
// front pixel, 1 at the other) blends the colours: t > 1/2 moves (t - 1/2) of the front colour
// into the other pixel, t < 1/2 moves (1/2 - t) of the other colour into the front pixel.
// The edge must be a visibility edge: a boundary edge or one whose neighbouring face turns away
// (its projected winding flips). Where the segment leaves through an edge the surface continues
// across (slivers seen at grazing angles, narrower than a pixel), the crossing is followed into
// the neighbours (faces [F, 3] -> neighbours [F, 3], up to kWalk of them) to the visibility edge.
// After kWalk faces the edge reached stands in. Skipped: edges shared with the face seen in the
// other pixel (the surface continues), walks that pass the other pixel's centre, and edges cut
// more squarely by the other pair direction (steep edges by horizontal pairs, flat ones by
// vertical pairs), so each edge is blended once. Mirrors antialias.py:_pair_deltas.
//
// Each work item owns one image row and recomputes the pairs that touch it, so colour outputs
// need no synchronisation; vertex gradients go to per-worker buffers, each pair counted once
// (by the row of its first pixel). The backward pass runs view by view (a row's pairs touch one
// view's vertices), so its scratch is min(workers, H) x V x 4 floats.
//
// Buffers: color [B, H, W, C] f32; face_id [B, H, W] s32; depth [B, H, W] f32; clip [B, V, 4]
// f32; faces [F, 3] s32; neighbours [F, 3] s32 (-1: boundary). Outputs: out [B, H, W, C];
// backward: g_out [B, H, W, C] in, g_color [B, H, W, C] and g_clip [B, V, 4] out. Every
// buffer's dimensions, every face index, face id and neighbour are checked before use.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kWalk = 16;  // antialias.py:WALK

struct Image {
  int64_t views, height, width, channels, verts;
  const float* color;
  const int32_t* fid;
  const float* depth;
  const float* clip;
  const int32_t* faces;
  const int32_t* neighbours;
  std::vector<float> xs, ys;
};

// Sign of a face's projected winding in view b: det of its corners' (x, y, w) rows, summed in
// antialias.py:_orientation's order.
inline float Orientation(const Image& im, int64_t b, int32_t face) {
  const int32_t* t = im.faces + 3 * int64_t(face);
  const float* c0 = im.clip + (b * im.verts + t[0]) * 4;
  const float* c1 = im.clip + (b * im.verts + t[1]) * 4;
  const float* c2 = im.clip + (b * im.verts + t[2]) * 4;
  const float d0 = c0[0] * (c1[1] * c2[3] - c1[3] * c2[1]);
  const float d1 = c0[1] * (c1[3] * c2[0] - c1[0] * c2[3]);
  const float d2 = c0[3] * (c1[0] * c2[1] - c1[1] * c2[0]);
  const float d = d0 + d1 + d2;
  return d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f);
}

// One pair's blend, everything the forward and backward passes need.
struct Pair {
  bool active = false;
  int64_t front, other;  // pixel indices
  float t;               // crossing position from the front pixel
  int64_t vj, vm;        // offsets of the crossed edge's corners in the view's clip [V, 4]
  float sign;            // orientation of the front face
  float fx, fy, ox, oy;  // NDC of front / other pixel centres
};

inline void EdgeValues(const float* c[3], float px, float py, float u[3]) {
  float a[3], b[3];
  for (int i = 0; i < 3; ++i) {
    a[i] = c[i][0] - px * c[i][3];
    b[i] = c[i][1] - py * c[i][3];
  }
  u[0] = a[1] * b[2] - a[2] * b[1];
  u[1] = a[2] * b[0] - a[0] * b[2];
  u[2] = a[0] * b[1] - a[1] * b[0];
}

Pair Evaluate(const Image& im, int64_t b, int64_t p, int64_t q, bool horizontal) {
  Pair r;
  const int32_t fp = im.fid[p], fq = im.fid[q];
  if (fp == fq || (fp < 0 && fq < 0)) return r;
  const bool front_p = fp >= 0 && (fq < 0 || im.depth[p] <= im.depth[q]);
  const int32_t front = front_p ? fp : fq, other = front_p ? fq : fp;
  r.front = front_p ? p : q;
  r.other = front_p ? q : p;
  const int64_t pw = im.width;
  const int64_t fpix = r.front % (im.height * pw), opix = r.other % (im.height * pw);
  r.fx = im.xs[fpix % pw];
  r.fy = im.ys[fpix / pw];
  r.ox = im.xs[opix % pw];
  r.oy = im.ys[opix / pw];
  const int32_t* tri = im.faces + 3 * int64_t(front);
  const float* c[3];
  for (int i = 0; i < 3; ++i) c[i] = im.clip + (b * im.verts + tri[i]) * 4;
  float uf[3], uo[3];
  EdgeValues(c, r.fx, r.fy, uf);
  EdgeValues(c, r.ox, r.oy, uo);
  const float s = uf[0] + uf[1] + uf[2];
  r.sign = s > 0 ? 1.0f : (s < 0 ? -1.0f : 0.0f);
  int k = -1;
  float best = 2.0f;
  for (int i = 0; i < 3; ++i) {
    const float f = uf[i] * r.sign, o = uo[i] * r.sign;
    if (o <= 0 && f >= 0 && f - o > 0) {  // an edge through the other pixel's centre counts (t = 1)
      const float t = f / (f - o);
      if (t < best) best = t, k = i;
    }
  }
  if (k < 0 || best > 1.0f) return r;
  // Follow the segment across edges the surface continues over, to the visibility edge.
  int32_t face = front;
  float o_face = Orientation(im, b, face);
  for (int step = 0;; ++step) {
    const int32_t ea = tri[(k + 1) % 3], eb = tri[(k + 2) % 3];
    if (other >= 0) {
      const int32_t* ot = im.faces + 3 * int64_t(other);
      const bool has_a = ot[0] == ea || ot[1] == ea || ot[2] == ea;
      const bool has_b = ot[0] == eb || ot[1] == eb || ot[2] == eb;
      if (has_a && has_b) return r;
    }
    const int32_t nb = im.neighbours[3 * int64_t(face) + k];
    const float o_nb = nb >= 0 ? Orientation(im, b, nb) : 0.0f;
    // After kWalk faces the edge reached stands in (the closest to the visibility edge known).
    if (nb < 0 || o_nb != o_face || o_nb == 0.0f || step == kWalk) break;
    const int32_t* ntri = im.faces + 3 * int64_t(nb);
    const float* nc[3];
    for (int i = 0; i < 3; ++i) nc[i] = im.clip + (b * im.verts + ntri[i]) * 4;
    EdgeValues(nc, r.fx, r.fy, uf);
    EdgeValues(nc, r.ox, r.oy, uo);
    int kn = 0;
    float tn = 2.0f;
    for (int i = 0; i < 3; ++i) {
      const float f = uf[i] * o_nb, o = uo[i] * o_nb;
      if (f - o > 0) {  // the segment leaves the face through this edge
        const float t = f / (f - o);
        if (t < tn) tn = t, kn = i;
      }
    }
    tn = std::max(tn, best);
    if (tn > 1.0f) return r;
    face = nb, tri = ntri, k = kn, best = tn, o_face = o_nb, r.sign = o_nb;
    for (int i = 0; i < 3; ++i) c[i] = nc[i];
  }
  const float* cj = c[(k + 1) % 3];
  const float* cm = c[(k + 2) % 3];
  const float nx = std::fabs(cm[3] * cj[1] - cj[3] * cm[1]) / float(im.width);
  const float ny = std::fabs(cj[3] * cm[0] - cm[3] * cj[0]) / float(im.height);
  if ((nx >= ny) != horizontal) return r;
  r.active = true;
  r.t = best;
  r.vj = (cj - im.clip) - b * im.verts * 4;
  r.vm = (cm - im.clip) - b * im.verts * 4;
  return r;
}

// Calls fn(pair, is_owner) for every pair touching row `row` (of all views flattened).
template <typename Fn>
void PairsOfRow(const Image& im, int64_t row, Fn fn) {
  const int64_t b = row / im.height, y = row % im.height;
  const int64_t base = row * im.width;
  for (int64_t x = 0; x + 1 < im.width; ++x) fn(Evaluate(im, b, base + x, base + x + 1, true), true);
  if (y + 1 < im.height)
    for (int64_t x = 0; x < im.width; ++x) fn(Evaluate(im, b, base + x, base + im.width + x, false), true);
  if (y > 0)
    for (int64_t x = 0; x < im.width; ++x) fn(Evaluate(im, b, base - im.width + x, base + x, false), false);
}

ffi::Error Setup(const ffi::Buffer<ffi::F32>& color, const ffi::Buffer<ffi::S32>& fid,
                 const ffi::Buffer<ffi::F32>& depth, const ffi::Buffer<ffi::F32>& clip,
                 const ffi::Buffer<ffi::S32>& faces, const ffi::Buffer<ffi::S32>& neighbours, Image* im) {
  const auto cd = color.dimensions();
  const auto kd = clip.dimensions();
  if (cd.size() != 4) return ffi::Error::InvalidArgument("color must be [B, H, W, C]");
  if (auto e = meshfit::CheckImageSize(cd[1], cd[2]); e.failure()) return e;
  if (auto e = meshfit::CheckDims(fid, {cd[0], cd[1], cd[2]}, "face_id", "[B, H, W] matching color"); e.failure())
    return e;
  if (auto e = meshfit::CheckDims(depth, {cd[0], cd[1], cd[2]}, "depth", "[B, H, W] matching color"); e.failure())
    return e;
  if (kd.size() != 3 || kd[0] != cd[0] || kd[2] != 4) return ffi::Error::InvalidArgument("clip must be [B, V, 4]");
  const auto nd = faces.dimensions();
  if (nd.size() != 2 || nd[1] != 3) return ffi::Error::InvalidArgument("faces must be [F, 3]");
  if (auto e = meshfit::CheckFaces(faces.typed_data(), nd[0], kd[1]); e.failure()) return e;
  if (auto e = meshfit::CheckFaceIds(fid.typed_data(), int64_t(fid.element_count()), nd[0]); e.failure()) return e;
  if (auto e = meshfit::CheckDims(neighbours, {nd[0], 3}, "neighbours", "[F, 3] like faces"); e.failure()) return e;
  if (auto e = meshfit::CheckFaceIds(neighbours.typed_data(), 3 * nd[0], nd[0]); e.failure()) return e;
  *im = Image{cd[0],
              cd[1],
              cd[2],
              cd[3],
              kd[1],
              color.typed_data(),
              fid.typed_data(),
              depth.typed_data(),
              clip.typed_data(),
              faces.typed_data(),
              neighbours.typed_data(),
              meshfit::PixelNdc(cd[2]),
              meshfit::PixelNdc(cd[1])};
  return ffi::Error::Success();
}

ffi::Error AntialiasFwd(ffi::Buffer<ffi::F32> color, ffi::Buffer<ffi::S32> fid, ffi::Buffer<ffi::F32> depth,
                        ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> neighbours,
                        ffi::ResultBuffer<ffi::F32> out) {
  if (auto e = meshfit::CheckDims(
          *out, {color.dimensions()[0], color.dimensions()[1], color.dimensions()[2], color.dimensions()[3]}, "out",
          "[B, H, W, C] like color");
      e.failure())
    return e;
  return meshfit::Guarded("meshfit_antialias_fwd", [&] {
    Image im;
    if (auto e = Setup(color, fid, depth, clip, faces, neighbours, &im); e.failure()) return e;
    float* o = out->typed_data();
    const int64_t C = im.channels;
    meshfit::ParallelFor(im.views * im.height, [&](int64_t row) {
      const int64_t lo = row * im.width, hi = lo + im.width;
      for (int64_t i = lo * C; i < hi * C; ++i) o[i] = im.color[i];
      PairsOfRow(im, row, [&](const Pair& r, bool) {
        if (!r.active) return;
        const float* cf = im.color + r.front * C;
        const float* co = im.color + r.other * C;
        if (r.t > 0.5f && r.other >= lo && r.other < hi)
          for (int64_t c = 0; c < C; ++c) o[r.other * C + c] += (r.t - 0.5f) * (cf[c] - co[c]);
        if (r.t < 0.5f && r.front >= lo && r.front < hi)
          for (int64_t c = 0; c < C; ++c) o[r.front * C + c] += (0.5f - r.t) * (co[c] - cf[c]);
      });
    });
    return ffi::Error::Success();
  });
}

// d(u_k)/d(corner j, corner m) for u_k = a_j b_m - a_m b_j at pixel (px, py), times g.
inline void EdgeGrad(const float* cj, const float* cm, float px, float py, float g, float* gj, float* gm) {
  const float aj = cj[0] - px * cj[3], bj = cj[1] - py * cj[3];
  const float am = cm[0] - px * cm[3], bm = cm[1] - py * cm[3];
  // dL/da_j = g b_m, dL/db_m = g a_j, dL/da_m = -g b_j, dL/db_j = -g a_m
  const float gaj = g * bm, gbm = g * aj, gam = -g * bj, gbj = -g * am;
  gj[0] += gaj;
  gj[1] += gbj;
  gj[3] += -px * gaj - py * gbj;
  gm[0] += gam;
  gm[1] += gbm;
  gm[3] += -px * gam - py * gbm;
}

ffi::Error AntialiasBwd(ffi::Buffer<ffi::F32> color, ffi::Buffer<ffi::S32> fid, ffi::Buffer<ffi::F32> depth,
                        ffi::Buffer<ffi::F32> clip, ffi::Buffer<ffi::S32> faces, ffi::Buffer<ffi::S32> neighbours,
                        ffi::Buffer<ffi::F32> g_out,
                        ffi::ResultBuffer<ffi::F32> g_color, ffi::ResultBuffer<ffi::F32> g_clip) {
  if (color.dimensions().size() != 4) return ffi::Error::InvalidArgument("color must be [B, H, W, C]");
  const auto cd = color.dimensions();
  if (auto e = meshfit::CheckDims(g_out, {cd[0], cd[1], cd[2], cd[3]}, "g_out", "[B, H, W, C] like color"); e.failure())
    return e;
  if (auto e = meshfit::CheckDims(*g_color, {cd[0], cd[1], cd[2], cd[3]}, "g_color", "[B, H, W, C] like color");
      e.failure())
    return e;
  const auto kd = clip.dimensions();
  if (kd.size() != 3) return ffi::Error::InvalidArgument("clip must be [B, V, 4]");
  if (auto e = meshfit::CheckDims(*g_clip, {kd[0], kd[1], kd[2]}, "g_clip", "[B, V, 4] like clip"); e.failure())
    return e;
  return meshfit::Guarded("meshfit_antialias_bwd", [&] {
    Image im;
    if (auto e = Setup(color, fid, depth, clip, faces, neighbours, &im); e.failure()) return e;
    const float* go = g_out.typed_data();
    float* gc = g_color->typed_data();
    const int64_t C = im.channels;
    const int64_t n = im.verts * 4;  // one view's clip gradient
    meshfit::Scatter scatter(im.height, n);
    for (int64_t b = 0; b < im.views; ++b) {
      scatter.Run(im.height, g_clip->typed_data() + b * n, [&](int64_t y, float* gv) {
        const int64_t row = b * im.height + y;
        const int64_t lo = row * im.width, hi = lo + im.width;
        for (int64_t i = lo * C; i < hi * C; ++i) gc[i] = go[i];
        PairsOfRow(im, row, [&](const Pair& r, bool owner) {
          if (!r.active) return;
          const float* cf = im.color + r.front * C;
          const float* co = im.color + r.other * C;
          float gt = 0.0f;
          if (r.t > 0.5f) {  // other += (t - 1/2) (cf - co)
            const float* g = go + r.other * C;
            for (int64_t c = 0; c < C; ++c) gt += g[c] * (cf[c] - co[c]);
            if (r.front >= lo && r.front < hi)
              for (int64_t c = 0; c < C; ++c) gc[r.front * C + c] += (r.t - 0.5f) * g[c];
            if (r.other >= lo && r.other < hi)
              for (int64_t c = 0; c < C; ++c) gc[r.other * C + c] -= (r.t - 0.5f) * g[c];
          } else if (r.t < 0.5f) {  // front += (1/2 - t) (co - cf)
            const float* g = go + r.front * C;
            for (int64_t c = 0; c < C; ++c) gt -= g[c] * (co[c] - cf[c]);
            if (r.other >= lo && r.other < hi)
              for (int64_t c = 0; c < C; ++c) gc[r.other * C + c] += (0.5f - r.t) * g[c];
            if (r.front >= lo && r.front < hi)
              for (int64_t c = 0; c < C; ++c) gc[r.front * C + c] -= (0.5f - r.t) * g[c];
          }
          if (!owner || gt == 0.0f) return;
          // t = f / (f - o) with f, o the sign-normalised edge values at the front/other pixel.
          const float* cj = im.clip + b * n + r.vj;
          const float* cm = im.clip + b * n + r.vm;
          const float fj = cj[0] - r.fx * cj[3], fbj = cj[1] - r.fy * cj[3];
          const float fm = cm[0] - r.fx * cm[3], fbm = cm[1] - r.fy * cm[3];
          const float oj = cj[0] - r.ox * cj[3], obj = cj[1] - r.oy * cj[3];
          const float om = cm[0] - r.ox * cm[3], obm = cm[1] - r.oy * cm[3];
          const float f = r.sign * (fj * fbm - fm * fbj), o = r.sign * (oj * obm - om * obj);
          const float den = (f - o) * (f - o);
          const float gf = gt * (-o / den) * r.sign, gob = gt * (f / den) * r.sign;
          EdgeGrad(cj, cm, r.fx, r.fy, gf, gv + r.vj, gv + r.vm);
          EdgeGrad(cj, cm, r.ox, r.oy, gob, gv + r.vj, gv + r.vm);
        });
      });
    }
    return ffi::Error::Success();
  });
}

}  // namespace

extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitAntialiasFwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitAntialiasBwd(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitAntialiasFwd, AntialiasFwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitAntialiasBwd, AntialiasBwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
