// meshfit's native CPU kernel for the photometric term's shading (objectives.py, photometric with
// SH light): per pixel, renormalise the interpolated normal, evaluate order-2 SH irradiance,
// multiply the albedo, clip and gamma-encode, and accumulate the weighted Charbonnier error
// against the target; the backward pass returns the gradients in the albedo and normal images
// and the SH coefficients. One pass each way over the pixels instead of XLA's chain of
// elementwise kernels and their gradients, which move [B, H, W, 3] arrays a dozen times.
//
// Buffers: albedo, normal, target [P..., 3] f32 (a zero normal is shaded unnormalised, with no
// gradient, as the JAX path's safe normalisation does); weight [P...] f32 (0 = not compared);
// coeffs [9, 3] f32 (Ramamoorthi & Hanrahan's order, shade.py's sh_irradiance). Attribute eps: the
// Charbonnier scale. Out: loss [] f32 = sum_pix weight * sum_c (sqrt(d^2 + eps^2) - eps).

#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kC1 = 0.429043f, kC2 = 0.511664f, kC3 = 0.743125f, kC4 = 0.886227f, kC5 = 0.247708f;
constexpr float kLow = 1e-6f, kHigh = 1.0f, kInvGamma = 1.0f / 2.2f;
constexpr int64_t kBlock = 4096;

// The 9 SH basis functions at unit normal (x, y, z), as shade.py's sh_irradiance stacks them.
inline void Basis(float x, float y, float z, float* b) {
  b[0] = kC4;
  b[1] = 2 * kC2 * y;
  b[2] = 2 * kC2 * z;
  b[3] = 2 * kC2 * x;
  b[4] = 2 * kC1 * x * y;
  b[5] = 2 * kC1 * y * z;
  b[6] = kC3 * z * z - kC5;
  b[7] = 2 * kC1 * x * z;
  b[8] = kC1 * (x * x - y * y);
}

ffi::Error CheckShade(const ffi::Buffer<ffi::F32>& albedo, const ffi::Buffer<ffi::F32>& normal,
                      const ffi::Buffer<ffi::F32>& coeffs, const ffi::Buffer<ffi::F32>& target,
                      const ffi::Buffer<ffi::F32>& weight, float eps) {
  if (auto e = meshfit::CheckPerPixel(albedo, weight, 3, "albedo", "weight"); e.failure()) return e;
  if (auto e = meshfit::CheckPerPixel(normal, weight, 3, "normal", "weight"); e.failure()) return e;
  if (auto e = meshfit::CheckPerPixel(target, weight, 3, "target", "weight"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(coeffs, {9, 3}, "coeffs", "[9, 3]"); e.failure()) return e;
  if (!(eps > 0.0f) || !std::isfinite(eps)) return ffi::Error::InvalidArgument("eps must be a finite number > 0");
  return ffi::Error::Success();
}

// One pixel's forward quantities.
struct Pixel {
  float nx, ny, nz, len;  // unit normal and the interpolated normal's length (0: skipped)
  float b[9];             // SH basis
  float irr[3], lin[3], col[3], d[3];
};

inline void Shade(const float* al, const float* nr, const float* co, const float* tg, Pixel& px) {
  const float sq = nr[0] * nr[0] + nr[1] * nr[1] + nr[2] * nr[2];
  // A zero normal stays zero (and gets no gradient), as the JAX path's safe normalisation does.
  px.len = sq > 0.0f ? std::sqrt(sq) : 0.0f;
  px.nx = sq > 0.0f ? nr[0] / px.len : 0.0f;
  px.ny = sq > 0.0f ? nr[1] / px.len : 0.0f;
  px.nz = sq > 0.0f ? nr[2] / px.len : 0.0f;
  Basis(px.nx, px.ny, px.nz, px.b);
  for (int c = 0; c < 3; ++c) {
    float s = 0.0f;
    for (int k = 0; k < 9; ++k) s += px.b[k] * co[3 * k + c];
    px.irr[c] = s;
    px.lin[c] = al[c] * s;
    const float x = std::min(std::max(px.lin[c], kLow), kHigh);
    px.col[c] = std::pow(x, kInvGamma);
    px.d[c] = tg != nullptr ? px.col[c] - tg[c] : 0.0f;
  }
}

// Backpropagates one pixel's g_col (d loss / d display colour, per channel) into its albedo and
// normal gradients (gai, gni) and the coefficient gradients of its block (gc [27]).
inline void Backprop(const Pixel& px, const float* a, const float* co, const float* g_col, float* gai, float* gni,
                     double* gc) {
  float g_irr[3];
  for (int c = 0; c < 3; ++c) {
    // Through the gamma (zero outside the clip range, as jnp.clip's gradient).
    const bool inside = px.lin[c] > kLow && px.lin[c] < kHigh;
    const float g_lin = inside ? g_col[c] * kInvGamma * px.col[c] / px.lin[c] : 0.0f;
    gai[c] = g_lin * px.irr[c];
    g_irr[c] = g_lin * a[c];
  }
  float gb[9];
  for (int k = 0; k < 9; ++k) {
    float s = 0.0f;
    for (int c = 0; c < 3; ++c) {
      gc[3 * k + c] += double(px.b[k]) * g_irr[c];
      s += co[3 * k + c] * g_irr[c];
    }
    gb[k] = s;
  }
  gni[0] = gni[1] = gni[2] = 0.0f;
  if (px.len == 0.0f) return;
  // d basis / d unit normal, then through the normalisation: (I - n n^T) / |n|.
  const float x = px.nx, y = px.ny, z = px.nz;
  const float gx = 2 * kC2 * gb[3] + 2 * kC1 * (y * gb[4] + z * gb[7]) + 2 * kC1 * x * gb[8];
  const float gy = 2 * kC2 * gb[1] + 2 * kC1 * (x * gb[4] + z * gb[5]) - 2 * kC1 * y * gb[8];
  const float gz = 2 * kC2 * gb[2] + 2 * kC1 * (y * gb[5] + x * gb[7]) + 2 * kC3 * z * gb[6];
  const float dot = x * gx + y * gy + z * gz;
  gni[0] = (gx - x * dot) / px.len;
  gni[1] = (gy - y * dot) / px.len;
  gni[2] = (gz - z * dot) / px.len;
}

// Sums per-block coefficient gradients [blocks, 27] in block order (deterministic) into out [9, 3].
inline void SumBlocks(const std::vector<double>& partial, int64_t blocks, float* out) {
  for (int j = 0; j < 27; ++j) {
    double s = 0.0;
    for (int64_t blk = 0; blk < blocks; ++blk) s += partial[size_t(blk) * 27 + j];
    out[j] = float(s);
  }
}

ffi::Error ShadeFwd(ffi::Buffer<ffi::F32> albedo, ffi::Buffer<ffi::F32> normal, ffi::Buffer<ffi::F32> coeffs,
                    ffi::Buffer<ffi::F32> target, ffi::Buffer<ffi::F32> weight, float eps,
                    ffi::ResultBuffer<ffi::F32> loss) {
  if (auto e = CheckShade(albedo, normal, coeffs, target, weight, eps); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*loss, {}, "loss", "[]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_shade_fwd", [&] {
    const int64_t P = int64_t(weight.element_count());
    const float *al = albedo.typed_data(), *nr = normal.typed_data(), *co = coeffs.typed_data();
    const float *tg = target.typed_data(), *w = weight.typed_data();
    const int64_t blocks = (P + kBlock - 1) / kBlock;
    std::vector<double> partial(size_t(blocks), 0.0);  // per block, summed in order: deterministic
    meshfit::ParallelFor(blocks, [&](int64_t blk) {
      double sum = 0.0;
      Pixel px;
      for (int64_t i = blk * kBlock; i < std::min(P, (blk + 1) * kBlock); ++i) {
        if (w[i] == 0.0f) continue;
        Shade(al + 3 * i, nr + 3 * i, co, tg + 3 * i, px);
        float e = 0.0f;
        for (int c = 0; c < 3; ++c) e += std::sqrt(px.d[c] * px.d[c] + eps * eps) - eps;
        sum += double(w[i]) * e;
      }
      partial[size_t(blk)] = sum;
    });
    double total = 0.0;
    for (double s : partial) total += s;
    loss->typed_data()[0] = float(total);
    return ffi::Error::Success();
  });
}

ffi::Error ShadeBwd(ffi::Buffer<ffi::F32> albedo, ffi::Buffer<ffi::F32> normal, ffi::Buffer<ffi::F32> coeffs,
                    ffi::Buffer<ffi::F32> target, ffi::Buffer<ffi::F32> weight, ffi::Buffer<ffi::F32> g_loss,
                    float eps, ffi::ResultBuffer<ffi::F32> g_albedo, ffi::ResultBuffer<ffi::F32> g_normal,
                    ffi::ResultBuffer<ffi::F32> g_coeffs) {
  if (auto e = CheckShade(albedo, normal, coeffs, target, weight, eps); e.failure()) return e;
  if (auto e = meshfit::CheckDims(g_loss, {}, "g_loss", "[]"); e.failure()) return e;
  if (auto e = meshfit::CheckPerPixel(*g_albedo, weight, 3, "g_albedo", "weight"); e.failure()) return e;
  if (auto e = meshfit::CheckPerPixel(*g_normal, weight, 3, "g_normal", "weight"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*g_coeffs, {9, 3}, "g_coeffs", "[9, 3]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_shade_bwd", [&] {
    const int64_t P = int64_t(weight.element_count());
    const float *al = albedo.typed_data(), *nr = normal.typed_data(), *co = coeffs.typed_data();
    const float *tg = target.typed_data(), *w = weight.typed_data();
    const float g = g_loss.typed_data()[0];
    float *ga = g_albedo->typed_data(), *gn = g_normal->typed_data();
    const int64_t blocks = (P + kBlock - 1) / kBlock;
    std::vector<double> partial(size_t(blocks) * 27, 0.0);  // per-block coefficient gradients
    meshfit::ParallelFor(blocks, [&](int64_t blk) {
      double* gc = partial.data() + blk * 27;
      Pixel px;
      for (int64_t i = blk * kBlock; i < std::min(P, (blk + 1) * kBlock); ++i) {
        float* gai = ga + 3 * i;
        float* gni = gn + 3 * i;
        gai[0] = gai[1] = gai[2] = gni[0] = gni[1] = gni[2] = 0.0f;
        if (w[i] == 0.0f) continue;
        Shade(al + 3 * i, nr + 3 * i, co, tg + 3 * i, px);
        float g_col[3];
        for (int c = 0; c < 3; ++c) g_col[c] = g * w[i] * px.d[c] / std::sqrt(px.d[c] * px.d[c] + eps * eps);
        Backprop(px, al + 3 * i, co, g_col, gai, gni, gc);
      }
    });
    SumBlocks(partial, blocks, g_coeffs->typed_data());
    return ffi::Error::Success();
  });
}

// ---- the colour image alone (for a render laid over a plate and antialiased) ----------------------
//
// Buffers: albedo, normal [P..., 3] f32; coeffs [9, 3]; out colour [P..., 3] (gamma-encoded);
// backward: g_colour [P..., 3] -> g_albedo, g_normal [P..., 3], g_coeffs [9, 3].

template <typename A, typename B>
ffi::Error CheckSame(const A& buffer, const B& like, const char* what) {
  const auto d = buffer.dimensions();
  const auto l = like.dimensions();
  bool ok = d.size() == l.size() && d.size() >= 1 && l.back() == 3;
  for (size_t i = 0; ok && i < d.size(); ++i) ok = d[i] == l[i];
  if (ok) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(std::string(what) + " must have albedo's dimensions [P..., 3]");
}

ffi::Error CheckColour(const ffi::Buffer<ffi::F32>& albedo, const ffi::Buffer<ffi::F32>& normal,
                       const ffi::Buffer<ffi::F32>& coeffs) {
  if (auto e = CheckSame(albedo, albedo, "albedo"); e.failure()) return e;
  if (auto e = CheckSame(normal, albedo, "normal"); e.failure()) return e;
  return meshfit::CheckDims(coeffs, {9, 3}, "coeffs", "[9, 3]");
}

ffi::Error ColourFwd(ffi::Buffer<ffi::F32> albedo, ffi::Buffer<ffi::F32> normal, ffi::Buffer<ffi::F32> coeffs,
                     ffi::ResultBuffer<ffi::F32> colour) {
  if (auto e = CheckColour(albedo, normal, coeffs); e.failure()) return e;
  if (auto e = CheckSame(*colour, albedo, "colour"); e.failure()) return e;
  return meshfit::Guarded("meshfit_colour_fwd", [&] {
    const int64_t P = int64_t(albedo.element_count()) / 3;
    const float *al = albedo.typed_data(), *nr = normal.typed_data(), *co = coeffs.typed_data();
    float* out = colour->typed_data();
    meshfit::ParallelFor((P + kBlock - 1) / kBlock, [&](int64_t blk) {
      Pixel px;
      for (int64_t i = blk * kBlock; i < std::min(P, (blk + 1) * kBlock); ++i) {
        Shade(al + 3 * i, nr + 3 * i, co, nullptr, px);
        for (int c = 0; c < 3; ++c) out[3 * i + c] = px.col[c];
      }
    });
    return ffi::Error::Success();
  });
}

ffi::Error ColourBwd(ffi::Buffer<ffi::F32> albedo, ffi::Buffer<ffi::F32> normal, ffi::Buffer<ffi::F32> coeffs,
                     ffi::Buffer<ffi::F32> g_colour, ffi::ResultBuffer<ffi::F32> g_albedo,
                     ffi::ResultBuffer<ffi::F32> g_normal, ffi::ResultBuffer<ffi::F32> g_coeffs) {
  if (auto e = CheckColour(albedo, normal, coeffs); e.failure()) return e;
  if (auto e = CheckSame(g_colour, albedo, "g_colour"); e.failure()) return e;
  if (auto e = CheckSame(*g_albedo, albedo, "g_albedo"); e.failure()) return e;
  if (auto e = CheckSame(*g_normal, albedo, "g_normal"); e.failure()) return e;
  if (auto e = meshfit::CheckDims(*g_coeffs, {9, 3}, "g_coeffs", "[9, 3]"); e.failure()) return e;
  return meshfit::Guarded("meshfit_colour_bwd", [&] {
    const int64_t P = int64_t(albedo.element_count()) / 3;
    const float *al = albedo.typed_data(), *nr = normal.typed_data(), *co = coeffs.typed_data();
    const float* g = g_colour.typed_data();
    float *ga = g_albedo->typed_data(), *gn = g_normal->typed_data();
    const int64_t blocks = (P + kBlock - 1) / kBlock;
    std::vector<double> partial(size_t(blocks) * 27, 0.0);
    meshfit::ParallelFor(blocks, [&](int64_t blk) {
      double* gc = partial.data() + blk * 27;
      Pixel px;
      for (int64_t i = blk * kBlock; i < std::min(P, (blk + 1) * kBlock); ++i) {
        Shade(al + 3 * i, nr + 3 * i, co, nullptr, px);
        Backprop(px, al + 3 * i, co, g + 3 * i, ga + 3 * i, gn + 3 * i, gc);
      }
    });
    SumBlocks(partial, blocks, g_coeffs->typed_data());
    return ffi::Error::Success();
  });
}

}  // namespace

extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitColourFwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitColourBwd(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitColourFwd, ColourFwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitColourBwd, ColourBwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitShadeFwd(XLA_FFI_CallFrame*);
extern "C" MESHFIT_EXPORT XLA_FFI_Error* MeshfitShadeBwd(XLA_FFI_CallFrame*);

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitShadeFwd, ShadeFwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeshfitShadeBwd, ShadeBwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
