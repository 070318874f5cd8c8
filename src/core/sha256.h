// SHA-256 (FIPS 180-4), incremental: a model fingerprint for sidecar files (hata.md §2.4) hashes tensors
// straight from their mappings without copying them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ariadne {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // The digest of everything updated so far; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  // finish() as 64 lowercase hex digits.
  std::string finish_hex();

 private:
  void block(const uint8_t* p);  // one 64-byte block into state_

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes updated
};

}  // namespace ariadne
