// llama2.c legacy checkpoint loader: the two fixture models, a synthetic unshared-classifier file, and
// corrupt headers / sizes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "formats/llama2c.h"
#include "formats/safetensors.h"

namespace ariadne {
namespace {

namespace fs = std::filesystem;

fs::path fixture(const std::string& name) {
  return fs::path(ARIADNE_SHARED_DIR) / "fixtures" / "llama2c" / name / (name + ".bin");
}

#define REQUIRE_FIXTURE(name)                                                           \
  do {                                                                                  \
    if (!fs::exists(fixture(name)))                                                     \
      GTEST_SKIP() << "fixture " << fixture(name) << " is absent (needs /work/shared)"; \
  } while (0)

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("ariadne_l2c_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ariadne::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ariadne::Error, nothing was thrown";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

float raw_float(const std::vector<uint8_t>& bytes, size_t byte_offset) {
  float f;
  std::memcpy(&f, bytes.data() + byte_offset, 4);
  return f;
}

float view_float(const TensorView& t, size_t i) {
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

void expect_common(const ModelSource& src) {
  const ModelConfig& c = src.config;
  EXPECT_EQ(src.format, "llama2c");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.style, RopeStyle::Interleaved);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  for (const auto& [name, t] : src.tensors) {
    EXPECT_EQ(t.type, DType::F32) << name;
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * 4) << name;
  }
}

// Reference: reference_greedy.json "model": dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512,
// seq_len 512, shared classifier.
TEST(Llama2cLoader, Stories260K) {
  REQUIRE_FIXTURE("stories260K");
  auto src = load_llama2c_model(fixture("stories260K").string());
  expect_common(*src);
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_ff, 172);
  EXPECT_EQ(c.n_layer, 5);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_ctx_train, 512);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(src->find("output.weight"), nullptr);
  EXPECT_EQ(src->tensors.size(), 2u + 9u * 5u);
  EXPECT_EQ(src->get("token_embd.weight").shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(src->get("blk.4.attn_k.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(src->get("blk.4.ffn_down.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(src->get("blk.0.ffn_gate.weight").shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(src->get("blk.2.attn_norm.weight").shape, (std::vector<int64_t>{64}));

  const auto raw = read_bytes(fixture("stories260K"));
  const TensorView& emb = src->get("token_embd.weight");
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(view_float(emb, i), raw_float(raw, 28 + 4 * i)) << i;
  // Offsets (floats) from run.c's memory_map_weights: embeddings 512*64, then rms_att 5*64, wq 5*64*64,
  // wk 5*32*64, wv 5*32*64, wo 5*64*64, rms_ffn 5*64, w1 5*172*64, w2, w3, then rms_final.
  const size_t rms_att = 512 * 64;
  const size_t wq = rms_att + 5 * 64;
  const size_t wk = wq + 5 * 64 * 64;
  const size_t rms_ffn = wk + 2 * 5 * 32 * 64 + 5 * 64 * 64;
  const size_t w1 = rms_ffn + 5 * 64;
  const size_t w2 = w1 + 5 * 172 * 64;
  const size_t w3 = w2 + 5 * 172 * 64;
  const size_t rms_final = w3 + 5 * 172 * 64;
  EXPECT_EQ(view_float(src->get("blk.1.attn_norm.weight"), 3), raw_float(raw, 28 + 4 * (rms_att + 64 + 3)));
  EXPECT_EQ(view_float(src->get("blk.3.attn_k.weight"), 5), raw_float(raw, 28 + 4 * (wk + 3 * 32 * 64 + 5)));
  EXPECT_EQ(view_float(src->get("blk.4.ffn_norm.weight"), 63),
            raw_float(raw, 28 + 4 * (rms_ffn + 4 * 64 + 63)));
  EXPECT_EQ(view_float(src->get("blk.2.ffn_down.weight"), 7),
            raw_float(raw, 28 + 4 * (w2 + 2 * 172 * 64 + 7)));
  EXPECT_EQ(view_float(src->get("blk.0.ffn_up.weight"), 1), raw_float(raw, 28 + 4 * (w3 + 1)));
  EXPECT_EQ(view_float(src->get("output_norm.weight"), 0), raw_float(raw, 28 + 4 * rms_final));
  // rms_final is followed by freq_cis (2 * 512 * 4 floats) and nothing else.
  EXPECT_EQ(28 + 4 * (rms_final + 64 + 512 * 8), raw.size());
}

// Reference: "dim 64, hidden 172, 4 layers, 4 heads, 4 kv heads (MHA), vocab 512, seq_len 128".
TEST(Llama2cLoader, Aidreams260K) {
  REQUIRE_FIXTURE("aidreams260K");
  auto src = load_llama2c_model(fixture("aidreams260K").string());
  expect_common(*src);
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_ff, 172);
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_ctx_train, 128);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(src->tensors.size(), 2u + 9u * 4u);
  EXPECT_EQ(src->get("blk.3.attn_v.weight").shape, (std::vector<int64_t>{64, 64}));
  const auto raw = read_bytes(fixture("aidreams260K"));
  const TensorView& emb = src->get("token_embd.weight");
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(view_float(emb, i), raw_float(raw, 28 + 4 * i)) << i;
}

TEST(Llama2cLoader, DetectsFormat) {
  REQUIRE_FIXTURE("stories260K");
  for (const char* name : {"stories260K", "aidreams260K"}) {
    const auto raw = read_bytes(fixture(name));
    EXPECT_TRUE(looks_like_llama2c(raw.data(), raw.size())) << name;
    EXPECT_FALSE(looks_like_llama2c(raw.data(), raw.size() - 1)) << name;
    EXPECT_FALSE(looks_like_llama2c(raw.data(), 27)) << name;
  }
  const auto tok = read_bytes(fixture("stories260K").parent_path() / "tok512.bin");
  EXPECT_FALSE(looks_like_llama2c(tok.data(), tok.size()));
  const auto st = write_safetensors({{"a", "F32", {4}, std::vector<uint8_t>(16, 0)}});
  EXPECT_FALSE(looks_like_llama2c(st.data(), st.size()));
  EXPECT_FALSE(looks_like_llama2c(nullptr, 0));
}

// A tiny synthetic checkpoint whose float at index k (after the header) is k, so every view's position
// can be checked exactly.
std::vector<uint8_t> synthetic(const std::vector<int32_t>& header, size_t n_floats) {
  std::vector<uint8_t> bytes(28 + 4 * n_floats);
  std::memcpy(bytes.data(), header.data(), 28);
  for (size_t k = 0; k < n_floats; ++k) {
    const float f = static_cast<float>(k);
    std::memcpy(bytes.data() + 28 + 4 * k, &f, 4);
  }
  return bytes;
}

TEST(Llama2cLoader, UnsharedClassifier) {
  // dim 8, hidden 12, 2 layers, 2 heads, 1 kv head (kv_dim 4), vocab 10 unshared, seq_len 3.
  const int64_t dim = 8, hidden = 12, L = 2, kv = 4, vocab = 10, seq = 3, hs = 4;
  const size_t per_layer = 2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim;
  const size_t n = vocab * dim + L * per_layer + dim + seq * hs + vocab * dim;
  TempDir dir;
  const std::string path = dir.file("unshared.bin");
  write_file_bytes(path, synthetic({8, 12, 2, 2, 1, -10, 3}, n));
  auto src = load_llama2c_model(path);
  expect_common(*src);
  EXPECT_FALSE(src->config.tied_output);
  EXPECT_EQ(src->config.n_vocab, 10);
  EXPECT_EQ(src->config.n_head_kv, 1);
  const TensorView& out = src->get("output.weight");
  EXPECT_EQ(out.shape, (std::vector<int64_t>{10, 8}));
  EXPECT_EQ(view_float(out, 0), static_cast<float>(n - vocab * dim));
  EXPECT_EQ(view_float(out, 79), static_cast<float>(n - 1));
  // blk.1.attn_v starts after emb, rms_att[2], wq[2], wk[2], then wv[0].
  const size_t wv1 = vocab * dim + L * dim + L * dim * dim + L * kv * dim + kv * dim;
  EXPECT_EQ(view_float(src->get("blk.1.attn_v.weight"), 0), static_cast<float>(wv1));
  EXPECT_EQ(src->get("blk.1.attn_v.weight").shape, (std::vector<int64_t>{4, 8}));
  const size_t rms_final = vocab * dim + L * per_layer;
  EXPECT_EQ(view_float(src->get("output_norm.weight"), 0), static_cast<float>(rms_final));
}

TEST(Llama2cLoader, BytesInMemoryGiveTheFilesViews) {
  // dim 4, hidden 6, 1 layer, 2 heads of 2, 1 kv head, vocab 5 shared, seq_len 2 (the fuzz seed's shape).
  const size_t n = 5 * 4 + (2 * 4 + 2 * 16 + 2 * 2 * 4 + 3 * 6 * 4) + 4 + 2 * 2;
  const std::vector<uint8_t> bytes = synthetic({4, 6, 1, 2, 1, 5, 2}, n);
  TempDir dir;
  const std::string path = dir.file("tiny.bin");
  write_file_bytes(path, bytes);
  const auto from_file = load_llama2c_model(path);
  std::vector<float> aligned(bytes.size() / 4);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto* base = reinterpret_cast<const uint8_t*>(aligned.data());
  const auto from_bytes = parse_llama2c_model(base, bytes.size(), "in-memory");
  EXPECT_EQ(from_bytes->config.head_dim, 2);
  ASSERT_EQ(from_bytes->tensors.size(), from_file->tensors.size());
  for (const auto& [name, t] : from_file->tensors) {
    const TensorView& m = from_bytes->get(name);
    EXPECT_EQ(m.shape, t.shape) << name;
    EXPECT_EQ(m.nbytes, t.nbytes) << name;
    // Float k of the file is k: equal bytes are equal offsets.
    EXPECT_EQ(std::memcmp(m.data, t.data, t.nbytes), 0) << name;
    EXPECT_TRUE(m.data >= base && m.data + m.nbytes <= base + bytes.size()) << name;
  }
  EXPECT_CONTAINS(error_of([&] { parse_llama2c_model(base, bytes.size() - 4, "in-memory"); }), "in-memory");
}

TEST(Llama2cLoader, TruncatedOrPaddedFile) {
  REQUIRE_FIXTURE("stories260K");
  const auto raw = read_bytes(fixture("stories260K"));
  TempDir dir;
  const std::string path = dir.file("cut.bin");
  for (size_t n : {size_t{0}, size_t{10}, size_t{28}, size_t{1000}, raw.size() - 4, raw.size() + 4}) {
    std::vector<uint8_t> bytes(raw.begin(), raw.begin() + std::min(n, raw.size()));
    bytes.resize(n, 0);
    write_file_bytes(path, bytes);
    EXPECT_CONTAINS(error_of([&] { load_llama2c_model(path); }), path);
  }
  write_file_bytes(path, std::vector<uint8_t>(raw.begin(), raw.end() - 4));
  EXPECT_CONTAINS(error_of([&] { load_llama2c_model(path); }), "file size");
}

TEST(Llama2cLoader, BadHeaders) {
  TempDir dir;
  const std::string path = dir.file("bad.bin");
  struct Case {
    std::vector<int32_t> header;
    const char* field;
  };
  const Case cases[] = {
      {{-64, 172, 5, 8, 4, 512, 512}, "'dim'"},
      {{64, -172, 5, 8, 4, 512, 512}, "'hidden_dim'"},
      {{64, 172, 0, 8, 4, 512, 512}, "'n_layers'"},
      {{64, 172, 5, 0, 4, 512, 512}, "'n_heads'"},
      {{64, 172, 5, 8, -4, 512, 512}, "'n_kv_heads'"},
      {{64, 172, 5, 8, 4, 0, 512}, "'vocab_size'"},
      {{64, 172, 5, 8, 4, 512, -1}, "'seq_len'"},
      {{64, 172, 5, 8, 3, 512, 512}, "'n_kv_heads'"},
      {{64, 172, 5, 16, 32, 512, 512}, "'n_kv_heads'"},
      {{64, 172, 5, 7, 7, 512, 512}, "'dim'"},
      {{64, 172, 5, 64, 64, 512, 512}, "odd"},
      {{2147483647, 2147483647, 2147483647, 1, 1, -2147483647 - 1, 2147483647}, "bad.bin"},
  };
  for (const Case& tc : cases) {
    write_file_bytes(path, synthetic(tc.header, 64));
    const std::string msg = error_of([&] { load_llama2c_model(path); });
    EXPECT_CONTAINS(msg, path);
    EXPECT_CONTAINS(msg, tc.field);
  }
  // A versioned export (magic "ak42") gets a message saying so.
  auto bytes = synthetic({0x616b3432, 1, 64, 172, 5, 8, 4}, 64);
  write_file_bytes(path, bytes);
  EXPECT_CONTAINS(error_of([&] { load_llama2c_model(path); }), "versioned");
  EXPECT_CONTAINS(error_of([&] { load_llama2c_model(dir.file("absent.bin")); }), "absent.bin");
}

}  // namespace
}  // namespace ariadne
