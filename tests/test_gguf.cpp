// GGUF reader/writer round trips, the shared llama-2 fixture, GGUF -> ModelConfig mapping, and corrupt
// inputs (every one must be an ariadne::Error naming the file, never a crash).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_model.h"
#include "kernels/cpu/packed.h"

namespace ariadne {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ariadne_gguf_XXXXXX").string();
    ARIADNE_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Expects GgufFile(path) to throw an Error whose message names the file and contains `what`.
void expect_gguf_error(const std::string& path, const std::string& what) {
  try {
    GgufFile f(path);
    ADD_FAILURE() << "no error for " << path << " (expected '" << what << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

// Builds GGUF bytes by hand, independently of GgufWriter, so corrupt files can be made field by field.
class Bytes {
 public:
  Bytes& u8(uint8_t v) { return raw(&v, 1); }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& f32(float v) { return raw(&v, 4); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    raw("GGUF", 4);
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  Bytes& kv_u32(std::string_view key, uint32_t v) {
    str(key);
    u32(4);
    return u32(v);
  }
  Bytes& tensor_info(std::string_view name, std::vector<uint64_t> ne, uint32_t ggml_type, uint64_t offset) {
    str(name);
    u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    u32(ggml_type);
    return u64(offset);
  }
  Bytes& pad_to(size_t alignment) {
    while (b_.size() % alignment != 0) b_.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b_.resize(b_.size() + n, 0);
    return *this;
  }
  Bytes& raw(const void* p, size_t n) {
    const auto* s = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), s, s + n);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

// ---------------------------------------------------------------------------------------------------
// Writer -> reader round trips

TEST(GgufRoundTrip, EveryMetadataType) {
  TempDir dir;
  const std::string path = dir.file("kv.gguf");
  const std::vector<std::string> strings = {"", "hello", "▁wörld", std::string("nul\0byte", 8)};
  const std::vector<float> floats = {1.5f, -0.0f, 3.25e-7f, std::numeric_limits<float>::infinity()};
  const std::vector<int32_t> ints = {0, -1, std::numeric_limits<int32_t>::min(), 123456789};

  // Nested array of string arrays, and a u16 array, through set_value.
  GgufValue inner_a;
  inner_a.type = GgufType::Array;
  inner_a.elem_type = GgufType::String;
  inner_a.strings = {"a", "bc"};
  inner_a.count = 2;
  GgufValue inner_b = inner_a;
  inner_b.strings = {};
  inner_b.count = 0;
  GgufValue nested;
  nested.type = GgufType::Array;
  nested.elem_type = GgufType::Array;
  nested.arrays = {inner_a, inner_b};
  nested.count = 2;
  const uint16_t u16s[3] = {1, 65535, 7};
  GgufValue u16_array;
  u16_array.type = GgufType::Array;
  u16_array.elem_type = GgufType::U16;
  u16_array.elems = reinterpret_cast<const uint8_t*>(u16s);
  u16_array.count = 3;

  {
    GgufWriter w;
    w.set_u8("t.u8", 200);
    w.set_i8("t.i8", -100);
    w.set_u16("t.u16", 60000);
    w.set_i16("t.i16", -30000);
    w.set_u32("t.u32", 4000000000u);
    w.set_i32("t.i32", -2000000000);
    w.set_f32("t.f32", 0.1f);
    w.set_bool("t.bool", true);
    w.set_string("t.string", "Ariadne");
    w.set_u64("t.u64", 18000000000000000000ull);
    w.set_i64("t.i64", -9000000000000000000ll);
    w.set_f64("t.f64", 2.718281828459045);
    w.set_string_array("t.strings", strings);
    w.set_f32_array("t.floats", floats);
    w.set_i32_array("t.ints", ints);
    w.set_value("t.nested", nested);
    w.set_value("t.u16s", u16_array);
    w.set_u8("t.replaced", 1);
    w.set_u8("t.replaced", 2);  // replaces in place: keeps the earlier position
    w.set_bool("t.false", false);
    w.begin(path);
    w.finish();
  }
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_TRUE(f.tensors().empty());

  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_float("t.f32"), 0.1f);  // f32 widened exactly
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_FALSE(f.get_bool("t.false"));
  EXPECT_EQ(f.get_string("t.string"), "Ariadne");
  EXPECT_EQ(f.find("t.u64")->u, 18000000000000000000ull);
  EXPECT_EQ(f.get_int("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_float("t.f64"), 2.718281828459045);
  EXPECT_EQ(f.get_int("t.replaced"), 2);
  EXPECT_EQ(f.get_string_array("t.strings"), strings);
  const std::vector<float> got_floats = f.get_f32_array("t.floats");
  ASSERT_EQ(got_floats.size(), floats.size());
  for (size_t i = 0; i < floats.size(); ++i) EXPECT_EQ(std::memcmp(&got_floats[i], &floats[i], 4), 0) << i;
  EXPECT_EQ(f.get_i32_array("t.ints"), ints);
  EXPECT_EQ(f.get_i32_array("t.u16s"), (std::vector<int32_t>{1, 65535, 7}));

  const GgufValue* n = f.find("t.nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->type_string(), "array of array");
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->arrays[0].elem_type, GgufType::String);
  ASSERT_EQ(n->arrays[0].strings.size(), 2u);
  EXPECT_EQ(n->arrays[0].strings[1], "bc");
  EXPECT_EQ(n->arrays[1].count, 0u);
  EXPECT_EQ(gguf_value_to_string(*n), "[[\"a\", \"bc\"], []]");

  // File order, with the replaced key at its first position.
  std::vector<std::string> keys;
  for (const auto& kv : f.metadata()) keys.push_back(kv.key);
  const std::vector<std::string> expected_keys = {"t.u8",     "t.i8",   "t.u16",      "t.i16",    "t.u32",
                                                  "t.i32",    "t.f32",  "t.bool",     "t.string", "t.u64",
                                                  "t.i64",    "t.f64",  "t.strings",  "t.floats", "t.ints",
                                                  "t.nested", "t.u16s", "t.replaced", "t.false"};
  EXPECT_EQ(keys, expected_keys);
  EXPECT_EQ(f.find("t.i16")->type, GgufType::I16);
  EXPECT_EQ(f.find("t.f64")->type, GgufType::F64);
}

TEST(GgufRoundTrip, GetterErrorsNameFileKeyAndTypes) {
  TempDir dir;
  const std::string path = dir.file("types.gguf");
  GgufWriter w;
  w.set_u32("a.count", 3);
  w.set_string("a.name", "x");
  w.set_f32_array("a.floats", std::vector<float>{1.0f});
  w.set_u64("a.huge", std::numeric_limits<uint64_t>::max());
  w.set_i64("a.big", int64_t{1} << 40);
  w.begin(path);
  w.finish();
  GgufFile f(path);

  auto expect_msg = [&](auto fn, const std::string& expected) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected: " << expected;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), path + ": " + expected);
    }
  };
  expect_msg([&] { f.get_string("a.count"); }, "metadata key 'a.count': expected string, found u32");
  expect_msg([&] { f.get_int("a.name"); }, "metadata key 'a.name': expected integer, found string");
  expect_msg([&] { f.get_float("a.missing"); }, "metadata key 'a.missing': expected float, missing");
  expect_msg([&] { f.get_bool("a.count"); }, "metadata key 'a.count': expected bool, found u32");
  expect_msg([&] { f.get_string_array("a.floats"); },
             "metadata key 'a.floats': expected array of string, found array of f32");
  expect_msg([&] { f.get_f32_array("a.name"); },
             "metadata key 'a.name': expected array of f32, found string");
  expect_msg([&] { f.get_int("a.huge"); },
             "metadata key 'a.huge': value 18446744073709551615 is out of range");
  // Fallbacks apply only to absent keys.
  EXPECT_EQ(f.get_int("a.missing", 7), 7);
  EXPECT_EQ(f.get_int("a.count", 7), 3);
  EXPECT_EQ(f.get_string("a.missing", "dflt"), "dflt");
  EXPECT_THROW(f.get_string("a.count", "dflt"), Error);
  EXPECT_EQ(f.get_int("a.big"), int64_t{1} << 40);
}

TEST(GgufRoundTrip, ValueToStringTruncates) {
  TempDir dir;
  const std::string path = dir.file("show.gguf");
  std::vector<std::string> many;
  for (int i = 0; i < 100; ++i) many.push_back(fmt::format("t{}", i));
  GgufWriter w;
  w.set_string_array("many", many);
  w.set_string("ctrl", "a\"b\n\x01");
  w.set_string("long", std::string(300, 'x'));
  w.set_f32("eps", 1e-5f);
  w.set_bool("flag", false);
  w.begin(path);
  w.finish();
  GgufFile f(path);
  EXPECT_EQ(gguf_value_to_string(*f.find("many"), 3), "[\"t0\", \"t1\", \"t2\", ...] (100 x string)");
  EXPECT_EQ(gguf_value_to_string(*f.find("ctrl")), "\"a\\\"b\\n\\x01\"");
  EXPECT_EQ(gguf_value_to_string(*f.find("long"), 8, 4), "\"xxxx\"...(300 bytes)");
  EXPECT_EQ(gguf_value_to_string(*f.find("eps")), "1e-05");
  EXPECT_EQ(gguf_value_to_string(*f.find("flag")), "false");
}

// Tensors of every DType (just bytes), with the default and a non-default alignment.
void round_trip_tensors(uint32_t alignment) {
  TempDir dir;
  const std::string path = dir.file("tensors.gguf");
  struct Spec {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"f32", DType::F32, {3, 5}},          {"f16", DType::F16, {7}},
      {"bf16", DType::BF16, {2, 3, 4}},     {"q8_0", DType::Q8_0, {2, 64}},
      {"q4_0", DType::Q4_0, {1, 1, 3, 32}}, {"q4_k", DType::Q4_K, {3, 256}},
      {"q6_k", DType::Q6_K, {512}},         {"i32", DType::I32, {4}},
      {"empty", DType::F32, {0, 8}},
  };
  std::vector<std::vector<uint8_t>> payloads;
  GgufWriter w;
  if (alignment != 32) w.set_alignment(alignment);
  w.set_string("general.architecture", "test");
  for (size_t i = 0; i < specs.size(); ++i) {
    w.add_tensor(specs[i].name, specs[i].type, specs[i].shape);
    std::vector<uint8_t> p(w.tensor_nbytes(i));
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<uint8_t>(k * 31 + i * 7 + 1);
    payloads.push_back(std::move(p));
  }
  w.begin(path);
  for (size_t i = 0; i < specs.size(); ++i) {
    // Write the larger tensors in two chunks to exercise chunked streaming.
    const auto& p = payloads[i];
    const size_t half = p.size() > 64 ? p.size() / 2 : p.size();
    w.write_tensor_data(p.data(), half);
    w.write_tensor_data(p.data() + half, p.size() - half);
  }
  w.finish();

  GgufFile f(path);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  if (alignment != 32) {
    EXPECT_EQ(f.get_int("general.alignment"), alignment);
  }
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorView& t = f.tensors()[i];
    SCOPED_TRACE(specs[i].name);
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.type, specs[i].type);
    EXPECT_EQ(t.shape, specs[i].shape);
    EXPECT_EQ(f.ggml_type(i), traits(specs[i].type).ggml_type);
    ASSERT_EQ(t.nbytes, payloads[i].size());
    EXPECT_EQ(static_cast<size_t>(t.data - f.data() - f.data_offset()) % alignment, 0u);
    if (t.nbytes > 0) {
      EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), t.nbytes), 0);
    }
    EXPECT_EQ(f.find_tensor(specs[i].name), &t);
  }
  // Spot-check the byte counts against the block layouts.
  EXPECT_EQ(f.tensors()[3].nbytes, 2u * 2 * 34);  // q8_0: 2 rows x 2 blocks x 34 bytes
  EXPECT_EQ(f.tensors()[5].nbytes, 3u * 144);     // q4_k: 3 rows x 1 super-block of 144 bytes
  EXPECT_EQ(f.tensors()[6].nbytes, 2u * 210);     // q6_k: 2 super-blocks of 210 bytes
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
}

TEST(GgufRoundTrip, TensorsOfEveryDTypeDefaultAlignment) {
  round_trip_tensors(32);
}
TEST(GgufRoundTrip, TensorsOfEveryDTypeAlignment64) {
  round_trip_tensors(64);
}
TEST(GgufRoundTrip, TensorsOfEveryDTypeAlignment8) {
  round_trip_tensors(8);
}

TEST(GgufRoundTrip, UnfinishedWriteLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("partial.gguf");
  {
    GgufWriter w;
    w.add_tensor("a", DType::F32, {16});
    w.begin(path);
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    const std::vector<float> half(8, 1.0f);
    w.write_tensor_data(half.data(), 32);
    EXPECT_THROW(w.finish(), Error);  // tensor incomplete: a programmer error (ARIADNE_CHECK)
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(GgufRoundTrip, WriterRejectsTooMuchData) {
  TempDir dir;
  GgufWriter w;
  w.add_tensor("a", DType::F32, {4});
  w.begin(dir.file("x.gguf"));
  const std::vector<float> v(5, 0.0f);
  EXPECT_THROW(w.write_tensor_data(v.data(), 20), Error);
}

TEST(GgufRoundTrip, ParsesFromMemory) {
  TempDir dir;
  const std::string path = dir.file("mem.gguf");
  GgufWriter w;
  w.set_string("k", "v");
  w.add_tensor("t", DType::F32, {2});
  w.begin(path);
  const float v[2] = {1.0f, 2.0f};
  w.write_tensor_data(v, sizeof(v));
  w.finish();
  const std::vector<uint8_t> bytes = read_all(path);
  GgufFile f(bytes.data(), bytes.size(), "<memory>");
  EXPECT_EQ(f.get_string("k"), "v");
  EXPECT_EQ(f.mapping(), nullptr);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(reinterpret_cast<const float*>(f.tensors()[0].data)[1], 2.0f);
  EXPECT_GE(f.tensors()[0].data, bytes.data());
  EXPECT_LE(f.tensors()[0].data + 8, bytes.data() + bytes.size());
}

// ---------------------------------------------------------------------------------------------------
// The shared fixture

std::string fixture_path() {
  return std::string(ARIADNE_SHARED_DIR) + "/fixtures/gguf/llama-2-tiny-random.gguf";
}

#define SKIP_WITHOUT_FIXTURE()                                                        \
  do {                                                                                \
    if (!fs::exists(fixture_path()))                                                  \
      GTEST_SKIP() << "fixture " << fixture_path() << " is absent (needs ../shared)"; \
  } while (0)

float f16_at(const TensorView& t, size_t i) {
  uint16_t h;
  std::memcpy(&h, t.data + 2 * i, 2);
  return f16_to_f32(h);
}

// Expected values below were derived independently with a small struct-based Python GGUF parser
// (python3 + struct, no llama.cpp code; gguf-py needs numpy, which is absent here), not with this reader.
TEST(GgufFixture, Llama2TinyRandomParses) {
  SKIP_WITHOUT_FIXTURE();
  GgufFile f(fixture_path());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 18u);
  EXPECT_EQ(f.data_offset(), 724416u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.name"), "LLaMA v2");
  EXPECT_EQ(f.get_int("llama.context_length"), 4096);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 8);
  EXPECT_EQ(f.get_int("llama.block_count"), 1);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 32);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 4);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 2);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(f.get_int("general.file_type"), 1);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");

  const auto& tokens = f.get_string_array_view("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[259], "\xe2\x96\x81\xe2\x96\x81");  // "▁▁"
  EXPECT_EQ(tokens[29871], "\xe2\x96\x81");            // "▁"
  EXPECT_EQ(tokens[31999], "\xe7\xbb\x99");            // "给"
  const std::vector<float> scores = f.get_f32_array("tokenizer.ggml.scores");
  ASSERT_EQ(scores.size(), 32000u);
  EXPECT_EQ(scores[259], -1e9f);
  EXPECT_EQ(scores[1000], -741.0f);
  EXPECT_EQ(scores[31999], -31740.0f);
  const std::vector<int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 32000u);
  EXPECT_EQ(types[0], 2);
  EXPECT_EQ(types[1], 3);
  EXPECT_EQ(types[3], 6);
  EXPECT_EQ(types[1000], 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(f.get_int("tokenizer.ggml.unknown_token_id"), 0);

  ASSERT_EQ(f.tensors().size(), 12u);
  const std::vector<std::string> names = {
      "token_embd.weight",        "blk.0.attn_q.weight",   "blk.0.attn_k.weight", "blk.0.attn_v.weight",
      "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
      "blk.0.attn_norm.weight",   "blk.0.ffn_norm.weight", "output_norm.weight",  "output.weight"};
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(f.tensors()[i].name, names[i]);
  const TensorView& embd = *f.find_tensor("token_embd.weight");
  EXPECT_EQ(embd.type, DType::F16);
  EXPECT_EQ(embd.shape, (std::vector<int64_t>{32000, 8}));  // ne = [8, 32000]
  EXPECT_EQ(embd.nbytes, 32000u * 8 * 2);
  EXPECT_EQ(embd.data, f.data() + 724416);
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate.weight")->shape, (std::vector<int64_t>{32, 8}));
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{8, 32}));
  const TensorView& norm = *f.find_tensor("blk.0.attn_norm.weight");
  EXPECT_EQ(norm.type, DType::F32);
  EXPECT_EQ(norm.shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(norm.data, f.data() + 724416 + 514048);

  EXPECT_EQ(f16_at(embd, 1000 * 8 + 3), 0.0130615234375f);
  EXPECT_EQ(f16_at(embd, 31999 * 8 + 7), 0.00333404541015625f);
  EXPECT_EQ(f16_at(*f.find_tensor("blk.0.attn_q.weight"), 0), 0.024261474609375f);
  EXPECT_EQ(f16_at(*f.find_tensor("blk.0.attn_q.weight"), 63), 0.03265380859375f);
  EXPECT_EQ(f16_at(*f.find_tensor("blk.0.ffn_down.weight"), 7 * 32 + 31), -0.0231170654296875f);
  EXPECT_EQ(f16_at(*f.find_tensor("output.weight"), 123 * 8 + 4), 0.0034427642822265625f);
  float one;
  std::memcpy(&one, norm.data + 4 * 7, 4);
  EXPECT_EQ(one, 1.0f);
}

TEST(GgufFixture, Llama2TinyRandomModelConfig) {
  SKIP_WITHOUT_FIXTURE();
  std::shared_ptr<GgufFile> file;
  auto src = load_gguf_model(fixture_path(), &file);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(src->format, "gguf");
  EXPECT_EQ(src->path, fixture_path());
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.n_vocab, 32000);  // no llama.vocab_size key: from token_embd rows
  EXPECT_EQ(c.n_embd, 8);
  EXPECT_EQ(c.n_layer, 1);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.n_ff, 32);
  EXPECT_EQ(c.n_ctx_train, 4096);
  EXPECT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.rope.style, RopeStyle::Interleaved);
  EXPECT_EQ(c.rope.scaling, RopeScaling::None);
  EXPECT_TRUE(c.rope.freq_factors.empty());
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(src->tensors.size(), 12u);
  const TensorView& q = src->get("blk.0.attn_q.weight");
  EXPECT_EQ(q.shape, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(f16_at(q, 0), 0.024261474609375f);
  // The tensors stay valid after the caller drops its own handle on the file.
  file.reset();
  EXPECT_EQ(f16_at(src->get("output.weight"), 123 * 8 + 4), 0.0034427642822265625f);
}

// ---------------------------------------------------------------------------------------------------
// ModelConfig <-> metadata

ModelConfig sample_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = 100;
  c.n_embd = 64;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 32;  // != n_embd / n_head, as in qwen3
  c.n_ff = 96;
  c.n_ctx_train = 2048;
  c.rms_eps = 1e-6f;
  c.rope.theta = 1e6f;
  return c;
}

std::unique_ptr<ModelSource> write_and_load(const TempDir& dir, const ModelConfig& c,
                                            const std::vector<float>& freq_factors = {},
                                            bool with_output = true) {
  const std::string path = dir.file("model.gguf");
  GgufWriter w;
  write_gguf_metadata(w, c, "sample");
  w.set_u32("general.file_type", 0);
  w.add_tensor("token_embd.weight", DType::F32, {c.n_vocab, c.n_embd});
  if (with_output) w.add_tensor("output.weight", DType::F32, {c.n_vocab, c.n_embd});
  if (!freq_factors.empty())
    w.add_tensor("rope_freqs.weight", DType::F32, {static_cast<int64_t>(freq_factors.size())});
  w.begin(path);
  const std::vector<float> zeros(static_cast<size_t>(c.n_vocab * c.n_embd), 0.0f);
  w.write_tensor_data(zeros.data(), zeros.size() * 4);
  if (with_output) w.write_tensor_data(zeros.data(), zeros.size() * 4);
  if (!freq_factors.empty()) w.write_tensor_data(freq_factors.data(), freq_factors.size() * 4);
  w.finish();
  return load_gguf_model(path);
}

TEST(GgufModel, MetadataRoundTripEveryArch) {
  for (Arch arch : {Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3}) {
    SCOPED_TRACE(std::string(arch_name(arch)));
    TempDir dir;
    const ModelConfig c = sample_config(arch);
    auto src = write_and_load(dir, c);
    const ModelConfig& r = src->config;
    EXPECT_EQ(r.arch, arch == Arch::Mistral ? Arch::Llama : arch);  // mistral is written as llama
    EXPECT_EQ(r.n_vocab, c.n_vocab);
    EXPECT_EQ(r.n_embd, c.n_embd);
    EXPECT_EQ(r.n_layer, c.n_layer);
    EXPECT_EQ(r.n_head, c.n_head);
    EXPECT_EQ(r.n_head_kv, c.n_head_kv);
    EXPECT_EQ(r.head_dim, c.head_dim);
    EXPECT_EQ(r.n_ff, c.n_ff);
    EXPECT_EQ(r.n_ctx_train, c.n_ctx_train);
    EXPECT_EQ(r.rms_eps, c.rms_eps);
    EXPECT_EQ(r.rope.theta, c.rope.theta);
    EXPECT_EQ(r.rope.scaling, RopeScaling::None);
    EXPECT_EQ(r.rope.style,
              (arch == Arch::Qwen2 || arch == Arch::Qwen3) ? RopeStyle::NeoX : RopeStyle::Interleaved);
    EXPECT_FALSE(r.tied_output);
    EXPECT_EQ(r.bos_id, -1);
    EXPECT_EQ(src->tensors.size(), 2u);
  }
}

// Resident file-backed memory of this process (/proc/self/status RssFile), in bytes.
int64_t rss_file_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8)) * 1024;
  return -1;
}

// The loader repacks every 2-D Q4_0 matrix (kernels/cpu/packed.h) and drops the file pages it read, so the
// file's copy does not stay resident beside the packed one; the bytes stay readable (paged back in).
TEST(GgufModel, Q4_0MatricesArePackedAndTheirPagesReleased) {
  TempDir dir;
  const std::string path = dir.file("q4.gguf");
  ModelConfig c = sample_config(Arch::Llama);
  c.n_vocab = 8192;
  c.n_embd = 1024;
  GgufWriter w;
  write_gguf_metadata(w, c, "packed");
  w.add_tensor("token_embd.weight", DType::Q4_0, {c.n_vocab, c.n_embd});  // 4.5 MiB
  w.add_tensor("blk.0.attn_q.weight", DType::Q4_0, {37, 64});             // a partial last group
  w.add_tensor("blk.0.attn_norm.weight", DType::Q4_0, {64});              // 1-D: not a matrix
  std::vector<std::vector<uint8_t>> payloads;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<uint8_t> p(w.tensor_nbytes(i));
    for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<uint8_t>((k * 131 + i * 17) % 251);
    payloads.push_back(std::move(p));
  }
  w.begin(path);
  for (const auto& p : payloads) w.write_tensor_data(p.data(), p.size());
  w.finish();

  const int64_t before = rss_file_bytes();
  ASSERT_GE(before, 0) << "no RssFile in /proc/self/status";
  const auto src = load_gguf_model(path);
  const TensorView& embd = src->get("token_embd.weight");
  const int64_t after_load = rss_file_bytes();
  EXPECT_NE(embd.packed, nullptr);
  EXPECT_NE(src->get("blk.0.attn_q.weight").packed, nullptr);
  EXPECT_EQ(src->get("blk.0.attn_norm.weight").packed, nullptr);
  EXPECT_EQ(src->packed_tensors, 2);
  EXPECT_EQ(src->packed_bytes, cpu::q4_0_packed_bytes(8192, 1024) + cpu::q4_0_packed_bytes(37, 64));
  EXPECT_GE(src->pack_seconds, 0.0);
  // Packing read all 4.5 MiB of the file's tensor; at most a page per slice boundary stays resident.
  EXPECT_LT(after_load - before, int64_t{1} << 20) << "file pages kept after packing";

  // The original bytes are intact and readable, and reading them brings the pages back.
  for (size_t i = 0; i < 3; ++i) {
    const TensorView& t = src->get(i == 0   ? "token_embd.weight"
                                   : i == 1 ? "blk.0.attn_q.weight"
                                            : "blk.0.attn_norm.weight");
    ASSERT_EQ(t.nbytes, payloads[i].size());
    EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), t.nbytes), 0) << t.name;
  }
  EXPECT_GT(rss_file_bytes() - after_load, int64_t{4} << 20);
  // And the packed copy holds the same rows.
  std::vector<uint8_t> row(row_bytes(DType::Q4_0, 1024));
  for (int64_t r : {0, 1, 15, 16, 4097, 8191}) {
    cpu::unpack_q4_0_row(embd.packed, 1024, r, row.data());
    EXPECT_EQ(std::memcmp(row.data(), embd.data + r * row.size(), row.size()), 0) << "row " << r;
  }
}

TEST(GgufModel, MetadataKeysAsLlamaCppWritesThem) {
  TempDir dir;
  const std::string path = dir.file("keys.gguf");
  ModelConfig c = sample_config(Arch::Mistral);
  c.rope.scaling = RopeScaling::Linear;
  c.rope.factor = 4.0f;
  GgufWriter w;
  write_gguf_metadata(w, c, "m");
  w.begin(path);
  w.finish();
  GgufFile f(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("general.name"), "m");
  EXPECT_EQ(f.find("general.quantization_version")->type, GgufType::U32);
  EXPECT_EQ(f.get_int("general.quantization_version"), 2);
  for (const char* k :
       {"llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
        "llama.attention.key_length", "llama.attention.value_length", "llama.vocab_size"}) {
    ASSERT_NE(f.find(k), nullptr) << k;
    EXPECT_EQ(f.find(k)->type, GgufType::U32) << k;
  }
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 32);
  EXPECT_EQ(f.find("llama.rope.freq_base")->type, GgufType::F32);
  EXPECT_EQ(f.find("llama.attention.layer_norm_rms_epsilon")->type, GgufType::F32);
  EXPECT_EQ(f.get_string("llama.rope.scaling.type"), "linear");
  EXPECT_EQ(f.get_float("llama.rope.scaling.factor"), 4.0);
  EXPECT_FALSE(f.has("general.alignment"));
  EXPECT_FALSE(f.has("general.file_type"));
}

TEST(GgufModel, LinearScalingAndFreqFactors) {
  TempDir dir;
  ModelConfig c = sample_config(Arch::Llama);
  c.rope.scaling = RopeScaling::Linear;
  c.rope.factor = 2.5f;
  std::vector<float> factors(static_cast<size_t>(c.head_dim / 2));
  for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + static_cast<float>(i);
  auto src = write_and_load(dir, c, factors, /*with_output=*/false);
  EXPECT_EQ(src->config.rope.scaling, RopeScaling::Linear);
  EXPECT_EQ(src->config.rope.factor, 2.5f);
  EXPECT_EQ(src->config.rope.freq_factors, factors);
  EXPECT_EQ(src->find("rope_freqs.weight"), nullptr);
  EXPECT_TRUE(src->config.tied_output);
  EXPECT_EQ(src->tensors.size(), 1u);
}

TEST(GgufModel, RejectsBadRopeFreqs) {
  TempDir dir;
  const ModelConfig c = sample_config(Arch::Llama);  // head_dim 32: 16 factors expected
  try {
    write_and_load(dir, c, std::vector<float>(8, 1.0f));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "tensor 'rope_freqs.weight': expected f32 [16] (head_dim / 2), found f32 [8]"),
              std::string::npos)
        << e.what();
  }
  std::vector<float> factors(16, 1.0f);
  factors[5] = 0.0f;
  EXPECT_THROW(write_and_load(dir, c, factors), Error);
}

// Writes a model file whose metadata is given by `set`, with a token_embd of 10 x 8.
std::string write_meta(const TempDir& dir, const std::function<void(GgufWriter&)>& set) {
  const std::string path = dir.file("meta.gguf");
  GgufWriter w;
  set(w);
  w.add_tensor("token_embd.weight", DType::F32, {10, 8});
  w.begin(path);
  const std::vector<float> zeros(80, 0.0f);
  w.write_tensor_data(zeros.data(), zeros.size() * 4);
  w.finish();
  return path;
}

void minimal_llama(GgufWriter& w) {
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.context_length", 128);
  w.set_u32("llama.embedding_length", 8);
  w.set_u32("llama.block_count", 1);
  w.set_u32("llama.feed_forward_length", 16);
  w.set_u32("llama.attention.head_count", 2);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
}

void expect_model_error(const std::string& path, const std::string& what) {
  try {
    load_gguf_model(path);
    ADD_FAILURE() << "no error, expected '" << what << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

TEST(GgufModel, DefaultsForOptionalKeys) {
  TempDir dir;
  auto src = load_gguf_model(write_meta(dir, minimal_llama));
  const ModelConfig& c = src->config;
  EXPECT_EQ(c.n_head_kv, 2);  // = head_count
  EXPECT_EQ(c.head_dim, 4);   // = embedding_length / head_count
  EXPECT_EQ(c.rope.theta, 10000.0f);
  EXPECT_EQ(c.n_vocab, 10);  // token_embd rows
  EXPECT_TRUE(c.tied_output);
}

TEST(GgufModel, ConfigErrorsNameTheKey) {
  TempDir dir;
  auto with = [&](std::function<void(GgufWriter&)> extra) {
    return write_meta(dir, [&](GgufWriter& w) {
      minimal_llama(w);
      extra(w);
    });
  };
  expect_model_error(with([](GgufWriter& w) { w.set_string("general.architecture", "gpt2"); }),
                     "unsupported architecture 'gpt2' (supported: llama, mistral, qwen2, qwen3)");
  expect_model_error(
      with([](GgufWriter& w) { w.set_u32("llama.attention.head_count_kv", 3); }),
      "'llama.attention.head_count' (2) is not a multiple of 'llama.attention.head_count_kv' (3)");
  expect_model_error(with([](GgufWriter& w) { w.set_u32("llama.embedding_length", 0); }),
                     "metadata key 'llama.embedding_length': value 0 out of range");
  expect_model_error(with([](GgufWriter& w) { w.set_string("llama.block_count", "one"); }),
                     "metadata key 'llama.block_count': expected integer, found string");
  expect_model_error(with([](GgufWriter& w) { w.set_string("llama.rope.scaling.type", "yarn"); }),
                     "unsupported RoPE scaling type 'yarn'");
  expect_model_error(with([](GgufWriter& w) { w.set_string("llama.rope.scaling.type", "linear"); }),
                     "metadata key 'llama.rope.scaling.factor': expected float, missing");
  expect_model_error(with([](GgufWriter& w) { w.set_f32("llama.rope.freq_base", -1.0f); }),
                     "metadata key 'llama.rope.freq_base'");
  expect_model_error(
      with([](GgufWriter& w) { w.set_u32("tokenizer.ggml.eos_token_id", 10); }),
      "metadata key 'tokenizer.ggml.eos_token_id': token id 10 outside the vocabulary (size 10)");
  expect_model_error(with([](GgufWriter& w) { w.set_u32("llama.rope.dimension_count", 2); }),
                     "partial RoPE is not supported");
  expect_model_error(write_meta(dir, [](GgufWriter& w) { w.set_string("general.architecture", "llama"); }),
                     "metadata key 'llama.context_length': expected integer, missing");
}

// ---------------------------------------------------------------------------------------------------
// Corrupt inputs

// A small valid file with two tensors; the last tensor's size is a multiple of the alignment, so the file
// has no trailing padding and every proper prefix is truncated somewhere that matters.
std::vector<uint8_t> small_valid_file(const TempDir& dir) {
  const std::string path = dir.file("small.gguf");
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 1);
  w.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"a", "bb", "ccc"});
  w.set_f32_array("tokenizer.ggml.scores", std::vector<float>{0.0f, -1.0f, -2.0f});
  w.set_bool("b", true);
  w.add_tensor("x", DType::F16, {3});
  w.add_tensor("y", DType::F32, {8});
  w.begin(path);
  const uint16_t x[3] = {1, 2, 3};
  w.write_tensor_data(x, sizeof(x));
  const std::vector<float> y(8, 0.5f);
  w.write_tensor_data(y.data(), 32);
  w.finish();
  return read_all(path);
}

TEST(GgufCorrupt, EveryTruncationIsAnError) {
  TempDir dir;
  const std::vector<uint8_t> full = small_valid_file(dir);
  ASSERT_EQ(full.size() % 32, 0u);
  { GgufFile ok(full.data(), full.size(), "full"); }
  const std::string path = dir.file("truncated.gguf");
  for (size_t n = 0; n < full.size(); ++n) {
    // From memory (fast, exact buffer size so ASan would catch an over-read) and from disk for some.
    std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string name = "prefix-" + std::to_string(n);
    try {
      GgufFile f(prefix.data(), prefix.size(), name);
      ADD_FAILURE() << "prefix of " << n << " bytes parsed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    if (n % 17 == 0) {
      write_all(path, prefix);
      EXPECT_THROW(GgufFile{path}, Error) << n;
    }
  }
}

TEST(GgufCorrupt, BadMagicAndVersions) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  write_all(path, Bytes().raw("GGML", 4).u32(3).u64(0).u64(0).bytes());
  expect_gguf_error(path, "not a GGUF file");
  write_all(path, Bytes().header(0, 0, 1).bytes());
  expect_gguf_error(path, "GGUF version 1 is not supported");
  write_all(path, Bytes().header(0, 0, 4).bytes());
  expect_gguf_error(path, "unsupported GGUF version 4");
  write_all(path, Bytes().header(0, 0, 0x03000000).bytes());
  expect_gguf_error(path, "big-endian");
  write_all(path, {});
  expect_gguf_error(path, "not a GGUF file");
  // v2 has the same layout as v3 and is accepted.
  write_all(path, Bytes().header(0, 1, 2).kv_u32("k", 5).bytes());
  GgufFile v2(path);
  EXPECT_EQ(v2.version(), 2u);
  EXPECT_EQ(v2.get_int("k"), 5);
}

TEST(GgufCorrupt, AbsurdCountsAndLengths) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  write_all(path, Bytes().header(0, uint64_t{1} << 60).zeros(64).bytes());
  expect_gguf_error(path, "implausible metadata count");
  write_all(path, Bytes().header(uint64_t{1} << 62, 0).zeros(64).bytes());
  expect_gguf_error(path, "implausible tensor count");
  write_all(path, Bytes().header(0, 1).u64(~uint64_t{0}).zeros(16).bytes());
  expect_gguf_error(path, "string length 18446744073709551615");
  write_all(path, Bytes().header(0, 1).str("k").u32(8).u64(1000).raw("abc", 3).bytes());
  expect_gguf_error(path, "metadata key 'k': string length 1000");
  // Array count far beyond the file: rejected before allocating.
  write_all(path, Bytes().header(0, 1).str("arr").u32(9).u32(8).u64(uint64_t{1} << 40).zeros(32).bytes());
  expect_gguf_error(path, "metadata key 'arr': array of 1099511627776 string elements cannot fit");
  write_all(path, Bytes().header(0, 1).str("arr").u32(9).u32(10).u64(5).zeros(16).bytes());
  expect_gguf_error(path, "array of 5 u64 elements cannot fit");
}

TEST(GgufCorrupt, BadValues) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  write_all(path, Bytes().header(0, 1).str("k").u32(13).u32(0).bytes());
  expect_gguf_error(path, "metadata key 'k': unknown value type 13");
  write_all(path, Bytes().header(0, 1).str("k").u32(9).u32(99).u64(0).bytes());
  expect_gguf_error(path, "unknown array element type 99");
  write_all(path, Bytes().header(0, 1).str("k").u32(7).u8(2).bytes());
  expect_gguf_error(path, "bool value is 2");
  write_all(path, Bytes().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).bytes());
  expect_gguf_error(path, "duplicate metadata key 'k'");
  write_all(path, Bytes().header(0, 1).kv_u32("general.alignment", 48).bytes());
  expect_gguf_error(path, "alignment 48 is not a power of two");
  write_all(path, Bytes().header(0, 1).kv_u32("general.alignment", 0).bytes());
  expect_gguf_error(path, "alignment 0 is not a power of two");
  write_all(path, Bytes().header(0, 1).str("general.alignment").u32(8).str("32").bytes());
  expect_gguf_error(path, "metadata key 'general.alignment': expected integer, found string");
  // Arrays nested deeper than any metadata needs (a stack-exhaustion guard).
  Bytes deep;
  deep.header(0, 1).str("deep").u32(9);
  for (int i = 0; i < 100; ++i) deep.u32(9).u64(1);
  deep.u32(4).u64(0);
  write_all(path, deep.bytes());
  expect_gguf_error(path, "nested deeper");
}

TEST(GgufCorrupt, BadTensorInfos) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  auto one_tensor = [&](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    Bytes b;
    b.header(1, 0).tensor_info("w", std::move(ne), type, offset).pad_to(32).zeros(data_bytes);
    write_all(path, b.bytes());
  };
  one_tensor({4}, 0, 0, 16);
  { GgufFile ok(path); }  // the baseline is valid
  one_tensor({4}, 13, 0, 64);
  expect_gguf_error(path, "tensor 'w': ggml type 13 (q5_K) is not supported");
  one_tensor({4}, 1000, 0, 64);
  expect_gguf_error(path, "tensor 'w': ggml type 1000");
  one_tensor({4}, 0, 16, 64);
  expect_gguf_error(path, "tensor 'w': data offset 16 is not a multiple of the alignment 32");
  one_tensor({4}, 0, 0, 15);
  expect_gguf_error(path, "tensor 'w': data (offset 0 + 16 bytes");
  one_tensor({4}, 0, 32, 16);
  expect_gguf_error(path, "lies past the end of the file");
  one_tensor({4}, 0, ~uint64_t{0} - 31, 16);
  expect_gguf_error(path, "lies past the end of the file");
  one_tensor({uint64_t{1} << 62, 16}, 0, 0, 16);
  expect_gguf_error(path, "tensor 'w': size overflows");
  one_tensor({~uint64_t{0}}, 0, 0, 16);
  expect_gguf_error(path, "tensor 'w': dimension 0 has invalid size");
  one_tensor({16}, 8, 0, 64);  // q8_0 needs a multiple of 32
  expect_gguf_error(path, "innermost dimension 16 is not a multiple of the q8_0 block size 32");
  one_tensor({1, 1, 1, 1, 1}, 0, 0, 64);
  expect_gguf_error(path, "tensor 'w': 5 dimensions");

  Bytes dup;
  dup.header(2, 0).tensor_info("w", {4}, 0, 0).tensor_info("w", {4}, 0, 32).pad_to(32).zeros(64);
  write_all(path, dup.bytes());
  expect_gguf_error(path, "duplicate tensor name 'w'");
}

}  // namespace
}  // namespace ariadne
