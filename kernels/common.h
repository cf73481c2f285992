// Shared helpers for meshfit's native kernels: the worker pool, buffer checks, error mapping and
// pixel-centre coordinates.
//
// Threads: one process-wide pool of NumThreads() workers (MESHFIT_NUM_THREADS if set, else the
// cores this process may run on), started on first use and reused by every kernel call. A
// calling thread hands its items to the pool and sleeps until they are done, so however many
// kernel calls run at once (e.g. one per device under shard_map with forced host devices), at
// most NumThreads() threads compute. Work queued by concurrent calls is served in arrival order.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

#include "xla/ffi/api/ffi.h"

// Entry points (the FFI handlers and MeshfitBuildInfo) are the only symbols the library exports;
// everything else is compiled with -fvisibility=hidden.
#define MESHFIT_EXPORT __attribute__((visibility("default")))

namespace meshfit {

// Threads to use: MESHFIT_NUM_THREADS if set, else the cores this process may run on.
inline int NumThreads() {
  if (const char* env = std::getenv("MESHFIT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return std::min(n, 1024);
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

// A fixed pool of worker threads shared by all kernel calls (see the header comment).
class Pool {
 public:
  static Pool& Get() {
    // Never destroyed: workers may still sleep on the queue when the process exits.
    static Pool* pool = new Pool(NumThreads());
    return *pool;
  }

  int size() const { return int(workers_.size()); }

  // Runs fn(i) for i in [0, n) on the workers and waits. The first exception thrown by fn is
  // rethrown here after every started item has finished.
  void Run(int64_t n, const std::function<void(int64_t)>& fn) {
    Job job;
    job.fn = &fn;
    job.n = n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(&job);
    }
    wake_.notify_all();
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return job.finished == job.n; });
    if (job.error) std::rethrow_exception(job.error);
  }

  static bool OnWorker() { return on_worker_; }

 private:
  struct Job {
    const std::function<void(int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t next = 0;      // next item to hand out (guarded by mu_)
    int64_t finished = 0;  // items done (guarded by mu_)
    std::exception_ptr error;
  };

  explicit Pool(int threads) {
    for (int t = 0; t < threads; ++t) workers_.emplace_back([this] { Work(); });
  }

  void Work() {
    on_worker_ = true;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return !queue_.empty(); });
      Job* job = queue_.front();
      const int64_t i = job->next++;
      if (job->next == job->n) queue_.pop_front();  // every item handed out
      const bool skip = bool(job->error);           // after a failure the remaining items are skipped
      lock.unlock();
      std::exception_ptr error;
      if (!skip) {
        try {
          (*job->fn)(i);
        } catch (...) {
          error = std::current_exception();
        }
      }
      lock.lock();
      if (error && !job->error) job->error = error;
      if (++job->finished == job->n) done_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::deque<Job*> queue_;
  std::vector<std::thread> workers_;
  static inline thread_local bool on_worker_ = false;
};

// Runs fn(i) for i in [0, n) on the pool; items are handed out one at a time. Runs inline when
// there is one item, one thread, or when called from a pool worker (no nested waiting).
template <typename Fn>
void ParallelFor(int64_t n, Fn fn) {
  if (n <= 0) return;
  if (n == 1 || Pool::OnWorker() || Pool::Get().size() <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  const std::function<void(int64_t)> f = [&fn](int64_t i) { fn(i); };
  Pool::Get().Run(n, f);
}

// ParallelFor when `parallel`, else fn(0) .. fn(n - 1) on the calling thread: for work too small
// to pay for waking the pool (tens of microseconds a wake on a small VM).
template <typename Fn>
void ParallelForIf(bool parallel, int64_t n, Fn fn) {
  if (parallel) {
    ParallelFor(n, fn);
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i);
  }
}

// Scatter-add buffers for per-row contributions to out[0, n) without atomics: rows are split
// into one contiguous chunk per worker, each with a private zeroed buffer of n floats; fn(row,
// buffer) adds into it and the buffers are summed into out. Memory: min(workers, rows) * n
// floats, allocated once here and reused by every Run (callers run it once per view, so n is
// one view's worth of gradient).
class Scatter {
 public:
  Scatter(int64_t rows, int64_t n)
      : chunks_(int(std::max<int64_t>(1, std::min<int64_t>(Pool::Get().size(), rows)))),
        n_(n),
        acc_(size_t(chunks_) * size_t(n)) {}

  template <typename Fn>
  void Run(int64_t rows, float* out, Fn fn) {
    const int64_t n = n_;
    ParallelFor(chunks_, [&](int64_t c) {
      float* acc = acc_.data() + c * n;
      std::fill(acc, acc + n, 0.0f);
      for (int64_t row = rows * c / chunks_; row < rows * (c + 1) / chunks_; ++row) fn(row, acc);
    });
    std::fill(out, out + n, 0.0f);
    for (int c = 0; c < chunks_; ++c)
      for (int64_t i = 0; i < n; ++i) out[i] += acc_[size_t(c) * size_t(n) + size_t(i)];
  }

 private:
  int chunks_;
  int64_t n_;
  std::vector<float> acc_;
};

// NDC coordinates of pixel centres: x_i = (2i + 1) / W - 1 (the float32 values the JAX path uses).
inline std::vector<float> PixelNdc(int64_t n) {
  std::vector<float> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = (2.0f * float(i) + 1.0f) / float(n) - 1.0f;
  return v;
}

// Checks that a per-pixel buffer has `pixels`' dimensions + [last]; `what` names it, `ref` the
// buffer whose dimensions it must share (e.g. "face_id").
template <typename B, typename R>
xla::ffi::Error CheckPerPixel(const B& buffer, const R& pixels, int64_t last, const char* what, const char* ref) {
  const auto p = pixels.dimensions();
  const auto d = buffer.dimensions();
  bool ok = d.size() == p.size() + 1 && d.back() == last;
  for (size_t i = 0; ok && i < p.size(); ++i) ok = d[i] == p[i];
  if (ok) return xla::ffi::Error::Success();
  return xla::ffi::Error::InvalidArgument(std::string(what) + " must be " + ref + "'s dimensions + [" +
                                          std::to_string(last) + "]");
}

// Checks that a buffer has exactly the given dimensions; `what` names it, `layout` spells them.
template <typename B>
xla::ffi::Error CheckDims(const B& buffer, std::initializer_list<int64_t> dims, const char* what, const char* layout) {
  const auto d = buffer.dimensions();
  bool ok = d.size() == dims.size();
  size_t i = 0;
  for (int64_t want : dims) {
    if (!ok) break;
    ok = d[i++] == want;
  }
  if (ok) return xla::ffi::Error::Success();
  std::string got = "(";
  for (size_t k = 0; k < d.size(); ++k) got += (k ? ", " : "") + std::to_string(d[k]);
  std::string want = "(";
  i = 0;
  for (int64_t w : dims) want += (i++ ? ", " : "") + std::to_string(w);
  return xla::ffi::Error::InvalidArgument(std::string(what) + " must be " + layout + " = " + want + "); got " + got +
                                          ")");
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
                                              std::to_string(num_faces - 1) + " (fragments from another mesh?)");
  return xla::ffi::Error::Success();
}

// Image sizes the kernels accept: positive and small enough that pixel indices fit int32.
inline xla::ffi::Error CheckImageSize(int64_t height, int64_t width) {
  constexpr int64_t kMaxSide = 1 << 16;
  if (height <= 0 || width <= 0 || height > kMaxSide || width > kMaxSide)
    return xla::ffi::Error::InvalidArgument("image size " + std::to_string(height) + " x " + std::to_string(width) +
                                            " outside 1.." + std::to_string(kMaxSide));
  return xla::ffi::Error::Success();
}

// Runs a handler body, turning allocation failure (and any other C++ exception) into an FFI
// error instead of std::terminate.
template <typename Body>
xla::ffi::Error Guarded(const char* kernel, Body body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return xla::ffi::Error(xla::ffi::ErrorCode::kResourceExhausted,
                           std::string(kernel) + ": out of memory for its scratch buffers");
  } catch (const std::length_error& e) {
    return xla::ffi::Error(xla::ffi::ErrorCode::kResourceExhausted,
                           std::string(kernel) + ": scratch buffer too large (" + e.what() + ")");
  } catch (const std::exception& e) {
    return xla::ffi::Error::Internal(std::string(kernel) + ": " + e.what());
  }
}

}  // namespace meshfit
