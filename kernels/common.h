// Shared helpers for meshfit's native kernels: threading and pixel-centre coordinates.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace meshfit {

// Threads to use: MESHFIT_NUM_THREADS if set, else all hardware threads.
inline int NumThreads() {
  if (const char* env = std::getenv("MESHFIT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
#ifdef __linux__
  // The cores this process may run on (cgroups / taskset), not all the host's.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

// Runs fn(i) for i in [0, n) on a pool of threads; items are handed out one at a time.
template <typename Fn>
void ParallelFor(int64_t n, Fn fn) {
  const int threads = int(std::min<int64_t>(NumThreads(), n));
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int64_t i = next++; i < n; i = next++) fn(i);
    });
  for (auto& th : pool) th.join();
}

// Scatter-adds per-row contributions into out[0, n) without atomics: rows are split into one
// contiguous chunk per thread, each with a private zeroed buffer; fn(row, buffer) adds into it,
// and the buffers are summed into out at the end.
template <typename Fn>
void ScatterRows(int64_t rows, int64_t n, float* out, Fn fn) {
  const int chunks = int(std::max<int64_t>(1, std::min<int64_t>(NumThreads(), rows)));
  std::vector<std::vector<float>> acc(chunks);
  ParallelFor(chunks, [&](int64_t c) {
    acc[c].assign(n, 0.0f);
    for (int64_t row = rows * c / chunks; row < rows * (c + 1) / chunks; ++row) fn(row, acc[c].data());
  });
  std::fill(out, out + n, 0.0f);
  for (const auto& g : acc)
    for (int64_t i = 0; i < n; ++i) out[i] += g[i];
}

// NDC coordinates of pixel centres: x_i = (2i + 1) / W - 1 (the float32 values the JAX path uses).
inline std::vector<float> PixelNdc(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = (2.0f * float(i) + 1.0f) / float(n) - 1.0f;
  return v;
}

// Checks faces [F, 3] index vertices 0..num_vertices-1 (the kernels index memory with them).
inline xla::ffi::Error CheckFaces(const int32_t* faces, int64_t num_faces, int64_t num_vertices) {
  for (int64_t i = 0; i < 3 * num_faces; ++i)
    if (faces[i] < 0 || faces[i] >= num_vertices)
      return xla::ffi::Error::InvalidArgument("faces index outside 0.." + std::to_string(num_vertices - 1) +
                                              ": faces[" + std::to_string(i / 3) + "] holds " +
                                              std::to_string(faces[i]));
  return xla::ffi::Error::Success();
}

// Checks face ids [n] are -1 or index a face 0..num_faces-1.
inline xla::ffi::Error CheckFaceIds(const int32_t* ids, int64_t n, int64_t num_faces) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < -1 || ids[i] >= num_faces)
      return xla::ffi::Error::InvalidArgument("face_id " + std::to_string(ids[i]) + " outside -1.." +
                                              std::to_string(num_faces - 1) +
                                              " (fragments from another mesh?)");
  return xla::ffi::Error::Success();
}

}  // namespace meshfit
