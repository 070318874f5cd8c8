// The evaluation suite's seeded random numbers (long-context-eval.md §1, "Random items"): mt19937_64 seeded
// with a hash of (global seed, task, variant, length, index), with our own range mapping, because the
// standard distributions give different numbers on different standard libraries.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

namespace ariadne::eval {

// FNV-1a over the fields (each followed by a 0 byte), finished with splitmix64's mixer.
uint64_t hash_seed(uint64_t global_seed, std::string_view task, std::string_view variant, int64_t length,
                   int64_t index);
// A stream derived from a seed and a purpose ("layout", "distractors", ...).
uint64_t derive_seed(uint64_t seed, std::string_view purpose);

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  // Uniform in [0, n), n >= 1 (rejection sampling: no modulo bias).
  uint64_t below(uint64_t n);
  // Uniform in [lo, hi], lo <= hi.
  int64_t between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform in [0, 1) with 53 random bits.
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Fisher-Yates.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace ariadne::eval
