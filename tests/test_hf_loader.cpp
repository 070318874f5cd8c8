// Hugging Face folder loader: config.json parsing, safetensors reading, name mapping, sharded folders and
// corrupt inputs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/hf_model.h"
#include "formats/safetensors.h"

namespace ariadne {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path fixture(const std::string& name) {
  return fs::path(ARIADNE_SHARED_DIR) / "fixtures" / "hf" / name;
}

#define REQUIRE_FIXTURE(name)                                                           \
  do {                                                                                  \
    if (!fs::exists(fixture(name) / "model.safetensors"))                               \
      GTEST_SKIP() << "fixture " << fixture(name) << " is absent (needs /work/shared)"; \
  } while (0)

// A fresh folder under the system temp dir, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("ariadne_hf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p) << s;
}

// Runs fn, expects an ariadne::Error, and returns its message ("" plus a test failure if none came).
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

float f32_at(const TensorView& t, size_t i) {
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

// The raw bytes of an HF tensor, straight from the fixture file, to compare a loaded view against.
std::vector<uint8_t> raw_tensor(const fs::path& file, const std::string& hf_name) {
  const std::vector<uint8_t> bytes = read_bytes(file);
  for (const auto& t : parse_safetensors(bytes.data(), bytes.size(), file.string())) {
    if (t.name == hf_name) return std::vector<uint8_t>(t.data, t.data + t.nbytes);
  }
  ADD_FAILURE() << hf_name << " not in " << file;
  return {};
}

std::vector<uint8_t> view_bytes(const TensorView& t) {
  return std::vector<uint8_t>(t.data, t.data + t.nbytes);
}

// Small valid config.json text (llama) for synthetic folders and config tests.
json base_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 16, "hidden_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 12,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
    "bos_token_id": 1, "eos_token_id": 2})");
}

ModelConfig parse(const json& j) {
  return parse_hf_config(j.dump(), "/m/config.json");
}

std::string config_error(const json& j) {
  return error_of([&] { parse_hf_config(j.dump(), "/m/config.json"); });
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures: each checked field by field against its config.json.

TEST(HfLoader, LlamaTinyUntiedF32) {
  REQUIRE_FIXTURE("llama-tiny");
  auto src = load_hf_model(fixture("llama-tiny").string());
  const ModelConfig& c = src->config;
  EXPECT_EQ(src->format, "hf");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_embd, 128);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.n_ff, 352);
  EXPECT_EQ(c.n_ctx_train, 4096);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_EQ(c.rope.style, RopeStyle::NeoX);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);

  EXPECT_EQ(src->tensors.size(), 3u + 9u * 2u);
  const TensorView& out = src->get("output.weight");
  EXPECT_EQ(out.type, DType::F32);
  EXPECT_EQ(out.shape, (std::vector<int64_t>{512, 128}));
  EXPECT_EQ(src->get("blk.1.attn_k.weight").shape, (std::vector<int64_t>{64, 128}));
  EXPECT_EQ(src->get("blk.0.ffn_down.weight").shape, (std::vector<int64_t>{128, 352}));
  EXPECT_EQ(src->get("blk.0.ffn_gate.weight").shape, (std::vector<int64_t>{352, 128}));
  EXPECT_EQ(src->find("blk.0.attn_q.bias"), nullptr);

  const fs::path file = fixture("llama-tiny") / "model.safetensors";
  EXPECT_EQ(view_bytes(src->get("token_embd.weight")), raw_tensor(file, "model.embed_tokens.weight"));
  EXPECT_EQ(view_bytes(out), raw_tensor(file, "lm_head.weight"));
  EXPECT_EQ(view_bytes(src->get("blk.1.ffn_up.weight")),
            raw_tensor(file, "model.layers.1.mlp.up_proj.weight"));
  EXPECT_EQ(view_bytes(src->get("output_norm.weight")), raw_tensor(file, "model.norm.weight"));
}

TEST(HfLoader, Llama3TinyRopeScalingAndTied) {
  REQUIRE_FIXTURE("llama3-tiny");
  auto src = load_hf_model(fixture("llama3-tiny").string());
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.n_vocab, 640);
  EXPECT_EQ(c.n_embd, 128);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 1);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.n_ff, 384);
  EXPECT_EQ(c.n_ctx_train, 131072);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_FLOAT_EQ(c.rope.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope.original_context, 8192);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(src->find("output.weight"), nullptr);
  EXPECT_EQ(src->tensors.size(), 2u + 9u * 3u);
  EXPECT_EQ(src->get("blk.2.attn_v.weight").shape, (std::vector<int64_t>{32, 128}));
}

TEST(HfLoader, Qwen2TinyBiases) {
  REQUIRE_FIXTURE("qwen2-tiny");
  auto src = load_hf_model(fixture("qwen2-tiny").string());
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(c.n_vocab, 600);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 16);  // no head_dim in config: hidden / heads
  EXPECT_EQ(c.n_ff, 320);
  EXPECT_EQ(c.n_ctx_train, 32768);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope.theta, 1e6f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(c.bos_id, -1);  // null in config.json
  EXPECT_EQ(c.eos_id, -1);
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(src->get(b + "attn_q.bias").shape, (std::vector<int64_t>{128}));
    EXPECT_EQ(src->get(b + "attn_k.bias").shape, (std::vector<int64_t>{32}));
    EXPECT_EQ(src->get(b + "attn_v.bias").shape, (std::vector<int64_t>{32}));
  }
  EXPECT_EQ(view_bytes(src->get("blk.1.attn_k.bias")),
            raw_tensor(fixture("qwen2-tiny") / "model.safetensors", "model.layers.1.self_attn.k_proj.bias"));
  EXPECT_EQ(src->tensors.size(), 2u + 12u * 2u);
}

TEST(HfLoader, Qwen3TinyQkNormAndHeadDim) {
  REQUIRE_FIXTURE("qwen3-tiny");
  auto src = load_hf_model(fixture("qwen3-tiny").string());
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.n_vocab, 700);
  EXPECT_EQ(c.n_embd, 128);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 64);  // != hidden / heads
  EXPECT_EQ(c.n_ff, 256);
  EXPECT_EQ(c.n_ctx_train, 40960);
  EXPECT_FLOAT_EQ(c.rope.theta, 1e6f);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(src->get("blk.0.attn_q_norm.weight").shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(src->get("blk.1.attn_k_norm.weight").shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(src->get("blk.0.attn_q.weight").shape, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(src->get("blk.0.attn_output.weight").shape, (std::vector<int64_t>{128, 256}));
  EXPECT_EQ(
      view_bytes(src->get("blk.0.attn_q_norm.weight")),
      raw_tensor(fixture("qwen3-tiny") / "model.safetensors", "model.layers.0.self_attn.q_norm.weight"));
  EXPECT_EQ(src->tensors.size(), 2u + 11u * 2u);
}

TEST(HfLoader, MistralTinyBf16) {
  REQUIRE_FIXTURE("mistral-tiny-bf16");
  auto src = load_hf_model(fixture("mistral-tiny-bf16").string());
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.arch, Arch::Mistral);
  EXPECT_EQ(c.n_vocab, 512);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.n_ff, 320);
  EXPECT_EQ(c.n_ctx_train, 32768);
  EXPECT_FLOAT_EQ(c.rope.theta, 1e6f);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(src->tensors.size(), 3u + 9u * 2u);
  for (const auto& [name, t] : src->tensors) {
    EXPECT_EQ(t.type, DType::BF16) << name;
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * 2) << name;
  }
  EXPECT_EQ(view_bytes(src->get("output.weight")),
            raw_tensor(fixture("mistral-tiny-bf16") / "model.safetensors", "lm_head.weight"));
}

TEST(HfLoader, AcceptsConfigJsonOrSafetensorsPath) {
  REQUIRE_FIXTURE("llama-tiny");
  auto from_dir = load_hf_model(fixture("llama-tiny").string());
  for (const char* file : {"config.json", "model.safetensors"}) {
    auto src = load_hf_model((fixture("llama-tiny") / file).string());
    EXPECT_EQ(src->tensors.size(), from_dir->tensors.size()) << file;
    EXPECT_EQ(src->config.n_ff, 352) << file;
    EXPECT_EQ(view_bytes(src->get("blk.1.attn_q.weight")), view_bytes(from_dir->get("blk.1.attn_q.weight")));
  }
  EXPECT_CONTAINS(error_of([&] { load_hf_model((fixture("llama-tiny") / "expected.json").string()); }),
                  "expected.json");
  EXPECT_CONTAINS(error_of([] { load_hf_model("/nonexistent/model/dir"); }), "/nonexistent/model/dir");
}

// ---------------------------------------------------------------------------------------------------------
// Sharded folders.

// Splits a fixture's tensors into two shard files in dir (alternating), optionally with an index.
void write_shards(const fs::path& fixture_dir, const fs::path& dir, bool with_index) {
  fs::copy_file(fixture_dir / "config.json", dir / "config.json");
  const std::vector<uint8_t> bytes = read_bytes(fixture_dir / "model.safetensors");
  const auto tensors = parse_safetensors(bytes.data(), bytes.size(), "fixture");
  std::vector<SafetensorsWriteTensor> parts[2];
  json weight_map = json::object();
  const char* names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const char* dtype = t.type == DType::F32 ? "F32" : t.type == DType::F16 ? "F16" : "BF16";
    parts[i % 2].push_back({t.name, dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    weight_map[t.name] = names[i % 2];
  }
  for (int s = 0; s < 2; ++s) write_file_bytes((dir / names[s]).string(), write_safetensors(parts[s]));
  if (with_index) {
    json index = {{"metadata", {{"total_size", bytes.size()}}}, {"weight_map", weight_map}};
    write_text(dir / "model.safetensors.index.json", index.dump(2));
  }
}

void expect_same_model(const ModelSource& a, const ModelSource& b) {
  EXPECT_EQ(a.config.arch, b.config.arch);
  EXPECT_EQ(a.config.n_vocab, b.config.n_vocab);
  EXPECT_EQ(a.config.n_layer, b.config.n_layer);
  EXPECT_EQ(a.config.tied_output, b.config.tied_output);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    const TensorView* u = b.find(name);
    ASSERT_NE(u, nullptr) << name;
    EXPECT_EQ(t.type, u->type) << name;
    EXPECT_EQ(t.shape, u->shape) << name;
    EXPECT_EQ(view_bytes(t), view_bytes(*u)) << name;
  }
}

TEST(HfLoader, MultiShardWithIndexLoadsIdentically) {
  for (const char* name : {"llama-tiny", "mistral-tiny-bf16"}) {
    REQUIRE_FIXTURE(name);
    TempDir dir;
    write_shards(fixture(name), dir.path(), /*with_index=*/true);
    auto original = load_hf_model(fixture(name).string());
    auto sharded = load_hf_model(dir.path().string());
    expect_same_model(*original, *sharded);
    // One mapping per shard (plus nothing else: all views are aligned in place).
    EXPECT_EQ(sharded->storage.size(), 2u) << name;
  }
}

TEST(HfLoader, MultiShardWithoutIndexLoadsAllSafetensors) {
  REQUIRE_FIXTURE("qwen2-tiny");
  TempDir dir;
  write_shards(fixture("qwen2-tiny"), dir.path(), /*with_index=*/false);
  expect_same_model(*load_hf_model(fixture("qwen2-tiny").string()), *load_hf_model(dir.path().string()));
}

TEST(HfLoader, MissingShardNamesTheShard) {
  REQUIRE_FIXTURE("llama-tiny");
  TempDir dir;
  write_shards(fixture("llama-tiny"), dir.path(), /*with_index=*/true);
  fs::remove(dir.path() / "model-00002-of-00002.safetensors");
  const std::string msg = error_of([&] { load_hf_model(dir.path().string()); });
  EXPECT_CONTAINS(msg, "model-00002-of-00002.safetensors");
  EXPECT_CONTAINS(msg, "model.safetensors.index.json");
}

TEST(HfLoader, IndexedTensorAbsentFromShard) {
  REQUIRE_FIXTURE("llama-tiny");
  TempDir dir;
  write_shards(fixture("llama-tiny"), dir.path(), /*with_index=*/false);
  json index = {{"weight_map",
                 {{"model.norm.weight", "model-00001-of-00002.safetensors"},
                  {"model.layers.7.mlp.up_proj.weight", "model-00002-of-00002.safetensors"}}}};
  write_text(dir.path() / "model.safetensors.index.json", index.dump());
  const std::string msg = error_of([&] { load_hf_model(dir.path().string()); });
  EXPECT_CONTAINS(msg, "model.layers.7.mlp.up_proj.weight");
  EXPECT_CONTAINS(msg, "model-00002-of-00002.safetensors");

  index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  write_text(dir.path() / "model.safetensors.index.json", index.dump());
  EXPECT_CONTAINS(error_of([&] { load_hf_model(dir.path().string()); }), "../elsewhere.safetensors");
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic folders: unknown names, misaligned data.

std::vector<uint8_t> floats_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(HfLoader, IgnoresUnknownTensorsAndCopiesMisalignedOnes) {
  TempDir dir;
  write_text(dir.path() / "config.json", base_config().dump());
  std::vector<float> norm(8);
  for (int i = 0; i < 8; ++i) norm[i] = 0.5f + static_cast<float>(i);
  // A 1-element F16 first puts the F32 norm at data offset 2: not 4-byte aligned in the mapping.
  std::vector<SafetensorsWriteTensor> ts = {
      {"model.layers.0.self_attn.rotary_emb.inv_freq", "F16", {1}, {0, 0x3c}},
      {"model.norm.weight", "F32", {8}, floats_bytes(norm)},
      {"some.unknown.tensor", "F32", {2}, floats_bytes({1, 2})},
      {"model.layers.0.mlp.up_proj.weight", "F16", {12, 8}, std::vector<uint8_t>(12 * 8 * 2, 0)},
  };
  write_file_bytes((dir.path() / "model.safetensors").string(), write_safetensors(ts));
  auto src = load_hf_model(dir.path().string());
  EXPECT_EQ(src->tensors.size(), 2u);
  const TensorView& t = src->get("output_norm.weight");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 4, 0u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(f32_at(t, i), norm[i]);
  EXPECT_EQ(src->get("blk.0.ffn_up.weight").type, DType::F16);
  EXPECT_TRUE(src->config.tied_output);
}

TEST(HfLoader, NameMapping) {
  EXPECT_EQ(hf_to_gguf_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(hf_to_gguf_name("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.input_layernorm.weight"), "blk.0.attn_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.12.self_attn.q_proj.bias"), "blk.12.attn_q.bias");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.self_attn.o_proj.weight"), "blk.3.attn_output.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.self_attn.k_norm.weight"), "blk.3.attn_k_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.post_attention_layernorm.weight"), "blk.3.ffn_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.mlp.gate_proj.weight"), "blk.3.ffn_gate.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), std::nullopt);
  EXPECT_EQ(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(hf_to_gguf_name("model.layers.01.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(hf_to_gguf_name("model.layers.1"), std::nullopt);
  EXPECT_EQ(hf_to_gguf_name("vision_tower.weight"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------------------
// Corrupt safetensors.

std::vector<uint8_t> small_safetensors() {
  return write_safetensors({{"a", "F32", {2, 3}, floats_bytes({1, 2, 3, 4, 5, 6})},
                            {"b", "BF16", {4}, std::vector<uint8_t>(8, 0x3f)}});
}

TEST(HfLoader, SafetensorsRoundTrip) {
  const auto bytes = small_safetensors();
  const auto ts = parse_safetensors(bytes.data(), bytes.size(), "x.safetensors");
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].name, "a");
  EXPECT_EQ(ts[0].type, DType::F32);
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ts[0].nbytes, 24u);
  EXPECT_EQ((ts[0].offset - 8) % 8, 0u);  // header padded so the data area is 8-aligned
  float f;
  std::memcpy(&f, ts[0].data + 20, 4);
  EXPECT_EQ(f, 6.0f);
  EXPECT_EQ(ts[1].type, DType::BF16);
  EXPECT_EQ(ts[1].offset, ts[0].offset + 24);
}

TEST(HfLoader, TruncatedSafetensorsAtEveryPrefix) {
  const auto bytes = small_safetensors();
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string msg = error_of([&] { parse_safetensors(bytes.data(), n, "cut.safetensors"); });
    EXPECT_CONTAINS(msg, "cut.safetensors");
  }
}

TEST(HfLoader, TruncatedFixtureInFolder) {
  REQUIRE_FIXTURE("llama-tiny");
  const auto bytes = read_bytes(fixture("llama-tiny") / "model.safetensors");
  TempDir dir;
  fs::copy_file(fixture("llama-tiny") / "config.json", dir.path() / "config.json");
  const std::string file = (dir.path() / "model.safetensors").string();
  for (size_t n : {size_t{0}, size_t{5}, size_t{8}, size_t{100}, size_t{2207}, size_t{2208}, size_t{600000},
                   bytes.size() - 1}) {
    write_file_bytes(file, std::vector<uint8_t>(bytes.begin(), bytes.begin() + n));
    EXPECT_CONTAINS(error_of([&] { load_hf_model(dir.path().string()); }), file);
  }
}

TEST(HfLoader, SafetensorsHeaderLengthTooLarge) {
  auto bytes = small_safetensors();
  bytes[5] = 0x01;  // header length += 2^40
  const std::string msg = error_of([&] { parse_safetensors(bytes.data(), bytes.size(), "big.safetensors"); });
  EXPECT_CONTAINS(msg, "big.safetensors");
  EXPECT_CONTAINS(msg, "header length");
  // Within the file but above the 100 MB cap.
  std::vector<uint8_t> huge(8 + kSafetensorsMaxHeaderBytes + 16, ' ');
  const uint64_t n = kSafetensorsMaxHeaderBytes + 8;
  for (int i = 0; i < 8; ++i) huge[i] = static_cast<uint8_t>(n >> (8 * i));
  EXPECT_CONTAINS(error_of([&] { parse_safetensors(huge.data(), huge.size(), "cap.safetensors"); }), "limit");
}

std::string parse_error(const std::string& header, size_t data_bytes = 64) {
  const auto bytes = pack_safetensors(header, std::vector<uint8_t>(data_bytes, 0));
  return error_of([&] { parse_safetensors(bytes.data(), bytes.size(), "bad.safetensors"); });
}

TEST(HfLoader, CorruptSafetensorsHeaders) {
  std::string msg = parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})");
  EXPECT_CONTAINS(msg, "bad.safetensors");
  EXPECT_CONTAINS(msg, "JSON");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [8E888], "data_offsets": [0, 8]}})");
  EXPECT_CONTAINS(msg, "bad.safetensors");
  EXPECT_CONTAINS(msg, "JSON");

  msg = parse_error(R"([1, 2])");
  EXPECT_CONTAINS(msg, "object");

  msg = parse_error(R"({"w": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})");
  EXPECT_CONTAINS(msg, "bad.safetensors");
  EXPECT_CONTAINS(msg, "'w'");
  EXPECT_CONTAINS(msg, "I64");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [60, 68]}})");
  EXPECT_CONTAINS(msg, "'w'");
  EXPECT_CONTAINS(msg, "data_offsets");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})");
  EXPECT_CONTAINS(msg, "end before begin");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 32]}})");
  EXPECT_CONTAINS(msg, "'w'");
  EXPECT_CONTAINS(msg, "need 36");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})");
  EXPECT_CONTAINS(msg, "shape");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})");
  EXPECT_CONTAINS(msg, "overflows");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]}})");
  EXPECT_CONTAINS(msg, "data_offsets");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})");
  EXPECT_CONTAINS(msg, "data_offsets");

  msg = parse_error(R"({"w": {"dtype": "F32", "shape": [2]}})");
  EXPECT_CONTAINS(msg, "missing field 'data_offsets'");

  msg = parse_error(R"({"w": 3})");
  EXPECT_CONTAINS(msg, "'w'");

  // __metadata__ is skipped whatever it holds; a scalar tensor has one element.
  const auto ok = pack_safetensors(
      R"({"__metadata__": {"format": "pt"}, "s": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}})",
      {0, 0x3c});
  const auto ts = parse_safetensors(ok.data(), ok.size(), "ok.safetensors");
  ASSERT_EQ(ts.size(), 1u);
  EXPECT_EQ(ts[0].nbytes, 2u);
}

TEST(HfLoader, RandomByteFlipsNeverCrash) {
  // Light in-test fuzzing: every failure must be an ariadne::Error (run under ASan in the sanitizer build).
  const auto base = small_safetensors();
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 2000; ++iter) {
    auto bytes = base;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    try {
      for (const auto& t : parse_safetensors(bytes.data(), bytes.size(), "f.safetensors")) {
        ASSERT_LE(t.offset + t.nbytes, bytes.size());
      }
    } catch (const Error&) {
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// config.json parsing.

TEST(HfLoader, ConfigBasicsAndDefaults) {
  json j = base_config();
  j.erase("num_key_value_heads");
  j.erase("tie_word_embeddings");
  j["head_dim"] = nullptr;
  j["rope_scaling"] = nullptr;
  j["eos_token_id"] = {7, 8};
  j["bos_token_id"] = nullptr;
  j["torch_dtype"] = "bfloat16";
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(c.eos_id, 7);
  EXPECT_EQ(c.bos_id, -1);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_EQ(c.rope.style, RopeStyle::NeoX);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
}

TEST(HfLoader, ConfigArchitectures) {
  json j = base_config();
  j["architectures"] = {"Qwen3ForCausalLM"};
  EXPECT_EQ(parse(j).arch, Arch::Qwen3);
  j["architectures"] = {"MistralForCausalLM"};
  EXPECT_EQ(parse(j).arch, Arch::Mistral);
  j.erase("architectures");
  j["model_type"] = "qwen2";
  EXPECT_EQ(parse(j).arch, Arch::Qwen2);

  j["architectures"] = {"GPT2LMHeadModel"};
  const std::string msg = config_error(j);
  EXPECT_CONTAINS(msg, "/m/config.json");
  EXPECT_CONTAINS(msg, "unsupported architecture");
  EXPECT_CONTAINS(msg, "GPT2LMHeadModel");
  EXPECT_CONTAINS(msg, "LlamaForCausalLM");

  j["architectures"] = {42};
  EXPECT_CONTAINS(config_error(j), "architectures");
}

TEST(HfLoader, ConfigRopeStyles) {
  json j = base_config();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Linear);
  EXPECT_FLOAT_EQ(c.rope.factor, 2.0f);

  // New style: everything inside rope_parameters (and it wins over a stray top-level rope_theta).
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 500000.0},  {"rope_type", "llama3"},
                          {"factor", 32.0},          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  c = parse(j);
  EXPECT_FLOAT_EQ(c.rope.theta, 500000.0f);
  EXPECT_EQ(c.rope.scaling, RopeScaling::Llama3);
  EXPECT_FLOAT_EQ(c.rope.factor, 32.0f);
  EXPECT_EQ(c.rope.original_context, 8192);

  j["rope_parameters"].erase("low_freq_factor");
  EXPECT_CONTAINS(config_error(j), "rope_parameters.low_freq_factor");
  j["rope_parameters"]["low_freq_factor"] = 4.0;
  EXPECT_CONTAINS(config_error(j), "high_freq_factor");

  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "dynamic"}, {"factor", 2.0}};
  std::string msg = config_error(j);
  EXPECT_CONTAINS(msg, "/m/config.json");
  EXPECT_CONTAINS(msg, "rope_parameters.rope_type");
  EXPECT_CONTAINS(msg, "dynamic");

  j.erase("rope_parameters");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  msg = config_error(j);
  EXPECT_CONTAINS(msg, "rope_scaling.rope_type");
  EXPECT_CONTAINS(msg, "yarn");

  j["rope_scaling"] = "linear";
  EXPECT_CONTAINS(config_error(j), "rope_scaling");
  j["rope_scaling"] = {{"factor", 4.0}};
  EXPECT_CONTAINS(config_error(j), "rope_scaling.rope_type");
}

TEST(HfLoader, ConfigWrongTypesAndValues) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"hidden_size", "128"},
      {"hidden_size", 8.5},
      {"vocab_size", -16},
      {"num_attention_heads", 0},
      {"num_hidden_layers", true},
      {"intermediate_size", nullptr},
      {"num_key_value_heads", -1},
      {"rms_norm_eps", "1e-5"},
      {"rms_norm_eps", -1.0},
      {"rope_theta", "big"},
      {"tie_word_embeddings", "yes"},
      {"bos_token_id", "<s>"},
      {"eos_token_id", {"x"}},
      {"max_position_embeddings", 1e30},
      {"head_dim", 0},
      {"vocab_size", 18446744073709551615ull},
  };
  for (const Case& tc : cases) {
    json j = base_config();
    j[tc.field] = tc.value;
    const std::string msg = config_error(j);
    EXPECT_CONTAINS(msg, "/m/config.json");
    EXPECT_CONTAINS(msg, tc.field);
  }
  json j = base_config();
  j["num_key_value_heads"] = 3;  // 2 heads
  EXPECT_CONTAINS(config_error(j), "num_key_value_heads");
  j = base_config();
  j["hidden_size"] = 9;  // 2 heads, no head_dim
  EXPECT_CONTAINS(config_error(j), "hidden_size");
  j["head_dim"] = 4;  // explicit head_dim makes it fine
  EXPECT_EQ(parse(j).head_dim, 4);
  j = base_config();
  j.erase("vocab_size");
  EXPECT_CONTAINS(config_error(j), "missing field 'vocab_size'");
}

TEST(HfLoader, ConfigMalformedJson) {
  const std::string msg = error_of([] { parse_hf_config("{\"vocab_size\": 16,, }", "/m/config.json"); });
  EXPECT_CONTAINS(msg, "/m/config.json");
  EXPECT_CONTAINS(msg, "byte 19");
  EXPECT_CONTAINS(error_of([] { parse_hf_config("[1, 2]", "/m/config.json"); }), "object");
  EXPECT_CONTAINS(error_of([] { parse_hf_config("", "/m/config.json"); }), "/m/config.json");
  EXPECT_CONTAINS(error_of([] { parse_hf_config(R"({"vocab_size": 1e999})", "/m/config.json"); }),
                  "/m/config.json");
}

TEST(HfLoader, BadConfigInFolderNamesConfigJson) {
  TempDir dir;
  json j = base_config();
  j["architectures"] = {"FalconForCausalLM"};
  write_text(dir.path() / "config.json", j.dump());
  write_file_bytes((dir.path() / "model.safetensors").string(), small_safetensors());
  const std::string msg = error_of([&] { load_hf_model(dir.path().string()); });
  EXPECT_CONTAINS(msg, (dir.path() / "config.json").string());
  EXPECT_CONTAINS(msg, "FalconForCausalLM");

  fs::remove(dir.path() / "config.json");
  EXPECT_CONTAINS(error_of([&] { load_hf_model(dir.path().string()); }), "config.json");

  write_text(dir.path() / "config.json", base_config().dump());
  fs::remove(dir.path() / "model.safetensors");
  EXPECT_CONTAINS(error_of([&] { load_hf_model(dir.path().string()); }), "no weights");
}

}  // namespace
}  // namespace ariadne

namespace ariadne {
namespace {

// Found by fuzz_hf_config: a positive epsilon that rounds to 0 in float32 must be rejected, not accepted.
TEST(HfLoaderConfig, EpsilonThatVanishesInFloat32IsRejected) {
  const std::string config = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 1, "vocab_size": 10,
    "rms_norm_eps": 1e-85})";
  try {
    parse_hf_config(config, "x/config.json");
    FAIL() << "accepted an epsilon of 0 in float32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rms_norm_eps"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ariadne
