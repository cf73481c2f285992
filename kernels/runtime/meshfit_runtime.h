/* meshfit runtime: a trained meshfit regressor (`meshfit export RUN --format native`) run from C.
 *
 * Views in (the rig's cameras, at their own resolution), parameters out, optionally the decoded
 * vertices. C99, libc and libm only; no allocation (the caller gives an arena of the size the
 * model reports), no threads, no global state: run as many models as you like on your own jobs.
 *
 *   mfr_model m;
 *   int err = mfr_load(&m, file_bytes, file_size);          // validates; m points into the bytes
 *   if (err) fprintf(stderr, "%s\n", mfr_error_string(err));
 *   void *arena = malloc(mfr_arena_size(&m));               // once, outside the frame
 *   err = mfr_run(&m, arena, mfr_arena_size(&m), images, present, params, vertices);
 *
 * The buffer given to mfr_load must stay alive (and unchanged) while the model is used, and be
 * 8-byte aligned (tensor data are 64-byte aligned within the file).
 *
 * ==== File format, version 1 (all integers little-endian) ========================================
 *
 *   offset  size  field
 *        0     8  magic "MESHFIT\x1a"
 *        8     4  u32 format version (1)
 *       12     4  u32 endianness tag 0x01020304 (reads 0x04030201 on a big-endian host: refused)
 *       16     4  u32 header size in bytes (64)
 *       20     4  u32 alignment of tensor data (64)
 *       24     4  u32 tensor count T (<= MFR_MAX_TENSORS)
 *       28     4  u32 CRC-32 (zlib's polynomial) of bytes [header size, file size)
 *       32     8  u64 file size in bytes
 *       40    24  reserved, zero
 *       64  T*96  tensor table, one entry per tensor:
 *                   char name[56]   NUL-terminated, NUL-padded ASCII
 *                   u32  dtype      0 f32, 1 f16, 2 i8, 3 i16, 4 i32, 5 u8
 *                   u32  ndim       0..4
 *                   u32  shape[4]   unused dimensions are 1
 *                   u64  offset     from the start of the file, a multiple of the alignment
 *                   u64  nbytes     = product(shape) * size(dtype)
 *       ...       tensor data, each at its offset; the space between is zero.
 *
 * Every offset and size is checked against the file size; an unknown dtype, a name without its
 * NUL, overlapping tensors, a shape that disagrees with the model's or a checksum mismatch are
 * refused with an error code (mfr_error_string names it).
 *
 * Tensors (N views, K coefficients, V vertices, F faces, L convolutions, E features; shapes as
 * stored, row-major):
 *   meta             i32 [16]   MFR_META_* entries below
 *   meta.json        u8  [n]    UTF-8 JSON for people and tools (names, versions); the runtime skips it
 *   rig.intrinsics   f32 [N, 4] fx, fy, cx, cy of each camera at the network's resolution (pixels)
 *   rig.rotation     f32 [N, 3, 3] world -> camera rotation R (OpenCV: x right, y down, z forward)
 *   rig.translation  f32 [N, 3] world -> camera translation t (x_cam = R x_world + t)
 *   task.geometry    f32 [7]    the rig's target point (3), the model's centre (3), its radius
 *   decode.ranges    f32 [K, 2] each coefficient's sampling range
 *   decode.bounds    f32 [K, 2] each coefficient's box (+-inf: unbounded)
 *   decode.scale     f32 [2]    the sampled scale range
 *   conv{i}.weight   [3, 3, I, O] f32, f16 or i8 (i8: times conv{i}.scale [O] f32, per output channel)
 *   conv{i}.bias     f32 [O]
 *   embed / view_head / confidence / pool_hidden / pool_head .weight: [in, out] (same dtypes as the
 *                    convolutions, with .scale [out] for i8); .bias f32 [out] (confidence has none).
 *                    embed's input is a view's last activation flattened as (y, x, channel).
 *   model.base       f32 [V, 3] the neutral shape (blendshapes) or the mesh (rigid)
 *   model.basis      K > 0 only: [K, V, 3] f32, f16, or i16 times model.basis_scale f32 [K]
 *   model.faces      i32 [F, 3]
 *
 * What run computes is meshfit.amortize's Regressor.predict on the inputs image_inputs makes: the
 * images area-averaged to the network's resolution (depth over covered pixels, in object radii about
 * the depth of the rig's target), two ray channels, the convolutions (3x3, SAME padding, ReLU), the
 * per-view heads, the mean of the features over the views present, and the decoding (rotation
 * averaged over views, the centre nearest to every view's ray, bounded coefficients).
 */
#ifndef MESHFIT_RUNTIME_H
#define MESHFIT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MFR_FORMAT_VERSION 1
#define MFR_HEADER_SIZE 64
#define MFR_ENTRY_SIZE 96
#define MFR_MAX_TENSORS 64
#define MFR_MAX_CONVS 16
#define MFR_MAX_VIEWS 32
#define MFR_MAX_CHANNELS 3

/* meta[] entries. */
enum {
  MFR_META_KIND = 0,        /* 0 blendshapes, 1 rigid */
  MFR_META_VIEWS = 1,       /* N */
  MFR_META_IMAGE_H = 2,     /* the cameras' image size: what run reads */
  MFR_META_IMAGE_W = 3,
  MFR_META_NET_H = 4,       /* the network's input size (divides the image size) */
  MFR_META_NET_W = 5,
  MFR_META_CHANNELS = 6,    /* C image channels, 1..3 */
  MFR_META_CHANNEL0 = 7,    /* meta[7 + c]: channel c's kind, MFR_CHANNEL_* */
  MFR_META_CONVS = 10,      /* L */
  MFR_META_STRIDES = 11,    /* bit i set: convolution i has stride 2 (else 1) */
  MFR_META_FEATURES = 12,   /* E */
  MFR_META_COEFFS = 13,     /* K */
  MFR_META_VERTICES = 14,   /* V */
  MFR_META_FACES = 15,      /* F */
  MFR_META_COUNT = 16
};

enum { MFR_CHANNEL_MASK = 1, MFR_CHANNEL_GREY = 2, MFR_CHANNEL_DEPTH = 3 };

enum {
  MFR_OK = 0,
  MFR_ERR_ARGUMENT,     /* a NULL pointer or a size that cannot be */
  MFR_ERR_TRUNCATED,    /* the buffer is shorter than the header or the size it records */
  MFR_ERR_MAGIC,        /* not a meshfit runtime model */
  MFR_ERR_VERSION,      /* a format version this runtime does not read */
  MFR_ERR_ENDIAN,       /* written for another byte order */
  MFR_ERR_HEADER,       /* header size, alignment or tensor count out of range */
  MFR_ERR_CHECKSUM,     /* the CRC-32 does not match: the file is damaged */
  MFR_ERR_TABLE,        /* a tensor entry is malformed (name, dtype, shape, offset, size, overlap) */
  MFR_ERR_MISSING,      /* a tensor the model needs is absent */
  MFR_ERR_SHAPE,        /* a tensor's dtype or shape disagrees with the model it describes */
  MFR_ERR_META,         /* a meta entry out of range */
  MFR_ERR_ARENA,        /* the arena is smaller than mfr_arena_size */
  MFR_ERR_VIEWS         /* no view is present */
};

typedef struct {
  const void *data; /* into the loaded buffer; NULL when absent */
  uint32_t dtype;   /* 0 f32, 1 f16, 2 i8, 3 i16, 4 i32, 5 u8 */
  uint32_t shape[4];
  const float *scale; /* i8 weights: [out] per output channel; i16 basis: [K] per shape; else NULL */
} mfr_tensor;

typedef struct {
  mfr_tensor weight; /* [in, out] (dense) or [3, 3, in, out] (convolution) */
  const float *bias; /* [out] or NULL */
  int in, out, stride;
} mfr_layer;

typedef struct {
  int32_t meta[MFR_META_COUNT];
  const float *intrinsics;  /* [N, 4] */
  const float *rotation;    /* [N, 3, 3] */
  const float *translation; /* [N, 3] */
  const float *geometry;    /* [7] target (3), centre (3), radius */
  const float *ranges;      /* [K, 2] */
  const float *bounds;      /* [K, 2] */
  const float *scale_range; /* [2] */
  mfr_layer convs[MFR_MAX_CONVS];
  mfr_layer embed, view_head, confidence, pool_hidden, pool_head;
  const float *base;        /* [V, 3] */
  mfr_tensor basis;         /* [K, V, 3] */
  const int32_t *faces;     /* [F, 3] */
  size_t act_floats;   /* the largest activation [H, W, C] */
  size_t pad_floats;   /* the largest convolution input with a 1-pixel zero border (SIMD path) */
  size_t arena_floats; /* all scratch: input, two activations, padded input, features, heads, image rows */
} mfr_model;

/* Parameters run writes: mfr_param_count(m) floats,
 *   [0, K)      the coefficients (blendshapes: identity then expression; rigid: none)
 *   [K, K+9)    R, the object's rotation (row-major; world = scale * R (x - centre) + position)
 *   [K+9, K+12) position: the object's centre in the world (world units)
 *   [K+12]      scale */
int mfr_param_count(const mfr_model *m);

/* sizeof(mfr_model), for bindings from other languages. */
size_t mfr_model_size(void);

/* Validate buf[0, size) and point m at its tensors. Returns MFR_OK or an MFR_ERR_* code. */
int mfr_load(mfr_model *m, const void *buf, size_t size);

/* Bytes of scratch memory mfr_run needs (a float-aligned block). */
size_t mfr_arena_size(const mfr_model *m);

/* One frame.
 *   images:   [N][C][H][W] float32: view n's channel c (the model's channel order, meta) at the
 *             cameras' size H x W: mask coverage in [0, 1]; grey level in [0, 1]; depth as camera z
 *             in world units, 0 where empty.
 *   present:  [N] 1 for views given, 0 for missing ones (their images are not read); NULL = all.
 *   params:   [mfr_param_count] out.
 *   vertices: [V, 3] out (world units), or NULL. */
int mfr_run(const mfr_model *m, void *arena, size_t arena_size, const float *images,
            const uint8_t *present, float *params, float *vertices);

/* The SIMD path compiled in: "avx2" (x86-64 with -mavx2 -mfma; fp16 weights also need -mf16c),
 * "neon" (AArch64, always) or "scalar". All compute the same sums; the SIMD paths fuse
 * multiply-adds, so results agree to rounding (tests/test_export.py; NEON under qemu-user). */
const char *mfr_simd(void);

/* A short English description of an MFR_* code. */
const char *mfr_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* MESHFIT_RUNTIME_H */
