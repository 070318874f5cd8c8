// Shared helpers for tests: where ../shared is, temporary directories, reading fixtures.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace ariadne::test {

inline std::string shared_dir() {
  return ARIADNE_SHARED_DIR;
}

inline bool shared_exists(const std::string& relative) {
  return std::filesystem::exists(shared_dir() + "/" + relative);
}

#define ARIADNE_REQUIRE_SHARED(relative)                                                              \
  do {                                                                                                \
    if (!::ariadne::test::shared_exists(relative))                                                    \
      GTEST_SKIP() << "reference fixture " << ::ariadne::test::shared_dir() << "/" << (relative)      \
                   << " is absent (tests against ../shared are skipped outside the dev environment)"; \
  } while (0)

// A fresh directory under the system temp dir, removed with this object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ariadne-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<float> read_f32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  std::vector<float> v(size / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace ariadne::test
