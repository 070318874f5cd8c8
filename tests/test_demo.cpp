// `ariadne demo` (tools/cli/cmd_demo.cpp): documents with hidden facts, every method asked for each.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace ariadne {
namespace {

using test::run_cli;
using test::TempDir;

// stories260K with its tokenizer, as one GGUF (the demo needs a model that carries its tokenizer).
std::string stories_gguf(const TempDir& tmp) {
  const std::string dir = test::shared_dir() + "/fixtures/llama2c/stories260K";
  const std::string out = tmp.file("stories.gguf");
  const auto r = run_cli("convert -i " + dir + "/stories260K.bin --tokenizer " + dir +
                         "/tok512.bin --type f32 -t 1 -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return out;
}

TEST(CliDemo, AsksEveryMethodForEveryHiddenFact) {
  ARIADNE_REQUIRE_SHARED("fixtures/llama2c/stories260K");
  TempDir tmp;
  const std::string model = stories_gguf(tmp);
  const auto r = run_cli(
      "demo -m " + model +
          " --tasks passkey,niah_single_noise --count 2 --length 400 --method full --beyond 0 -t 2 --json",
      "", false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 4u);  // 2 tasks x 2 documents x 1 method
  for (const auto& line : j) {
    EXPECT_EQ(line.at("method"), "full");
    EXPECT_EQ(line.at("target_len"), 400);
    EXPECT_LE(line.at("n_prompt").get<int64_t>(), 400);
    EXPECT_GT(line.at("n_prompt").get<int64_t>(), 200);  // the rest is left for the answer
    const double score = line.at("score");
    EXPECT_GE(score, 0.0);
    EXPECT_LE(score, 1.0);
    EXPECT_GT(line.at("kv_peak_bytes").get<uint64_t>(), 0u);
  }
  // Facts at different depths: the two documents of a task differ.
  EXPECT_NE(j[0].at("id"), j[1].at("id"));

  // The table names the expected answers and every method.
  const auto text =
      run_cli("demo -m " + model + " --tasks passkey --count 1 --length 300 --beyond 0 -t 1", "", false);
  ASSERT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("passkey"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("KV cache peak"), std::string::npos) << text.out;
  // The default methods: full attention next to each KV-cache policy at the same budget.
  for (const char* m : {"full", "chelsea:0.2", "streaming:0.2", "snapkv:0.2"})
    EXPECT_NE(text.out.find(m), std::string::npos) << m << "\n" << text.out;
  EXPECT_EQ(text.out.find("Beyond the window"), std::string::npos) << text.out;
}

TEST(CliDemo, DocumentsBeyondTheWindowAreAnsweredWithXl3mNextToPlainAttention) {
  ARIADNE_REQUIRE_SHARED("fixtures/llama2c/stories260K");
  TempDir tmp;
  const std::string model = stories_gguf(tmp);  // trained window 512
  const std::string args =
      "demo -m " + model +
      " --tasks passkey --count 1 --length 300 --method full --beyond 4 --beyond-tasks passkey"
      " --beyond-method xl3m,full -t 1";
  const auto r = run_cli(args + " --json", "", false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);  // one document within the window (full), one beyond it (xl3m, full)
  EXPECT_EQ(j[0].at("target_len"), 300);
  for (size_t i : {1u, 2u}) EXPECT_EQ(j[i].at("target_len"), 4 * 512);
  EXPECT_EQ(j[1].at("method"), "xl3m");
  EXPECT_EQ(j[2].at("method"), "full");
  EXPECT_EQ(j[1].at("id"), j[2].at("id"));  // the same document for both
  const int64_t n_prompt = j[2].at("n_prompt");
  EXPECT_GT(n_prompt, 1500);
  EXPECT_EQ(j[2].at("n_fed").get<int64_t>(), n_prompt);  // plain attention reads it all
  EXPECT_LE(j[1].at("n_fed").get<int64_t>(), 512);       // xl3m's key context fits the window
  EXPECT_GT(j[1].at("selection").at("n_segments").get<int64_t>(), 3);
  const auto text = run_cli(args, "", false);
  ASSERT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_NE(text.out.find("Beyond the window: 1 documents of 2048 tokens, 4x the 512"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("tokens read"), std::string::npos) << text.out;
}

TEST(CliDemo, BadOptionsAreRefused) {
  ARIADNE_REQUIRE_SHARED("fixtures/llama2c/stories260K");
  TempDir tmp;
  const std::string model = stories_gguf(tmp);
  auto r = run_cli("demo -m " + model + " --method nosuch");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("full"), std::string::npos) << r.out;  // lists the known methods
  r = run_cli("demo -m " + model + " --tasks nosuch");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("passkey"), std::string::npos) << r.out;
  r = run_cli("demo -m " + model + " --count 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--count"), std::string::npos) << r.out;
  r = run_cli("demo -m " + model + " --beyond -1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--beyond"), std::string::npos) << r.out;
  r = run_cli("demo -m " + tmp.file("absent.gguf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("absent.gguf"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ariadne
