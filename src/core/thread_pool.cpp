#include "core/thread_pool.h"

#include <algorithm>
#include <exception>

#include "core/error.h"

namespace ariadne {

namespace {

// Spin iterations before sleeping: with a pause instruction each, some tens of microseconds.
constexpr int kSpin = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits until value != old: spins kSpin times, then sleeps.
template <typename T>
T wait_while_equal(const std::atomic<T>& value, T old) {
  for (int i = 0; i < kSpin; ++i) {
    const T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
    cpu_relax();
  }
  for (;;) {
    value.wait(old, std::memory_order_acquire);
    const T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    seen = wait_while_equal(generation_, seen);
    if (stop_.load(std::memory_order_relaxed)) return;
    (*job_)(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::run(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  // Exceptions thrown on workers are captured and rethrown here, so a failing op never kills a thread.
  std::exception_ptr error;
  std::atomic_flag error_set;
  const std::function<void(int)> guarded = [&](int i) {
    try {
      fn(i);
    } catch (...) {
      if (!error_set.test_and_set()) error = std::current_exception();
    }
  };
  job_ = &guarded;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  guarded(0);
  for (int left = pending_.load(std::memory_order_acquire); left != 0;
       left = pending_.load(std::memory_order_acquire))
    wait_while_equal(pending_, left);
  job_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t n_parts = std::min<int64_t>(n, n_threads_);
  if (n_parts == 1) {
    fn(0, n);
    return;
  }
  run([&](int t) {
    if (t >= n_parts) return;
    const int64_t begin = n * t / n_parts;
    const int64_t end = n * (t + 1) / n_parts;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  if (n_chunks == 1 || n_threads_ == 1) {
    for (int64_t begin = 0; begin < n; begin += chunk) fn(begin, std::min(n, begin + chunk));
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n_chunks;
         i = next.fetch_add(1, std::memory_order_relaxed))
      fn(i * chunk, std::min(n, (i + 1) * chunk));
  });
}

}  // namespace ariadne
