// The command-line contract: `ariadne forward` JSON shape, `info`, `synth`, `convert`, and clear errors with
// a non-zero exit on bad input (never a crash or a hang).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/model_source.h"
#include "formats/synth.h"
#include "runtime/session.h"
#include "test_util.h"

namespace ariadne {
namespace {

using test::TempDir;

using CommandResult = test::CliResult;
using test::run_cli;

class CliTest : public test::TinyModelTest {};

TEST_F(CliTest, ForwardPrintsLastPositionLogitsAsJson) {
  const CommandResult r = run_cli("forward -m " + model() + " --ids 1,2,3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["logits"].size(), 1u);
  EXPECT_EQ(j["logits"][0].size(), 512u);
}

TEST_F(CliTest, ForwardAllPositionsMatchesTheLibrary) {
  const CommandResult r = run_cli("forward -m " + model() + " --ids 5,7,11,13 --all-positions --json -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["logits"].size(), 4u);
  SessionOptions options;
  options.n_ctx = 4;
  Session session(open_model(model()), options);
  const std::vector<float> expect = session.eval(std::vector<int32_t>{5, 7, 11, 13}, true);
  for (size_t p = 0; p < 4; ++p)
    for (size_t i = 0; i < 512; ++i) ASSERT_FLOAT_EQ(j["logits"][p][i].get<float>(), expect[p * 512 + i]);
}

TEST_F(CliTest, InfoReportsShapeAndMemory) {
  const CommandResult r = run_cli("info -m " + model() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["n_layer"], 4);
  EXPECT_EQ(j["n_head_kv"], 2);
  // K and V, 4 layers, 2 kv heads of 64 floats: 2*4*2*64*4 bytes per token at f32.
  EXPECT_EQ(j["kv_bytes_per_token_f32"], 4096);
  EXPECT_EQ(j["n_params"], j["weight_bytes"].get<int64_t>() / 4);  // all f32
}

TEST_F(CliTest, SynthWritesEveryTypeAndTheModelRuns) {
  TempDir tmp;
  for (const char* type : {"f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"}) {
    SCOPED_TRACE(type);
    const std::string out = tmp.file(std::string(type) + ".gguf");
    const CommandResult r = run_cli(std::string("synth --shape tiny -q --type ") + type + " -o " + out);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const auto source = open_model(out);
    EXPECT_EQ(source->get("blk.0.attn_q.weight").type, *dtype_from_name(type));
    const CommandResult f = run_cli("forward -m " + out + " --ids 1,2 --json");
    EXPECT_EQ(f.exit_code, 0) << f.out;
  }
}

TEST(SynthShapes, RealShapesHaveTheirCheckpointsParameterCounts) {
  // Parameter counts published with each checkpoint (rounded): Llama-3.2-1B 1.24 B, Llama-3.1-8B 8.03 B,
  // Qwen2.5-7B 7.62 B, Qwen3-8B 8.19 B.
  struct Expect {
    const char* name;
    double billions;
  };
  for (const Expect& e : {Expect{"llama-3.2-1b", 1.24}, Expect{"llama-3.1-8b", 8.03},
                          Expect{"qwen2.5-7b", 7.62}, Expect{"qwen3-8b", 8.19}}) {
    const double params = static_cast<double>(synth_param_count(find_synth_shape(e.name)));
    EXPECT_NEAR(params / 1e9, e.billions, 0.01) << e.name;
  }
}

TEST_F(CliTest, ConvertRoundTripKeepsLogits) {
  TempDir tmp;
  const CommandResult c =
      run_cli("convert -q -i " + model() + " -o " + tmp.file("copy.gguf") + " --type f32");
  ASSERT_EQ(c.exit_code, 0) << c.out;
  const CommandResult a = run_cli("forward -m " + model() + " --ids 3,1,4,1,5 --json");
  const CommandResult b = run_cli("forward -m " + tmp.file("copy.gguf") + " --ids 3,1,4,1,5 --json");
  ASSERT_EQ(a.exit_code, 0);
  EXPECT_EQ(a.out, b.out);
}

// --cache-type picks the KV element type: f16 halves the bytes per token; an unknown type is refused.
TEST_F(CliTest, CacheTypeHalvesKvBytesAtF16) {
  auto per_token = [&](const char* type) {
    const CommandResult r = run_cli("bench -m " + model() + " -p 8 -n 2 -r 1 --json --cache-type " + type);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return nlohmann::json::parse(r.out)[0]["kv_bytes_per_token"].get<int64_t>();
  };
  EXPECT_EQ(per_token("f32"), 2 * per_token("f16"));
  const CommandResult bad = run_cli("run -m " + model() + " --ids 1 -n 1 --cache-type q4");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("--cache-type"), std::string::npos) << bad.out;
  const CommandResult f16 = run_cli("run -m " + model() + " --ids 1,2 -n 3 --temp 0 --cache-type f16");
  EXPECT_EQ(f16.exit_code, 0) << f16.out;
}

// Bad input: each case exits non-zero with a message naming the problem.
TEST_F(CliTest, BadInputGivesClearErrors) {
  TempDir tmp;
  const std::vector<uint8_t> good = test::read_bytes(model());
  // Truncated file.
  test::write_bytes(tmp.file("truncated.gguf"),
                    std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  // Not a model at all.
  test::write_bytes(tmp.file("text.bin"), std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', '\n'});
  struct Case {
    std::string args;
    std::string expect;  // substring of the message
  };
  const std::vector<Case> cases = {
      {"forward -m " + model() + " --ids 1,512", "outside the vocabulary"},
      {"forward -m " + model() + " --ids 1,-3", "outside the vocabulary"},
      {"forward -m " + model() + " --ids 1,x", "not an integer token id"},
      {"forward -m " + tmp.file("truncated.gguf") + " --ids 1", "truncated.gguf"},
      {"forward -m " + tmp.file("text.bin") + " --ids 1", "unknown model format"},
      {"forward -m " + tmp.file("missing.gguf") + " --ids 1", "missing.gguf"},
      {"info -m " + tmp.path(), "config.json"},
      {"convert -i " + model() + " -o " + tmp.file("x.gguf") + " --type q5_9", "unknown type 'q5_9'"},
      {"synth --shape llama-99b -o " + tmp.file("y.gguf"), "unknown shape 'llama-99b'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const CommandResult r = run_cli(c.args);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("error"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
  }
}

// Structural problems the loaders cannot see alone: validate_model names the tensor and the mismatch.
TEST_F(CliTest, MissingTensorsAndShapeMismatchesAreNamed) {
  const auto good = open_model(model());
  {
    ModelSource s = *good;
    s.tensors.erase("blk.2.ffn_up.weight");
    try {
      validate_model(s);
      FAIL() << "missing tensor accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("missing tensor 'blk.2.ffn_up.weight'"), std::string::npos)
          << e.what();
    }
  }
  {
    ModelSource s = *good;
    s.tensors["blk.1.attn_k.weight"].shape = {64, 256};
    try {
      validate_model(s);
      FAIL() << "shape mismatch accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'blk.1.attn_k.weight' has shape [64, 256], expected [128, 256]"),
                std::string::npos)
          << e.what();
    }
  }
  {
    ModelSource s = *good;
    s.config.n_head_kv = 3;
    EXPECT_THROW(validate_model(s), Error);
  }
}

}  // namespace
}  // namespace ariadne
