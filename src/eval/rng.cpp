#include "eval/rng.h"

#include <limits>

namespace ariadne::eval {

namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

void fnv(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  const unsigned char zero = 0;
  h ^= zero;
  h *= kFnvPrime;
}

void fnv_u64(uint64_t& h, uint64_t v) {
  unsigned char bytes[8];  // little-endian, so the hash does not depend on the machine
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(v >> (8 * i));
  fnv(h, bytes, 8);
}

uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t hash_seed(uint64_t global_seed, std::string_view task, std::string_view variant, int64_t length,
                   int64_t index) {
  uint64_t h = kFnvOffset;
  fnv_u64(h, global_seed);
  fnv(h, task.data(), task.size());
  fnv(h, variant.data(), variant.size());
  fnv_u64(h, static_cast<uint64_t>(length));
  fnv_u64(h, static_cast<uint64_t>(index));
  return mix(h);
}

uint64_t derive_seed(uint64_t seed, std::string_view purpose) {
  uint64_t h = kFnvOffset;
  fnv_u64(h, seed);
  fnv(h, purpose.data(), purpose.size());
  return mix(h);
}

uint64_t Rng::below(uint64_t n) {
  // Accept draws below the largest multiple of n that fits in 2^64.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  for (;;) {
    const uint64_t x = next();
    if (x < limit) return x % n;
  }
}

}  // namespace ariadne::eval
