#include "core/thread_pool.h"

#include <algorithm>
#include <exception>

#include "core/error.h"

namespace ariadne {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(index);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  // Exceptions thrown on workers are captured and rethrown here, so a failing op never kills a thread.
  std::exception_ptr error;
  std::mutex error_mutex;
  const std::function<void(int)> guarded = [&](int i) {
    try {
      fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &guarded;
    pending_ = n_threads_ - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  guarded(0);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }
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

}  // namespace ariadne
