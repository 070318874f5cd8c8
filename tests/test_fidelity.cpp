// `ariadne eval fidelity` (src/eval/fidelity.*): attention of each method against dense in shadow-dense mode.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/fidelity.h"
#include "eval/methods.h"
#include "eval/rng.h"
#include "formats/model_source.h"
#include "test_util.h"

namespace ariadne {
namespace {

class EvalFidelity : public test::TinyModelTest {
 protected:
  bool follow = true;  // the top-k methods' --attn-follow

  static std::vector<int32_t> text(int64_t n) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    eval::Rng rng(11);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng.below(500)) + 3;
    return tokens;
  }
  eval::FidelityResult run(const std::string& methods, int64_t ctx = 320, int64_t steps = 16,
                           int64_t windows = 2) const {
    const eval::MethodRegistry registry = eval::builtin_methods({"", follow});
    eval::FidelityOptions o;
    o.ctx = ctx;
    o.steps = steps;
    o.max_windows = windows;
    o.n_batch = 64;
    return eval::run_fidelity(open_model(model()), text(2 * ctx + 5), registry, registry.parse_list(methods),
                              o);
  }
};

TEST_F(EvalFidelity, FullAndBudgetsThatKeepEverythingEqualDense) {
  const eval::FidelityResult r = run("full,chelsea:1,quest:1");
  ASSERT_EQ(r.methods.size(), 3u);
  EXPECT_EQ(r.n_windows, 2);
  for (const eval::MethodFidelity& m : r.methods) {
    ASSERT_EQ(m.output_error.layers.size(), static_cast<size_t>(r.n_layer)) << m.method;
    for (int64_t l = 0; l < r.n_layer; ++l) {
      // Every query head of every layer, at each of 16 steps of 2 windows, exactly as dense.
      EXPECT_EQ(m.output_error.layers[static_cast<size_t>(l)].n, 2 * 16 * r.n_head) << m.method;
      EXPECT_EQ(m.output_error.layers[static_cast<size_t>(l)].mean, 0.0) << m.method << " layer " << l;
      ASSERT_EQ(m.output_error.heads[static_cast<size_t>(l)].size(), static_cast<size_t>(r.n_head));
    }
    EXPECT_EQ(m.output_error.mean_over_layers, 0.0) << m.method;
    EXPECT_FALSE(m.topk_recall.measured()) << m.method;  // quest:1 reads every entry: nothing is chosen
    EXPECT_FALSE(m.mass_recall.measured()) << m.method;
  }
  EXPECT_FALSE(r.methods[0].log_z_error.measured());
  EXPECT_FALSE(r.methods[0].kept_mass.measured());
  // chelsea at budget 1 keeps every entry as it was: the same normaliser, all of the mass.
  const eval::MethodFidelity& chelsea = r.methods[1];
  ASSERT_TRUE(chelsea.log_z_error.measured());
  EXPECT_EQ(chelsea.log_z_error.mean_over_layers, 0.0);
  EXPECT_NEAR(chelsea.kept_mass.mean_over_layers, 1.0, 1e-12);
  EXPECT_EQ(chelsea.kept_mass.layers[0].n, 2 * 16 * r.n_head_kv);
}

TEST_F(EvalFidelity, ExactTopkRecallsItsOwnChoiceAndQuestLosesSomeInTheSparseLayersOnly) {
  follow = false;  // exact-topk is then exactly the oracle
  const eval::FidelityResult r = run("exact-topk:1/8,quest:1/8");
  for (const eval::MethodFidelity& m : r.methods) {
    // Layers 0 and 1 stay dense (hata.md §5): no choice, no error there.
    for (size_t l : {0u, 1u}) {
      EXPECT_EQ(m.output_error.layers[l].mean, 0.0) << m.method;
      EXPECT_EQ(m.topk_recall.layers[l].n, 0) << m.method;
    }
    for (size_t l = 2; l < static_cast<size_t>(r.n_layer); ++l) {
      EXPECT_EQ(m.topk_recall.layers[l].n, 2 * 16 * r.n_head_kv) << m.method;
      EXPECT_GT(m.output_error.layers[l].mean, 0.0) << m.method;
      EXPECT_GT(m.mass_recall.layers[l].mean, 0.0) << m.method;
      EXPECT_LE(m.mass_recall.layers[l].mean, 1.0 + 1e-9) << m.method;
    }
    EXPECT_FALSE(m.log_z_error.measured()) << m.method;  // a selector alone keeps every entry
  }
  // exact-topk chooses by the same softmax the recall is measured with (float against double: near-ties
  // may go either way).
  EXPECT_GT(r.methods[0].topk_recall.mean_over_layers, 0.99);
  EXPECT_LT(r.methods[1].topk_recall.mean_over_layers, r.methods[0].topk_recall.mean_over_layers);
  // (Their mass recalls are not ordered: Quest reads whole pages, up to k + 15 entries.)
}

TEST_F(EvalFidelity, CompressingPoliciesLoseMassAndMoveTheNormaliser) {
  // 304 prompt tokens + 16 decoded; B = 144 (the floor) for chelsea and streaming at 0.2.
  const eval::FidelityResult r = run("chelsea:0.2,streaming:0.2");
  for (const eval::MethodFidelity& m : r.methods) {
    EXPECT_GT(m.output_error.mean_over_layers, 0.0) << m.method;
    EXPECT_GT(m.log_z_error.mean_over_layers, 0.0) << m.method;
    EXPECT_GT(m.kept_mass.mean_over_layers, 0.0) << m.method;
    EXPECT_LT(m.kept_mass.mean_over_layers, 1.0) << m.method;
    EXPECT_FALSE(m.topk_recall.measured()) << m.method;
  }
  // StreamingLLM only drops entries: whatever mass it keeps is under its normaliser, so its log-Z error is
  // at least the log of the mass it lost, on average too (Jensen: mean(-ln x) >= -ln mean(x)).
  const eval::MethodFidelity& s = r.methods[1];
  EXPECT_GE(s.log_z_error.mean_over_layers + 1e-9, -std::log(s.kept_mass.mean_over_layers));
}

TEST_F(EvalFidelity, RefusesWhatItCannotMeasure) {
  const eval::MethodRegistry registry = eval::builtin_methods();
  std::shared_ptr<const ModelSource> source = open_model(model());
  eval::FidelityOptions o;
  o.ctx = 128;
  o.steps = 16;
  EXPECT_THROW(eval::run_fidelity(source, text(100), registry, registry.parse_list("full"), o), Error);
  EXPECT_THROW(eval::run_fidelity(source, text(300), registry, registry.parse_list("xl3m"), o), Error);
  o.steps = 127;
  EXPECT_THROW(eval::run_fidelity(source, text(300), registry, registry.parse_list("full"), o), Error);
}

TEST(EvalFidelityCli, PrintsTheTablesAndPerHeadJson) {
  const char* stories = "fixtures/llama2c/stories260K/stories260K.bin";
  const char* tok = "fixtures/llama2c/stories260K/tok512.bin";
  const char* book = "data/war-and-peace.txt";
  ARIADNE_REQUIRE_SHARED(stories);
  ARIADNE_REQUIRE_SHARED(book);
  test::TempDir dir;
  const std::string body = test::read_text(test::shared_dir() + "/" + book).substr(0, 3000);
  test::write_bytes(dir.file("text.txt"), std::vector<uint8_t>(body.begin(), body.end()));
  const std::string args = "eval fidelity -m " + test::shared_dir() + "/" + stories + " --tokenizer " +
                           test::shared_dir() + "/" + tok + " -t 1 --text " + dir.file("text.txt") +
                           " --ctx 128 --steps 8 --windows 1 --method full,exact-topk:1/4";
  test::CliResult r = test::run_cli(args + " -q");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("1 windows of 128 tokens; the last 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| full | 0.0000 | - | - | - | - |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| exact-topk:1/4 | 2 | "), std::string::npos) << r.out;
  r = test::run_cli(args + " --json", "", false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["methods"].size(), 2u);
  const nlohmann::json& topk = j["methods"][1];
  EXPECT_EQ(topk["method"], "exact-topk:1/4");
  EXPECT_TRUE(topk["topk_recall"]["layers"][0].is_null());  // a dense layer
  EXPECT_EQ(topk["output_error"]["layers"][2]["heads"].size(), j["n_head"].get<size_t>());
  EXPECT_EQ(topk["topk_recall"]["layers"][2]["heads"].size(), j["n_head_kv"].get<size_t>());
  EXPECT_TRUE(j["methods"][0]["topk_recall"].is_null());
  r = test::run_cli(args.substr(0, args.find(" --method")) + " --method xl3m");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("chooses what the model reads"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ariadne
