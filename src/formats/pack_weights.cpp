// Load-time repacking of Q4_0 matrices for the CPU kernels (model_source.h pack_weights).
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/error.h"
#include "formats/model_source.h"
#include "kernels/cpu/packed.h"

namespace ariadne {

namespace {

// Anonymous memory for the packed weights (page-aligned, so every group of a tensor is 64-byte aligned),
// returned to the system when the last owner lets go. Transparent huge pages (MADV_HUGEPAGE on a 2 MiB
// aligned buffer) were tried: no faster prefill or decode on the 2-core VM, and slower to fault in.
class PackedArena {
 public:
  explicit PackedArena(size_t bytes) : size_(bytes) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("cannot allocate {:.1f} MiB for the packed q4_0 weights", bytes / 1048576.0);
    data_ = static_cast<uint8_t*>(p);
  }
  ~PackedArena() { ::munmap(data_, size_); }
  PackedArena(const PackedArena&) = delete;
  PackedArena& operator=(const PackedArena&) = delete;

  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

bool packable(const TensorView& t) {
  return t.type == DType::Q4_0 && t.shape.size() == 2 && t.rows() > 0 && t.cols() > 0 && t.cols() % 32 == 0;
}

}  // namespace

void pack_weights(ModelSource& source, const std::function<void(const uint8_t*, size_t)>& release) {
  const auto start = std::chrono::steady_clock::now();
  size_t total = 0;
  for (const auto& [name, t] : source.tensors)
    if (packable(t)) total += cpu::q4_0_packed_bytes(t.rows(), t.cols());
  if (total == 0) return;
  auto arena = std::make_shared<PackedArena>(total);
  size_t offset = 0;
  // Slices of about 4 MiB of source rows: the original pages are dropped soon after they are read.
  constexpr size_t kSliceBytes = size_t{4} << 20;
  for (auto& [name, t] : source.tensors) {
    if (!packable(t)) continue;
    const int64_t rows = t.rows(), cols = t.cols();
    const size_t row_size = row_bytes(DType::Q4_0, cols);
    ARIADNE_CHECK(t.nbytes >= row_size * static_cast<size_t>(rows),
                  fmt::format("pack_weights: tensor '{}' holds {} bytes, expected {}", name, t.nbytes,
                              row_size * static_cast<size_t>(rows)));
    uint8_t* dst = arena->data() + offset;
    const int64_t groups = (rows + cpu::kQ4_0PackRows - 1) / cpu::kQ4_0PackRows;
    const int64_t slice = std::max<int64_t>(
        1, static_cast<int64_t>(kSliceBytes / (row_size * static_cast<size_t>(cpu::kQ4_0PackRows))));
    for (int64_t g = 0; g < groups; g += slice) {
      const int64_t n = std::min(slice, groups - g);
      cpu::pack_q4_0_groups(t.data, row_size, rows, cols, dst, g, n);
      const int64_t done_rows = std::min(rows, (g + n) * cpu::kQ4_0PackRows);
      if (release) release(t.data, row_size * static_cast<size_t>(done_rows));
    }
    t.packed = dst;
    offset += cpu::q4_0_packed_bytes(rows, cols);
    ++source.packed_tensors;
  }
  source.packed_bytes += total;
  source.storage.push_back(std::shared_ptr<const void>(arena, arena->data()));
  source.pack_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace ariadne
