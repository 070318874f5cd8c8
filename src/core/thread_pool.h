// An explicit, persistent thread pool. It is passed down to every op that parallelises (no singleton,
// no thread-locals): the caller owns it and decides the thread count.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace ariadne {

class ThreadPool {
 public:
  // n_threads counts the calling thread: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index) once on each of the size() threads and waits for all of them.
  void run(const std::function<void(int thread_index)>& fn);

  // Splits [0, n) into contiguous ranges, one per thread, and calls fn(begin, end) for each non-empty one.
  // Each index is processed by exactly one thread, so per-index results do not depend on the thread count.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Splits [0, n) into chunks of `chunk` indices (the last may be shorter) that the threads take one after
  // another from a shared counter, so a thread that runs faster (or is not preempted) does more of them.
  // Calls fn(begin, end) once per chunk. Which thread computes an index varies from run to run, so use it
  // where each index's result depends on the index alone.
  void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  // A run publishes job_, sets pending_ and bumps generation_; workers spin briefly on generation_ (a
  // decode step runs hundreds of short parallel ops, so waking a sleeping thread each time would cost more
  // than the op), then sleep on it (std::atomic wait, a futex on Linux). The caller waits on pending_ the
  // same way.
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace ariadne
