// Shared helpers for meshfit's native kernels: threading and pixel-centre coordinates.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace meshfit {

// Threads to use: MESHFIT_NUM_THREADS if set, else all hardware threads.
inline int NumThreads() {
  if (const char* env = std::getenv("MESHFIT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
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

// NDC coordinates of pixel centres: x_i = (2i + 1) / W - 1 (the float32 values the JAX path uses).
inline std::vector<float> PixelNdc(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = (2.0f * float(i) + 1.0f) / float(n) - 1.0f;
  return v;
}

}  // namespace meshfit
