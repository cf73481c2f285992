/* meshfit runtime: loader and forward pass. The file format and the API are in meshfit_runtime.h. */
#include "meshfit_runtime.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { DT_F32 = 0, DT_F16 = 1, DT_I8 = 2, DT_I16 = 3, DT_I32 = 4, DT_U8 = 5, DT_COUNT = 6 };
static const size_t DT_SIZE[DT_COUNT] = {4, 2, 1, 2, 4, 1};
#define NAME_LEN 56
#define VIEW_OUTPUTS 10
#define DEPTH_PULL 0.05f

/* ---- reading little-endian fields (the file's byte order, whatever the host's alignment) ---- */

static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint32_t crc32(const unsigned char *p, size_t n) {
  uint32_t table[256]; /* on the stack: no global state */
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      bits = sign | exp << 23 | (man & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* ---- the tensor table ---- */

typedef struct {
  char name[NAME_LEN];
  uint32_t dtype, ndim, shape[4];
  uint64_t offset, nbytes;
} entry;

typedef struct {
  const unsigned char *base;
  entry e[MFR_MAX_TENSORS];
  uint32_t count;
} table;

static const entry *find(const table *t, const char *name) {
  for (uint32_t i = 0; i < t->count; i++)
    if (strncmp(t->e[i].name, name, NAME_LEN) == 0) return &t->e[i];
  return NULL;
}

/* A tensor of `dtype` with exactly the shape `d0..d3` (unused dimensions 1). */
static int get(const table *t, const char *name, uint32_t dtype, uint32_t d0, uint32_t d1, uint32_t d2,
               uint32_t d3, const void **out) {
  const entry *e = find(t, name);
  if (!e) return MFR_ERR_MISSING;
  if (e->dtype != dtype || e->shape[0] != d0 || e->shape[1] != d1 || e->shape[2] != d2 || e->shape[3] != d3)
    return MFR_ERR_SHAPE;
  *out = t->base + e->offset;
  return MFR_OK;
}

/* A layer's weight (f32, f16 or i8 with a scale per output channel) of shape d0 x d1 x d2 x d3 whose
 * last used dimension is the `out` outputs, and its bias [out]. */
static int get_layer(const table *t, const char *prefix, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t d3,
                     uint32_t out, int bias, mfr_layer *layer) {
  char name[NAME_LEN + 16];
  int err;
  snprintf(name, sizeof name, "%s.weight", prefix);
  const entry *e = find(t, name);
  if (!e) return MFR_ERR_MISSING;
  if (e->dtype != DT_F32 && e->dtype != DT_F16 && e->dtype != DT_I8) return MFR_ERR_SHAPE;
  if ((err = get(t, name, e->dtype, d0, d1, d2, d3, &layer->weight.data))) return err;
  layer->weight.dtype = e->dtype;
  memcpy(layer->weight.shape, e->shape, sizeof e->shape);
  layer->weight.scale = NULL;
  if (e->dtype == DT_I8) {
    snprintf(name, sizeof name, "%s.scale", prefix);
    if ((err = get(t, name, DT_F32, out, 1, 1, 1, (const void **)&layer->weight.scale))) return err;
  }
  layer->bias = NULL;
  if (bias) {
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((err = get(t, name, DT_F32, out, 1, 1, 1, (const void **)&layer->bias))) return err;
  }
  layer->out = (int)out;
  layer->in = (int)(((uint64_t)d0 * d1 * d2 * d3) / out);
  layer->stride = 1;
  return MFR_OK;
}

static int read_table(table *t, const unsigned char *buf, size_t size) {
  if (size < MFR_HEADER_SIZE) return MFR_ERR_TRUNCATED;
  if (memcmp(buf, "MESHFIT\x1a", 8) != 0) return MFR_ERR_MAGIC;
  uint32_t tag = rd32(buf + 12);
  if (tag != 0x01020304u) return tag == 0x04030201u ? MFR_ERR_ENDIAN : MFR_ERR_HEADER;
  if (rd32(buf + 8) != MFR_FORMAT_VERSION) return MFR_ERR_VERSION;
  uint32_t header = rd32(buf + 16), align = rd32(buf + 20), count = rd32(buf + 24), crc = rd32(buf + 28);
  uint64_t fsize = rd64(buf + 32);
  if (header != MFR_HEADER_SIZE || align == 0 || align > 4096 || (align & (align - 1)) || count == 0 ||
      count > MFR_MAX_TENSORS)
    return MFR_ERR_HEADER;
  if (fsize > size) return MFR_ERR_TRUNCATED;
  if (fsize < (uint64_t)header + (uint64_t)count * MFR_ENTRY_SIZE) return MFR_ERR_HEADER;
  if (crc32(buf + header, (size_t)(fsize - header)) != crc) return MFR_ERR_CHECKSUM;
  t->base = buf;
  t->count = count;
  uint64_t data_start = (uint64_t)header + (uint64_t)count * MFR_ENTRY_SIZE;
  for (uint32_t i = 0; i < count; i++) {
    const unsigned char *p = buf + header + (size_t)i * MFR_ENTRY_SIZE;
    entry *e = &t->e[i];
    memcpy(e->name, p, NAME_LEN);
    if (memchr(e->name, 0, NAME_LEN) == NULL || e->name[0] == 0) return MFR_ERR_TABLE;
    e->dtype = rd32(p + 56);
    e->ndim = rd32(p + 60);
    if (e->dtype >= DT_COUNT || e->ndim > 4) return MFR_ERR_TABLE;
    uint64_t n = 1;
    for (int k = 0; k < 4; k++) {
      e->shape[k] = rd32(p + 64 + 4 * k);
      if ((uint32_t)k >= e->ndim && e->shape[k] != 1) return MFR_ERR_TABLE;
      if (e->shape[k] > (1u << 28)) return MFR_ERR_TABLE; /* keeps the product below 2^63 */
      n *= e->shape[k];
      if (n > ((uint64_t)1 << 40)) return MFR_ERR_TABLE;
    }
    e->offset = rd64(p + 80);
    e->nbytes = rd64(p + 88);
    if (e->nbytes != n * DT_SIZE[e->dtype] || e->offset % align || e->offset < data_start ||
        e->offset > fsize || e->nbytes > fsize - e->offset)
      return MFR_ERR_TABLE;
    for (uint32_t j = 0; j < i; j++) {
      const entry *o = &t->e[j];
      if (strncmp(o->name, e->name, NAME_LEN) == 0) return MFR_ERR_TABLE;
      if (e->nbytes && o->nbytes && e->offset < o->offset + o->nbytes && o->offset < e->offset + e->nbytes)
        return MFR_ERR_TABLE;
    }
  }
  return MFR_OK;
}

/* ---- loading ---- */

size_t mfr_model_size(void) { return sizeof(mfr_model); }

int mfr_param_count(const mfr_model *m) { return m->meta[MFR_META_COEFFS] + 13; }

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

int mfr_load(mfr_model *m, const void *buf, size_t size) {
  if (!m || !buf) return MFR_ERR_ARGUMENT;
  memset(m, 0, sizeof *m);
  table t;
  int err = read_table(&t, (const unsigned char *)buf, size);
  if (err) return err;
  const entry *me = find(&t, "meta");
  if (!me) return MFR_ERR_MISSING;
  const void *p;
  if ((err = get(&t, "meta", DT_I32, MFR_META_COUNT, 1, 1, 1, &p))) return err;
  memcpy(m->meta, p, sizeof m->meta); /* the file is little-endian, and so is this host (checked above) */
  const int32_t *M = m->meta;
  int N = M[MFR_META_VIEWS], H = M[MFR_META_IMAGE_H], W = M[MFR_META_IMAGE_W], h = M[MFR_META_NET_H],
      w = M[MFR_META_NET_W], C = M[MFR_META_CHANNELS], L = M[MFR_META_CONVS], E = M[MFR_META_FEATURES],
      K = M[MFR_META_COEFFS], V = M[MFR_META_VERTICES], F = M[MFR_META_FACES];
  if ((M[MFR_META_KIND] != 0 && M[MFR_META_KIND] != 1) || N < 1 || N > MFR_MAX_VIEWS || h < 1 || w < 1 ||
      h > 4096 || w > 4096 || H < h || W < w || H > 16384 || W > 16384 || H % h || W % w || C < 1 ||
      C > MFR_MAX_CHANNELS || L < 1 || L > MFR_MAX_CONVS || E < 1 || E > (1 << 16) || K < 0 || K > (1 << 16) ||
      V < 1 || V > (1 << 24) || F < 0 || F > (1 << 25) || (M[MFR_META_KIND] == 1 && K != 0))
    return MFR_ERR_META;
  for (int c = 0; c < C; c++) {
    int kind = M[MFR_META_CHANNEL0 + c];
    if (kind < MFR_CHANNEL_MASK || kind > MFR_CHANNEL_DEPTH) return MFR_ERR_META;
  }
  if ((err = get(&t, "rig.intrinsics", DT_F32, N, 4, 1, 1, (const void **)&m->intrinsics)) ||
      (err = get(&t, "rig.rotation", DT_F32, N, 3, 3, 1, (const void **)&m->rotation)) ||
      (err = get(&t, "rig.translation", DT_F32, N, 3, 1, 1, (const void **)&m->translation)) ||
      (err = get(&t, "task.geometry", DT_F32, 7, 1, 1, 1, (const void **)&m->geometry)) ||
      (err = get(&t, "decode.scale", DT_F32, 2, 1, 1, 1, (const void **)&m->scale_range)) ||
      (err = get(&t, "model.base", DT_F32, V, 3, 1, 1, (const void **)&m->base)))
    return err;
  if (K > 0 && ((err = get(&t, "decode.ranges", DT_F32, K, 2, 1, 1, (const void **)&m->ranges)) ||
                (err = get(&t, "decode.bounds", DT_F32, K, 2, 1, 1, (const void **)&m->bounds))))
    return err;
  if (F > 0 && (err = get(&t, "model.faces", DT_I32, F, 3, 1, 1, (const void **)&m->faces))) return err;
  if (m->faces)
    for (size_t i = 0; i < (size_t)F * 3; i++)
      if (m->faces[i] < 0 || m->faces[i] >= V) return MFR_ERR_SHAPE;
  if (!(m->geometry[6] > 0) || !(m->scale_range[0] > 0) || !(m->scale_range[1] > 0)) return MFR_ERR_SHAPE;
  if (K > 0) {
    const entry *b = find(&t, "model.basis");
    if (!b) return MFR_ERR_MISSING;
    if (b->dtype != DT_F32 && b->dtype != DT_F16 && b->dtype != DT_I16) return MFR_ERR_SHAPE;
    if ((err = get(&t, "model.basis", b->dtype, K, V, 3, 1, &m->basis.data))) return err;
    m->basis.dtype = b->dtype;
    if (b->dtype == DT_I16 &&
        (err = get(&t, "model.basis_scale", DT_F32, K, 1, 1, 1, (const void **)&m->basis.scale)))
      return err;
  }
  /* The convolutions: channels from the first layer, sizes halving at each stride-2 layer. */
  int cin = C + 2, hh = h, ww = w;
  size_t act = (size_t)h * w * cin, pad = 0;
  for (int i = 0; i < L; i++) {
    char name[24];
    snprintf(name, sizeof name, "conv%d", i);
    const entry *e = NULL;
    char wname[40];
    snprintf(wname, sizeof wname, "%s.weight", name);
    if (!(e = find(&t, wname))) return MFR_ERR_MISSING;
    uint32_t out = e->shape[3];
    if (out < 1 || out > 4096) return MFR_ERR_SHAPE;
    if ((err = get_layer(&t, name, 3, 3, (uint32_t)cin, out, out, 1, &m->convs[i]))) return err;
    m->convs[i].in = cin; /* per pixel; the 3x3 window is implied */
    m->convs[i].stride = (M[MFR_META_STRIDES] >> i & 1) ? 2 : 1;
    int s = m->convs[i].stride;
    pad = max_size(pad, (size_t)(hh + 2) * (ww + 2) * cin);
    hh = (hh + s - 1) / s;
    ww = (ww + s - 1) / s;
    cin = (int)out;
    act = max_size(act, (size_t)hh * ww * cin);
  }
  size_t flat = (size_t)hh * ww * cin;
  if (flat > (1u << 28)) return MFR_ERR_SHAPE;
  if ((err = get_layer(&t, "embed", (uint32_t)flat, E, 1, 1, E, 1, &m->embed)) ||
      (err = get_layer(&t, "view_head", E, VIEW_OUTPUTS - 1, 1, 1, VIEW_OUTPUTS - 1, 1, &m->view_head)) ||
      (err = get_layer(&t, "confidence", E, 1, 1, 1, 1, 0, &m->confidence)) ||
      (err = get_layer(&t, "pool_hidden", E, E, 1, 1, E, 1, &m->pool_hidden)) ||
      (err = get_layer(&t, "pool_head", E, K + 1, 1, 1, K + 1, 1, &m->pool_head)))
    return err;
  /* Arena: the view's input, two activations, per-view features and outputs, pooled vectors, room
   * for summing image rows. */
  m->act_floats = act;
  m->pad_floats = pad;
  m->arena_floats = (size_t)h * w * (C + 2) + 2 * act + pad + (size_t)N * (E + VIEW_OUTPUTS) + 2 * (size_t)E +
                    (size_t)K + 1 + 4 * (size_t)W;
  return MFR_OK;
}

size_t mfr_arena_size(const mfr_model *m) { return m ? m->arena_floats * sizeof(float) : 0; }

/* ---- the forward pass ---- */

/* y[0, n) += a * W[offset, offset + n): one input's contribution to every output, contiguous in
 * both, so the compiler vectorises it without reassociating any sum (the order of the additions is
 * JAX's up to the order of the inputs). */
static void axpy(float a, const mfr_tensor *w, size_t offset, float *y, int n) {
  switch (w->dtype) {
    case DT_F32: {
      const float *q = (const float *)w->data + offset;
      for (int o = 0; o < n; o++) y[o] += a * q[o];
      break;
    }
    case DT_F16: {
      const uint16_t *q = (const uint16_t *)w->data + offset;
      for (int o = 0; o < n; o++) y[o] += a * half_to_float(q[o]);
      break;
    }
    default: {
      const int8_t *q = (const int8_t *)w->data + offset;
      for (int o = 0; o < n; o++) y[o] += a * (float)q[o];
    }
  }
}

/* Per output channel: the int8 scale, the bias, the ReLU. */
static void finish(const mfr_layer *l, float *y, int relu) {
  for (int o = 0; o < l->out; o++) {
    float v = l->weight.scale ? y[o] * l->weight.scale[o] : y[o];
    if (l->bias) v += l->bias[o];
    y[o] = relu && v < 0 ? 0.0f : v;
  }
}

/* y = act(x W + b) for a dense layer, W [in, out]. */
static void dense(const mfr_layer *l, const float *x, float *y, int relu) {
  memset(y, 0, sizeof(float) * (size_t)l->out);
  for (int i = 0; i < l->in; i++)
    if (x[i] != 0.0f) axpy(x[i], &l->weight, (size_t)i * l->out, y, l->out); /* ReLU zeros add nothing */
  finish(l, y, relu);
}

/* One output pixel of a 3x3 convolution (taps outside the image skipped), before `finish`. */
static void conv_pixel(const mfr_layer *l, const float *x, int H, int W, int iy0, int ix0, float *out) {
  int I = l->in, O = l->out;
  memset(out, 0, sizeof(float) * (size_t)O);
  for (int ky = 0; ky < 3; ky++) {
    int iy = iy0 + ky;
    if (iy < 0 || iy >= H) continue;
    for (int kx = 0; kx < 3; kx++) {
      int ix = ix0 + kx;
      if (ix < 0 || ix >= W) continue;
      const float *px = x + ((size_t)iy * W + ix) * I;
      size_t tap = (size_t)(ky * 3 + kx) * I;
      for (int ci = 0; ci < I; ci++)
        if (px[ci] != 0.0f) axpy(px[ci], &l->weight, (tap + ci) * O, out, O); /* ReLU zeros add nothing */
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* AVX2 + FMA (compiled in with -mavx2 -mfma, or -march=x86-64-v3): 4 neighbouring output pixels x
 * 16 (then 8) channels accumulate in registers over the taps and input channels; O a multiple of 8,
 * and the 4 pixels' taps all inside x (the caller pads it). Weights f32, i8 (converted in
 * registers; the scale comes in `finish`) and, with F16C (-mf16c), f16. */
#define MFR_SIMD "avx2"
#define SIMD_CONV 1
#define LOAD_F32(p, i) _mm256_loadu_ps((const float *)(p) + (i))
#define LOAD_I8(p, i) \
  _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)(p) + (i)))))
#define LOAD_F16(p, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(p) + (i))))
/* The int8 scale, the bias and the ReLU of 8 output channels, in registers. */
static inline __m256 finish8(__m256 a, const float *scale, const float *bias, int o) {
  if (scale) a = _mm256_mul_ps(a, _mm256_loadu_ps(scale + o));
  if (bias) a = _mm256_add_ps(a, _mm256_loadu_ps(bias + o));
  return _mm256_max_ps(a, _mm256_setzero_ps());
}
#define CONV_BLOCK(NAME, LOAD)                                                                                 \
  static void NAME(const void *wt, const float *sc, const float *bi, const float *x, int W, int I, int O,      \
                   int iy0, int ix0, int s, float *out) {                                                      \
    size_t step = (size_t)s * I;                                                                               \
    int o0 = 0;                                                                                                \
    for (; o0 + 16 <= O; o0 += 16) { /* two weight rows per four broadcasts */                                 \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;          \
      for (int ky = 0; ky < 3; ky++)                                                                           \
        for (int kx = 0; kx < 3; kx++) {                                                                       \
          const float *px = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * I;                                       \
          size_t wr = (size_t)(ky * 3 + kx) * I * O + o0;                                                      \
          for (int ci = 0; ci < I; ci++) {                                                                     \
            __m256 w = LOAD(wt, wr + (size_t)ci * O), v = LOAD(wt, wr + (size_t)ci * O + 8);                   \
            __m256 x0 = _mm256_broadcast_ss(px + ci), x1 = _mm256_broadcast_ss(px + step + ci);                \
            __m256 x2 = _mm256_broadcast_ss(px + 2 * step + ci), x3 = _mm256_broadcast_ss(px + 3 * step + ci); \
            a0 = _mm256_fmadd_ps(x0, w, a0);                                                                   \
            b0 = _mm256_fmadd_ps(x0, v, b0);                                                                   \
            a1 = _mm256_fmadd_ps(x1, w, a1);                                                                   \
            b1 = _mm256_fmadd_ps(x1, v, b1);                                                                   \
            a2 = _mm256_fmadd_ps(x2, w, a2);                                                                   \
            b2 = _mm256_fmadd_ps(x2, v, b2);                                                                   \
            a3 = _mm256_fmadd_ps(x3, w, a3);                                                                   \
            b3 = _mm256_fmadd_ps(x3, v, b3);                                                                   \
          }                                                                                                    \
        }                                                                                                      \
      _mm256_storeu_ps(out + o0, finish8(a0, sc, bi, o0));                                                     \
      _mm256_storeu_ps(out + o0 + 8, finish8(b0, sc, bi, o0 + 8));                                             \
      _mm256_storeu_ps(out + O + o0, finish8(a1, sc, bi, o0));                                                 \
      _mm256_storeu_ps(out + O + o0 + 8, finish8(b1, sc, bi, o0 + 8));                                         \
      _mm256_storeu_ps(out + 2 * (size_t)O + o0, finish8(a2, sc, bi, o0));                                     \
      _mm256_storeu_ps(out + 2 * (size_t)O + o0 + 8, finish8(b2, sc, bi, o0 + 8));                             \
      _mm256_storeu_ps(out + 3 * (size_t)O + o0, finish8(a3, sc, bi, o0));                                     \
      _mm256_storeu_ps(out + 3 * (size_t)O + o0 + 8, finish8(b3, sc, bi, o0 + 8));                             \
    }                                                                                                          \
    for (; o0 < O; o0 += 8) {                                                                                  \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                              \
      for (int ky = 0; ky < 3; ky++)                                                                           \
        for (int kx = 0; kx < 3; kx++) {                                                                       \
          const float *px = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * I;                                       \
          size_t wr = (size_t)(ky * 3 + kx) * I * O + o0;                                                      \
          for (int ci = 0; ci < I; ci++) {                                                                     \
            __m256 w = LOAD(wt, wr + (size_t)ci * O);                                                          \
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(px + ci), w, a0);                                         \
            a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(px + step + ci), w, a1);                                  \
            a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(px + 2 * step + ci), w, a2);                              \
            a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(px + 3 * step + ci), w, a3);                              \
          }                                                                                                    \
        }                                                                                                      \
      _mm256_storeu_ps(out + o0, finish8(a0, sc, bi, o0));                                                     \
      _mm256_storeu_ps(out + O + o0, finish8(a1, sc, bi, o0));                                                 \
      _mm256_storeu_ps(out + 2 * (size_t)O + o0, finish8(a2, sc, bi, o0));                                     \
      _mm256_storeu_ps(out + 3 * (size_t)O + o0, finish8(a3, sc, bi, o0));                                     \
    }                                                                                                          \
  }
CONV_BLOCK(conv_block_f32, LOAD_F32)
CONV_BLOCK(conv_block_i8, LOAD_I8)
#ifdef __F16C__
#define SIMD_F16 1
CONV_BLOCK(conv_block_f16, LOAD_F16)
#endif

#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
/* NEON (every AArch64 CPU, no flag needed): 4 neighbouring output pixels x 8 channels (two 4-lane
 * registers each) accumulate over the taps and input channels, as the AVX2 path; weights f32, i8 and
 * f16 converted in registers. */
#define MFR_SIMD "neon"
#define SIMD_CONV 1
#define SIMD_F16 1
/* The int8 scale, the bias and the ReLU of 4 output channels, in registers. */
static inline float32x4_t finish4(float32x4_t a, const float *scale, const float *bias, int o) {
  if (scale) a = vmulq_f32(a, vld1q_f32(scale + o));
  if (bias) a = vaddq_f32(a, vld1q_f32(bias + o));
  return vmaxq_f32(a, vdupq_n_f32(0.0f));
}
#define LOAD_F32(p, i, lo, hi)                    \
  do {                                            \
    lo = vld1q_f32((const float *)(p) + (i));     \
    hi = vld1q_f32((const float *)(p) + (i) + 4); \
  } while (0)
#define LOAD_I8(p, i, lo, hi)                                       \
  do {                                                              \
    int16x8_t wide = vmovl_s8(vld1_s8((const int8_t *)(p) + (i)));  \
    lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)));              \
    hi = vcvtq_f32_s32(vmovl_high_s16(wide));                       \
  } while (0)
#define LOAD_F16(p, i, lo, hi)                                         \
  do {                                                                 \
    lo = vcvt_f32_f16(vld1_f16((const float16_t *)(p) + (i)));         \
    hi = vcvt_f32_f16(vld1_f16((const float16_t *)(p) + (i) + 4));     \
  } while (0)
#define CONV_BLOCK(NAME, LOAD)                                                                            \
  static void NAME(const void *wt, const float *sc, const float *bi, const float *x, int W, int I, int O, \
                   int iy0, int ix0, int s, float *out) {                                                 \
    size_t step = (size_t)s * I;                                                                          \
    for (int o0 = 0; o0 < O; o0 += 8) {                                                                   \
      float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;  \
      for (int ky = 0; ky < 3; ky++)                                                                      \
        for (int kx = 0; kx < 3; kx++) {                                                                  \
          const float *px = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * I;                                  \
          size_t wr = (size_t)(ky * 3 + kx) * I * O + o0;                                                 \
          for (int ci = 0; ci < I; ci++) {                                                                \
            float32x4_t w, v;                                                                             \
            LOAD(wt, wr + (size_t)ci * O, w, v);                                                          \
            float x0 = px[ci], x1 = px[step + ci], x2 = px[2 * step + ci], x3 = px[3 * step + ci];        \
            a0 = vfmaq_n_f32(a0, w, x0);                                                                  \
            b0 = vfmaq_n_f32(b0, v, x0);                                                                  \
            a1 = vfmaq_n_f32(a1, w, x1);                                                                  \
            b1 = vfmaq_n_f32(b1, v, x1);                                                                  \
            a2 = vfmaq_n_f32(a2, w, x2);                                                                  \
            b2 = vfmaq_n_f32(b2, v, x2);                                                                  \
            a3 = vfmaq_n_f32(a3, w, x3);                                                                  \
            b3 = vfmaq_n_f32(b3, v, x3);                                                                  \
          }                                                                                               \
        }                                                                                                 \
      float *o = out + o0;                                                                                \
      vst1q_f32(o, finish4(a0, sc, bi, o0));                                                              \
      vst1q_f32(o + 4, finish4(b0, sc, bi, o0 + 4));                                                      \
      vst1q_f32(o + O, finish4(a1, sc, bi, o0));                                                          \
      vst1q_f32(o + O + 4, finish4(b1, sc, bi, o0 + 4));                                                  \
      vst1q_f32(o + 2 * (size_t)O, finish4(a2, sc, bi, o0));                                              \
      vst1q_f32(o + 2 * (size_t)O + 4, finish4(b2, sc, bi, o0 + 4));                                      \
      vst1q_f32(o + 3 * (size_t)O, finish4(a3, sc, bi, o0));                                              \
      vst1q_f32(o + 3 * (size_t)O + 4, finish4(b3, sc, bi, o0 + 4));                                      \
    }                                                                                                     \
  }
CONV_BLOCK(conv_block_f32, LOAD_F32)
CONV_BLOCK(conv_block_i8, LOAD_I8)
CONV_BLOCK(conv_block_f16, LOAD_F16)

#else
#define MFR_SIMD "scalar"
#define SIMD_CONV 0
#endif

#if SIMD_CONV
/* 4 output pixels through the SIMD path, finished (scale, bias, ReLU), if it applies: returns 0 when
 * it does not. */
static int conv_block(const mfr_layer *l, const float *x, int H, int W, int iy0, int ix0, int s, float *out) {
  int I = l->in, O = l->out;
  const float *sc = l->weight.scale, *bi = l->bias;
  if (O % 8 || ix0 < 0 || iy0 < 0 || iy0 + 2 >= H || ix0 + 3 * s + 2 >= W) return 0;
  switch (l->weight.dtype) {
    case DT_F32: conv_block_f32(l->weight.data, sc, bi, x, W, I, O, iy0, ix0, s, out); return 1;
    case DT_I8: conv_block_i8(l->weight.data, sc, bi, x, W, I, O, iy0, ix0, s, out); return 1;
#ifdef SIMD_F16
    case DT_F16: conv_block_f16(l->weight.data, sc, bi, x, W, I, O, iy0, ix0, s, out); return 1;
#endif
    default: return 0;
  }
}
#else
static int conv_block(const mfr_layer *l, const float *x, int H, int W, int iy0, int ix0, int s, float *out) {
  (void)l, (void)x, (void)H, (void)W, (void)iy0, (void)ix0, (void)s, (void)out;
  return 0;
}
#endif

const char *mfr_simd(void) { return MFR_SIMD; }

/* 3x3 convolution, SAME padding (XLA's: the odd pixel of padding after), ReLU; W [3, 3, I, O].
 * x [H, W, I] -> y [Ho, Wo, O]. Where the SIMD path applies, the input is first copied into `pad`
 * [H + 2, W + 2, I] with a zero border, so that every block of 4 pixels has all its taps inside;
 * a row's last pixels (Wo not a multiple of 4) go through conv_pixel. */
static void conv3x3(const mfr_layer *l, const float *x, int H, int W, float *pad, float *y, int *Ho, int *Wo) {
  int s = l->stride, O = l->out, I = l->in;
  int oh = (H + s - 1) / s, ow = (W + s - 1) / s;
  int pad_h = ((oh - 1) * s + 3 - H) > 0 ? ((oh - 1) * s + 3 - H) / 2 : 0;
  int pad_w = ((ow - 1) * s + 3 - W) > 0 ? ((ow - 1) * s + 3 - W) / 2 : 0;
  int blocks = SIMD_CONV && O % 8 == 0 && ow >= 4;
  if (blocks) {
    size_t row = (size_t)(W + 2) * I;
    memset(pad, 0, sizeof(float) * row);
    memset(pad + (size_t)(H + 1) * row, 0, sizeof(float) * row);
    for (int iy = 0; iy < H; iy++) {
      float *dst = pad + (size_t)(iy + 1) * row;
      memset(dst, 0, sizeof(float) * (size_t)I);
      memcpy(dst + I, x + (size_t)iy * W * I, sizeof(float) * (size_t)W * I);
      memset(dst + (size_t)(W + 1) * I, 0, sizeof(float) * (size_t)I);
    }
  }
  for (int oy = 0; oy < oh; oy++) {
    int ox = 0;
    while (ox < ow) {
      float *out = y + ((size_t)oy * ow + ox) * O;
      if (blocks && ox + 4 <= ow &&
          conv_block(l, pad, H + 2, W + 2, oy * s - pad_h + 1, ox * s - pad_w + 1, s, out)) {
        ox += 4;
      } else {
        conv_pixel(l, x, H, W, oy * s - pad_h, ox * s - pad_w, out);
        finish(l, out, 1);
        ox += 1;
      }
    }
  }
  *Ho = oh;
  *Wo = ow;
}

/* The network's input for view n: [h, w, C + 2] (the channels, then the two ray channels). Each
 * channel is the mean of fy x fx pixel blocks (depth: over the covered pixels, > 0): a block row's fy
 * image rows are summed first into `rows` [4 W] (contiguous, so the compiler vectorises it), then
 * each block's fx neighbours. */
static void view_input(const mfr_model *m, const float *images, int n, float *in, float *rows) {
  const int32_t *M = m->meta;
  int H = M[MFR_META_IMAGE_H], W = M[MFR_META_IMAGE_W], h = M[MFR_META_NET_H], w = M[MFR_META_NET_W];
  int C = M[MFR_META_CHANNELS], fy = H / h, fx = W / w, stride = C + 2;
  const float *R = m->rotation + 9 * n, *t = m->translation + 3 * n, *K = m->intrinsics + 4 * n;
  const float *target = m->geometry, radius = m->geometry[6];
  float z_ref = R[6] * target[0] + R[7] * target[1] + R[8] * target[2] + t[2];
  float inv = 1.0f / (float)(fy * fx);
  float *restrict sums = rows, *restrict covered = rows + 2 * (size_t)W;
  for (int c = 0; c < C; c++) {
    const float *img = images + ((size_t)n * C + c) * H * W;
    int depth = M[MFR_META_CHANNEL0 + c] == MFR_CHANNEL_DEPTH;
    for (int y = 0; y < h; y++) {
      memset(sums, 0, sizeof(float) * (size_t)W);
      if (depth) memset(covered, 0, sizeof(float) * (size_t)W);
      for (int dy = 0; dy < fy; dy++) {
        const float *restrict r = img + (size_t)(y * fy + dy) * W;
        if (depth) /* v > 0 tested on the bits: a float compare would keep the compiler from
                    * vectorising (it may trap on NaN); positive floats are the ints in (0, inf]. */
          for (int x = 0; x < W; x++) {
            int32_t bits;
            memcpy(&bits, r + x, 4);
            int32_t positive = (bits > 0) & (bits <= 0x7F800000), kept = bits & -positive;
            float v;
            memcpy(&v, &kept, 4);
            sums[x] += v;
            covered[x] += (float)positive;
          }
        else
          for (int x = 0; x < W; x++) sums[x] += r[x];
      }
      /* Pairs of neighbours summed while the block width is even, each level written after the
       * previous one (the rows have room for 2 W), so that the loop vectorises. */
      float *restrict sum_at = sums, *restrict cov_at = covered;
      int width = W, f = fx;
      for (; f % 2 == 0; f /= 2) {
        float *restrict next = sum_at + width;
        for (int x = 0; x < width / 2; x++) next[x] = sum_at[2 * x] + sum_at[2 * x + 1];
        sum_at = next;
        if (depth) {
          float *restrict cnext = cov_at + width;
          for (int x = 0; x < width / 2; x++) cnext[x] = cov_at[2 * x] + cov_at[2 * x + 1];
          cov_at = cnext;
        }
        width /= 2;
      }
      for (int x = 0; x < w; x++) {
        float sum = sum_at[x * f], cov = depth ? cov_at[x * f] : 0.0f;
        for (int dx = 1; dx < f; dx++) {
          sum += sum_at[x * f + dx];
          if (depth) cov += cov_at[x * f + dx];
        }
        float value = sum * inv;
        if (depth) {
          float d = cov > 0 ? (sum * inv) / (cov * inv) : 0.0f;
          value = d > 0 ? (d - z_ref) / radius : 0.0f;
        }
        in[((size_t)y * w + x) * stride + c] = value;
      }
    }
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float *px = in + ((size_t)y * w + x) * stride + C;
      px[0] = ((float)x - K[2]) / K[0];
      px[1] = ((float)y - K[3]) / K[1];
    }
}

static void six_d(const float *x, float R[9]) {
  float a[3] = {x[0], x[1], x[2]}, b[3] = {x[3], x[4], x[5]};
  float na = sqrtf(fmaxf(a[0] * a[0] + a[1] * a[1] + a[2] * a[2], 1e-12f));
  float e1[3] = {a[0] / na, a[1] / na, a[2] / na};
  float d = e1[0] * b[0] + e1[1] * b[1] + e1[2] * b[2];
  for (int i = 0; i < 3; i++) b[i] -= d * e1[i];
  float nb = sqrtf(fmaxf(b[0] * b[0] + b[1] * b[1] + b[2] * b[2], 1e-12f));
  float e2[3] = {b[0] / nb, b[1] / nb, b[2] / nb};
  float e3[3] = {e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]};
  for (int i = 0; i < 3; i++) {
    R[3 * i + 0] = e1[i];
    R[3 * i + 1] = e2[i];
    R[3 * i + 2] = e3[i];
  }
}

/* Solve the 3x3 system A x = b (A symmetric positive definite here) by Cramer's rule in double. */
static void solve3(const double A[9], const double b[3], double x[3]) {
  double c0 = A[4] * A[8] - A[5] * A[7], c1 = A[5] * A[6] - A[3] * A[8], c2 = A[3] * A[7] - A[4] * A[6];
  double det = A[0] * c0 + A[1] * c1 + A[2] * c2;
  double inv[9] = {c0, A[2] * A[7] - A[1] * A[8], A[1] * A[5] - A[2] * A[4],
                   c1, A[0] * A[8] - A[2] * A[6], A[2] * A[3] - A[0] * A[5],
                   c2, A[1] * A[6] - A[0] * A[7], A[0] * A[4] - A[1] * A[3]};
  for (int i = 0; i < 3; i++) x[i] = (inv[3 * i] * b[0] + inv[3 * i + 1] * b[1] + inv[3 * i + 2] * b[2]) / det;
}

static void decode(const mfr_model *m, const float *per_view, const float *pooled, const uint8_t *present,
                   float *params) {
  const int32_t *Mt = m->meta;
  int N = Mt[MFR_META_VIEWS], K = Mt[MFR_META_COEFFS];
  const float *target = m->geometry;
  /* Softmax of the confidences over the views present. */
  float wts[MFR_MAX_VIEWS], top = -INFINITY, total = 0.0f;
  for (int n = 0; n < N; n++)
    if (present[n] && per_view[n * VIEW_OUTPUTS + 9] > top) top = per_view[n * VIEW_OUTPUTS + 9];
  for (int n = 0; n < N; n++) {
    wts[n] = present[n] ? expf(per_view[n * VIEW_OUTPUTS + 9] - top) : 0.0f;
    total += wts[n];
  }
  for (int n = 0; n < N; n++) wts[n] /= total;
  /* Rotation: each view's, R_world = Rc^T R_view Rc; the weighted first two columns, re-orthonormalised. */
  float cols[6] = {0};
  double A[9] = {0}, rhs[3] = {0};
  for (int n = 0; n < N; n++) {
    if (!present[n]) continue;
    const float *pv = per_view + n * VIEW_OUTPUTS, *Rc = m->rotation + 9 * n, *t = m->translation + 3 * n;
    float r6[6] = {pv[0] + 1.0f, pv[1], pv[2], pv[3], pv[4] + 1.0f, pv[5]}, Rv[9], T[9], Rw[9];
    six_d(r6, Rv);
    for (int j = 0; j < 3; j++) /* T = R_view Rc */
      for (int l = 0; l < 3; l++) T[3 * j + l] = Rv[3 * j] * Rc[l] + Rv[3 * j + 1] * Rc[3 + l] + Rv[3 * j + 2] * Rc[6 + l];
    for (int i = 0; i < 3; i++) /* Rw = Rc^T T */
      for (int l = 0; l < 3; l++) Rw[3 * i + l] = Rc[i] * T[l] + Rc[3 + i] * T[3 + l] + Rc[6 + i] * T[6 + l];
    for (int i = 0; i < 3; i++) {
      cols[i] += wts[n] * Rw[3 * i];
      cols[3 + i] += wts[n] * Rw[3 * i + 1];
    }
    /* The centre: this view's ray through its predicted pixel, and the point at its predicted depth. */
    float pc[3], centre[3];
    for (int i = 0; i < 3; i++) pc[i] = Rc[3 * i] * target[0] + Rc[3 * i + 1] * target[1] + Rc[3 * i + 2] * target[2] + t[i];
    for (int i = 0; i < 3; i++) centre[i] = -(Rc[i] * t[0] + Rc[3 + i] * t[1] + Rc[6 + i] * t[2]);
    float ray[3] = {pv[6] + pc[0] / pc[2], pv[7] + pc[1] / pc[2], 1.0f};
    float z = pc[2] * expf(pv[8]), d[3], p[3];
    for (int i = 0; i < 3; i++) d[i] = Rc[i] * ray[0] + Rc[3 + i] * ray[1] + Rc[6 + i] * ray[2];
    for (int i = 0; i < 3; i++) p[i] = centre[i] + z * d[i];
    float nd = sqrtf(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    for (int i = 0; i < 3; i++) d[i] /= nd;
    for (int i = 0; i < 3; i++) {
      double pc_i = 0;
      for (int j = 0; j < 3; j++) {
        double proj = (i == j ? 1.0 : 0.0) - (double)d[i] * d[j];
        A[3 * i + j] += wts[n] * (proj + (i == j ? DEPTH_PULL : 0.0));
        pc_i += proj * centre[j];
      }
      rhs[i] += wts[n] * (pc_i + DEPTH_PULL * (double)p[i]);
    }
  }
  float *coeffs = params, *R = params + K, *position = params + K + 9;
  six_d(cols, R);
  double x[3];
  solve3(A, rhs, x);
  for (int i = 0; i < 3; i++) position[i] = (float)x[i];
  /* Coefficients: unbounded ones scaled by their sampling range, bounded ones a sigmoid onto their box. */
  for (int k = 0; k < K; k++) {
    float raw = pooled[k], r0 = m->ranges[2 * k], r1 = m->ranges[2 * k + 1];
    float lo = m->bounds[2 * k], hi = m->bounds[2 * k + 1];
    int bounded = isfinite(lo) && isfinite(hi);
    float mid = 0.5f * (r0 + r1), half = fmaxf(0.5f * (r1 - r0), 1e-3f), c;
    if (bounded) {
      float width = hi - lo, frac = fminf(fmaxf((mid - lo) / width, 1e-3f), 1 - 1e-3f);
      float arg = 2.0f * raw + logf(frac / (1 - frac));
      c = lo + width / (1.0f + expf(-arg));
    } else {
      c = mid + half * raw;
    }
    coeffs[k] = fminf(fmaxf(c, lo), hi);
  }
  float s_lo = logf(m->scale_range[0]), s_hi = logf(m->scale_range[1]);
  params[K + 12] = expf(0.5f * (s_lo + s_hi) + 0.5f * (s_hi - s_lo) * pooled[K]);
}

/* vertices [V, 3] = s R (base + sum_k c_k basis_k - centre) + position: the basis summed a whole
 * coefficient row at a time (contiguous, so the compiler vectorises it), zero coefficients skipped. */
static void decode_vertices(const mfr_model *m, const float *params, float *out) {
  int K = m->meta[MFR_META_COEFFS], V = m->meta[MFR_META_VERTICES];
  size_t n = (size_t)V * 3;
  const float *R = params + K, *position = params + K + 9, *c = m->geometry + 3;
  float s = params[K + 12];
  memcpy(out, m->base, sizeof(float) * n);
  for (int k = 0; k < K; k++) {
    float ck = params[k];
    if (ck == 0.0f) continue;
    if (m->basis.dtype == DT_F32) {
      const float *b = (const float *)m->basis.data + (size_t)k * n;
      for (size_t i = 0; i < n; i++) out[i] += ck * b[i];
    } else if (m->basis.dtype == DT_F16) {
      const uint16_t *b = (const uint16_t *)m->basis.data + (size_t)k * n;
      for (size_t i = 0; i < n; i++) out[i] += ck * half_to_float(b[i]);
    } else {
      const int16_t *b = (const int16_t *)m->basis.data + (size_t)k * n;
      float cs = ck * m->basis.scale[k];
      for (size_t i = 0; i < n; i++) out[i] += cs * (float)b[i];
    }
  }
  for (int v = 0; v < V; v++) {
    float *p = out + 3 * (size_t)v, x[3] = {p[0] - c[0], p[1] - c[1], p[2] - c[2]};
    for (int i = 0; i < 3; i++) p[i] = s * (R[3 * i] * x[0] + R[3 * i + 1] * x[1] + R[3 * i + 2] * x[2]) + position[i];
  }
}

int mfr_run(const mfr_model *m, void *arena, size_t arena_size, const float *images, const uint8_t *present,
            float *params, float *vertices) {
  if (!m || !arena || !images || !params || !m->arena_floats) return MFR_ERR_ARGUMENT;
  if (arena_size < mfr_arena_size(m)) return MFR_ERR_ARENA;
  const int32_t *M = m->meta;
  int N = M[MFR_META_VIEWS], h = M[MFR_META_NET_H], w = M[MFR_META_NET_W], C = M[MFR_META_CHANNELS];
  int L = M[MFR_META_CONVS], E = M[MFR_META_FEATURES], K = M[MFR_META_COEFFS];
  uint8_t all[MFR_MAX_VIEWS];
  if (!present) {
    memset(all, 1, sizeof all);
    present = all;
  }
  int given = 0;
  for (int n = 0; n < N; n++) given += present[n] != 0;
  if (!given) return MFR_ERR_VIEWS;
  float *in = (float *)arena, *a = in + (size_t)h * w * (C + 2);
  float *b = a + m->act_floats, *pad = b + m->act_floats, *features = pad + m->pad_floats;
  float *per_view = features + (size_t)N * E, *pooled = per_view + N * VIEW_OUTPUTS, *hidden = pooled + E,
        *head = hidden + E, *rows = head + K + 1;
  for (int n = 0; n < N; n++) {
    if (!present[n]) continue;
    view_input(m, images, n, in, rows);
    const float *x = in;
    float *y = a;
    int H = h, W = w;
    for (int i = 0; i < L; i++) {
      conv3x3(&m->convs[i], x, H, W, pad, y, &H, &W);
      x = y;
      y = (y == a) ? b : a;
    }
    float *f = features + (size_t)n * E;
    dense(&m->embed, x, f, 1);
    dense(&m->view_head, f, per_view + n * VIEW_OUTPUTS, 0);
    dense(&m->confidence, f, per_view + n * VIEW_OUTPUTS + 9, 0);
  }
  for (int e = 0; e < E; e++) {
    float sum = 0.0f;
    for (int n = 0; n < N; n++)
      if (present[n]) sum += features[(size_t)n * E + e];
    pooled[e] = sum / (float)given;
  }
  dense(&m->pool_hidden, pooled, hidden, 1);
  dense(&m->pool_head, hidden, head, 0);
  decode(m, per_view, head, present, params);
  if (vertices) decode_vertices(m, params, vertices);
  return MFR_OK;
}

const char *mfr_error_string(int code) {
  switch (code) {
    case MFR_OK: return "ok";
    case MFR_ERR_ARGUMENT: return "a NULL pointer or an impossible size was passed";
    case MFR_ERR_TRUNCATED: return "the buffer is shorter than the model file (truncated)";
    case MFR_ERR_MAGIC: return "not a meshfit runtime model (bad magic)";
    case MFR_ERR_VERSION: return "a model format version this runtime does not read";
    case MFR_ERR_ENDIAN: return "the model was written for another byte order";
    case MFR_ERR_HEADER: return "the header is malformed (size, alignment or tensor count)";
    case MFR_ERR_CHECKSUM: return "the checksum does not match: the file is damaged";
    case MFR_ERR_TABLE: return "a tensor table entry is malformed (name, dtype, shape, offset or size)";
    case MFR_ERR_MISSING: return "a tensor the model needs is missing";
    case MFR_ERR_SHAPE: return "a tensor's dtype, shape or values disagree with the model";
    case MFR_ERR_META: return "the model's meta entries are out of range";
    case MFR_ERR_ARENA: return "the arena is smaller than mfr_arena_size";
    case MFR_ERR_VIEWS: return "no view is present";
    default: return "unknown error code";
  }
}
