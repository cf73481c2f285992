/* A whole integration of meshfit's C runtime: load an exported model, read one frame of views,
 * print the parameters, write the decoded mesh as OBJ.
 *
 *   meshfit export runs/face_net --quant int8 --out face.mfr
 *   cc -std=c11 -O3 -Ikernels/runtime examples/runtime/run_model.c kernels/runtime/meshfit_runtime.c -lm \
 *      -o run_model
 *   ./run_model face.mfr frame.f32 face.obj [--repeat 100]
 *
 * frame.f32: the views as raw little-endian float32, [N][C][H][W] (view, channel in the model's
 * order, row, column) at the cameras' size: mask in [0, 1], grey in [0, 1], depth as camera z in
 * world units (0 = empty). From a dataset (meshfit synth, meshfit import):
 *   python -c "import meshfit; from meshfit.export import Runtime; \
 *              Runtime('face.mfr').frame(meshfit.load_views('DIR')).astype('<f4').tofile('frame.f32')"
 * --repeat N times N runs and prints the median latency per frame. The vertices are decoded only
 * when an OBJ is asked for (an engine that drives its own morph targets needs the parameters alone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meshfit_runtime.h"

static void *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return NULL;
  }
  long n = ftell(f);
  rewind(f);
  /* malloc is 8-byte (at least) aligned, as mfr_load needs. */
  void *buf = n > 0 ? malloc((size_t)n) : NULL;
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static double now_seconds(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int repeat = 1;
  const char *obj = NULL;
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL FRAME.f32 [OUT.obj] [--repeat N]\n", argv[0]);
    return 2;
  }
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
      repeat = atoi(argv[++i]);
    else
      obj = argv[i];
  }
  if (repeat < 1) repeat = 1;
  size_t model_size = 0, frame_size = 0;
  void *model_bytes = read_file(argv[1], &model_size);
  if (!model_bytes) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  mfr_model m;
  int err = mfr_load(&m, model_bytes, model_size);
  if (err) {
    fprintf(stderr, "%s: %s\n", argv[1], mfr_error_string(err));
    return 1;
  }
  const int32_t *meta = m.meta;
  size_t want = (size_t)meta[MFR_META_VIEWS] * meta[MFR_META_CHANNELS] * meta[MFR_META_IMAGE_H] *
                meta[MFR_META_IMAGE_W] * sizeof(float);
  float *images = read_file(argv[2], &frame_size);
  if (!images || frame_size != want) {
    fprintf(stderr, "%s: expected %zu bytes ([%d][%d][%d][%d] float32), got %zu\n", argv[2], want,
            meta[MFR_META_VIEWS], meta[MFR_META_CHANNELS], meta[MFR_META_IMAGE_H], meta[MFR_META_IMAGE_W],
            images ? frame_size : 0);
    return 1;
  }
  /* Everything the frame needs is allocated here, once: the runtime allocates nothing. */
  size_t arena_size = mfr_arena_size(&m);
  void *arena = malloc(arena_size);
  float *params = malloc(sizeof(float) * (size_t)mfr_param_count(&m));
  float *vertices = obj ? malloc(sizeof(float) * 3 * (size_t)meta[MFR_META_VERTICES]) : NULL;
  double *times = malloc(sizeof(double) * (size_t)repeat);
  if (!arena || !params || (obj && !vertices) || !times) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (int r = 0; r < repeat; r++) {
    double t = now_seconds();
    err = mfr_run(&m, arena, arena_size, images, NULL, params, vertices);
    times[r] = now_seconds() - t;
    if (err) {
      fprintf(stderr, "run: %s\n", mfr_error_string(err));
      return 1;
    }
  }
  qsort(times, (size_t)repeat, sizeof(double), by_value);
  int K = meta[MFR_META_COEFFS];
  printf("coefficients:");
  for (int k = 0; k < K; k++) printf(" %.6f", params[k]);
  printf("\nrotation: %.6f %.6f %.6f / %.6f %.6f %.6f / %.6f %.6f %.6f\n", params[K], params[K + 1],
         params[K + 2], params[K + 3], params[K + 4], params[K + 5], params[K + 6], params[K + 7], params[K + 8]);
  printf("position: %.6f %.6f %.6f\nscale: %.6f\n", params[K + 9], params[K + 10], params[K + 11], params[K + 12]);
  printf("arena: %zu bytes; %s path; %s: %.3f ms per frame (median of %d)\n", arena_size, mfr_simd(),
         repeat > 1 ? "run" : "one run", 1000.0 * times[repeat / 2], repeat);
  if (obj) {
    FILE *f = fopen(obj, "w");
    if (!f) {
      fprintf(stderr, "cannot write %s\n", obj);
      return 1;
    }
    for (int v = 0; v < meta[MFR_META_VERTICES]; v++)
      fprintf(f, "v %.6f %.6f %.6f\n", vertices[3 * v], vertices[3 * v + 1], vertices[3 * v + 2]);
    for (int i = 0; i < meta[MFR_META_FACES]; i++)
      fprintf(f, "f %d %d %d\n", m.faces[3 * i] + 1, m.faces[3 * i + 1] + 1, m.faces[3 * i + 2] + 1);
    fclose(f);
    printf("wrote %s\n", obj);
  }
  free(times);
  free(vertices);
  free(params);
  free(arena);
  free(images);
  free(model_bytes);
  return 0;
}
