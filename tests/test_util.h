// Shared helpers for tests: where ../shared is, temporary directories, reading fixtures.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
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

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Splits a llama.cpp tokenizer-vector .inp file the way its test-tokenizer-0 does: an input ends where
// "\n__ggml_vocab_test__\n" starts (the newline before the separator belongs to the separator).
inline std::vector<std::string> split_inputs(const std::string& raw) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      out.push_back(raw.substr(pos));
      break;
    }
    out.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return out;
}

// One line of a .out file: space-separated ids.
inline std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

struct CliResult {
  int exit_code;
  std::string out;  // stdout (with stderr appended in order when merged)
  std::string err;  // stderr when not merged
};

// Seconds a CLI run may take: 120, or ARIADNE_TEST_CLI_TIMEOUT (digits) for slow builds (the sanitized
// suite, scripts/sanitize.sh).
inline std::string cli_timeout() {
  const char* s = std::getenv("ARIADNE_TEST_CLI_TIMEOUT");
  const std::string v = s != nullptr ? s : "";
  const bool digits = !v.empty() && v.size() < 7 && v.find_first_not_of("0123456789") == std::string::npos;
  return digits ? v : "120";
}

// Runs the ariadne binary under cli_timeout() with `input` on stdin. merge_stderr: stderr goes into out
// (for checking messages); otherwise it is kept apart (for checking that stdout is exactly the text).
inline CliResult run_cli(const std::string& args, const std::string& input = "", bool merge_stderr = true) {
  TempDir tmp;
  write_bytes(tmp.file("stdin"), std::vector<uint8_t>(input.begin(), input.end()));
  const std::string err_path = tmp.file("stderr");
  const std::string cmd = "timeout " + cli_timeout() + " " + ARIADNE_CLI_PATH + " " + args + " < " +
                          tmp.file("stdin") + (merge_stderr ? " 2>&1" : " 2>" + err_path);
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  std::string err;
  if (!merge_stderr) {
    std::ifstream in(err_path, std::ios::binary);
    err.assign(std::istreambuf_iterator<char>(in), {});
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out, err};
}

// A test suite sharing one `tiny` synthetic model (4 layers, 2 KV heads of 64, f32), written once.
class TinyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const CliResult r = run_cli("synth --shape tiny --type f32 -q -o " + dir_->file("tiny.gguf"));
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string model() { return dir_->file("tiny.gguf"); }
  static inline TempDir* dir_ = nullptr;
};

}  // namespace ariadne::test
