/* libFuzzer harness for the runtime's loader and forward pass (run.sh builds and runs it).
 *
 * The input is a model file. Its CRC-32 is recomputed first when the header is there, so that
 * mutations reach the table, the meta entries and the shapes instead of stopping at the checksum
 * (tests/test_export.py covers the checksum itself). A model that loads is then run once on a frame
 * of zeros, if its images and arena stay below 64 MiB.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meshfit_runtime.h"

static uint32_t crc32(const unsigned char *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An 8-byte aligned copy, as mfr_load requires, sized exactly (ASan sees any overread). */
  unsigned char *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  if (size >= MFR_HEADER_SIZE) {
    uint64_t fsize = 0;
    memcpy(&fsize, buf + 32, 8);
    if (fsize >= MFR_HEADER_SIZE && fsize <= size) {
      uint32_t crc = crc32(buf + MFR_HEADER_SIZE, (size_t)fsize - MFR_HEADER_SIZE);
      memcpy(buf + 28, &crc, 4);
    }
  }
  mfr_model m;
  if (mfr_load(&m, buf, size) == MFR_OK) {
    const int32_t *meta = m.meta;
    size_t pixels = (size_t)meta[MFR_META_VIEWS] * meta[MFR_META_CHANNELS] * meta[MFR_META_IMAGE_H] *
                    meta[MFR_META_IMAGE_W];
    size_t arena_size = mfr_arena_size(&m);
    if (pixels * 4 <= (64u << 20) && arena_size <= (64u << 20)) {
      float *images = calloc(pixels, sizeof(float));
      void *arena = malloc(arena_size);
      float *params = malloc(sizeof(float) * (size_t)mfr_param_count(&m));
      float *vertices = malloc(sizeof(float) * 3 * (size_t)meta[MFR_META_VERTICES]);
      if (images && arena && params && vertices) mfr_run(&m, arena, arena_size, images, NULL, params, vertices);
      free(vertices);
      free(params);
      free(arena);
      free(images);
    }
  }
  free(buf);
  return 0;
}
