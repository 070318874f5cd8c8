// A read-only memory-mapped file. Model weights are used in place from the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ariadne {

class MappedFile {
 public:
  // Throws Error naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the pages that lie wholly inside [p, p + n), a range of this mapping, from the process's resident
  // memory (madvise MADV_DONTNEED); the bytes stay valid: a later read faults them back in from the file.
  void release(const void* p, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ariadne
