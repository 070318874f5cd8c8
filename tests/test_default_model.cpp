// The default model shipped in models/ (trained by tools/train/, model card models/README.md): it fits the
// size budget, carries its tokenizer and chat template, and really retrieves facts from long prompts.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace ariadne {
namespace {

using test::run_cli;

// The repository root: ARIADNE_SHARED_DIR is "<root>/../shared".
std::string source_dir() {
  const std::string shared = test::shared_dir();
  const std::string suffix = "/../shared";
  return shared.ends_with(suffix) ? shared.substr(0, shared.size() - suffix.size()) : shared + "/..";
}

std::string default_model() {
  return source_dir() + "/models/ariadne-default.gguf";
}

TEST(DefaultModel, FitsTheBudgetWithItsShape) {
  const std::string path = default_model();
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  EXPECT_LE(std::filesystem::file_size(path), 30u * 1000 * 1000);  // issue 7: at most 30 MB
  const test::CliResult r = run_cli("info -m " + path + " --json", "", false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["n_vocab"], 8192);
  EXPECT_EQ(j["n_layer"], 8);
  EXPECT_EQ(j["n_head"], 8);
  EXPECT_EQ(j["n_head_kv"], 2);  // grouped-query attention
  EXPECT_EQ(j["n_ctx_train"], 4096);
  EXPECT_EQ(j["rope"]["theta"], 100000.0);
  EXPECT_TRUE(j["tied_output"].get<bool>());
  EXPECT_GE(j["n_params"].get<int64_t>(), 15'000'000);
  EXPECT_LE(j["n_params"].get<int64_t>(), 40'000'000);
}

TEST(DefaultModel, CarriesItsTokenizerAndChatTemplate) {
  const std::string path = default_model();
  // Byte-level BPE: any text comes back unchanged, and digits are single tokens (Qwen2 pre-tokenizer).
  const std::string text = "The passkey is 40721. Ünïcödé — “quoted”, tabs\tand\nnewlines.";
  const test::CliResult ids = run_cli("tokenize -m " + path, text, false);
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  const test::CliResult back = run_cli("detokenize -m " + path, ids.out, false);
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(back.out, text);
  const test::CliResult digits = run_cli("tokenize -m " + path, "40721", false);
  EXPECT_EQ(nlohmann::json::parse(digits.out).size(), 5u);
  // The ChatML-style template travels in the GGUF metadata (no built-in family's system prompt).
  const test::CliResult chat =
      run_cli("chat-template -m " + path + " --messages -", R"([{"role":"user","content":"hi"}])", false);
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_EQ(chat.out.substr(0, chat.out.find_last_not_of('\n') + 1),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant");
}

// The model card's retrieval scores (models/README.md), a subset small enough for the test suite: one
// evaluation-seed instance (never trained on) of each retrieval task at 1K and 4K tokens, run and scored by
// `ariadne eval run` with full attention, as the card's table was.
TEST(DefaultModel, RetrievesAsItsModelCardSays) {
  const std::string path = default_model();
  test::TempDir dir;
  const std::string haystack = test::shared_exists("data/war-and-peace.txt")
                                   ? " --haystack " + test::shared_dir() + "/data/war-and-peace.txt"
                                   : "";
  const test::CliResult tasks = run_cli(
      "eval tasks -m " + path + " --tasks passkey,niah_single_noise,niah_multikey,kv,vt --lengths 1k,4k" +
          " --count 1 --seed 0 -q -o " + dir.file("tasks.jsonl") + haystack,
      "", false);
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  const test::CliResult run = run_cli("eval run -m " + path + " --tasks " + dir.file("tasks.jsonl") +
                                          " --method full -q -o " + dir.file("results.jsonl"),
                                      "", false);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::ifstream in(dir.file("results.jsonl"));
  int n = 0;
  double score = 0;
  std::string report;
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line);
    ++n;
    score += r["score"].get<double>();
    report += r["id"].get<std::string>() + ": score " + std::to_string(r["score"].get<double>()) + ", got '" +
              r["prediction"].get<std::string>() + "'\n";
  }
  ASSERT_EQ(n, 10);
  // The card: 100% on these tasks at 1K and 4K but niah_multikey at 1K (80%) and vt at 1K (96%); a few
  // points under it is one instance wrong in ten.
  EXPECT_GE(score, 9.0) << report;
}

// The HATA hash weights shipped beside the model (models/ariadne-default.hata.gguf, `ariadne calibrate
// --method hata`; docs/hata.md) are found by default and match the model's fingerprint.
TEST(DefaultModel, HashWeightsBesideItAreLoadedForHata) {
  const std::string path = default_model();
  const test::CliResult run =
      run_cli("run -m " + path +
                  " -p \"The quick brown fox jumps over the lazy dog. The quick brown\" -n 4"
                  " --temp 0 --attn hata --topk 1/16 --json -t 1",
              "", false);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json j = nlohmann::json::parse(run.out);
  const std::string description = j["attention"]["description"];
  EXPECT_NE(description.find("ariadne-default.hata.gguf"), std::string::npos) << description;
  EXPECT_GT(j["attention"]["sparse_heads"].get<int64_t>(), 0);  // layers 2..7 read a top-k subset
  EXPECT_LT(j["attention"]["entries_read"].get<int64_t>(), j["attention"]["entries_held"].get<int64_t>());
}

}  // namespace
}  // namespace ariadne
