// The tokenizer commands (tokenize, detokenize, chat-template) and the tokenizer that `ariadne convert`
// carries into the GGUF it writes.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"

namespace ariadne {
namespace {

using test::TempDir;

using Result = test::CliResult;

// Runs the CLI with `input` on stdin (stderr merged into out).
Result run_cli(const std::string& args, const std::string& input, const TempDir&) {
  return test::run_cli(args, input);
}

const char* kStoriesDir = "fixtures/llama2c/stories260K";

TEST(CliTokenizer, Llama2cPromptIdsAndBack) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string tok = test::shared_dir() + "/" + kStoriesDir + "/tok512.bin";
  // reference_greedy.json's prompt run starts with these ids (BOS + "One day, Lily met a").
  Result r = run_cli("tokenize --tokenizer " + tok + " --bos", "One day, Lily met a", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json({1, 385, 328, 432, 317, 284, 316, 261}));
  r = run_cli("tokenize --tokenizer " + tok, "One day, Lily met a", tmp);
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 7u) << "no BOS without --bos";
  r = run_cli("detokenize --tokenizer " + tok, "[385, 328, 432, 317, 284, 316, 261]", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "One day, Lily met a");
}

TEST(CliTokenizer, JsonlOneLinePerInput) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string tok = test::shared_dir() + "/" + kStoriesDir + "/tok512.bin";
  const Result r = run_cli("tokenize --jsonl --tokenizer " + tok, "\"Lily\"\n\"a\\nb\"\n", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto vocab = load_vocab_file(tok);
  const auto t = Tokenizer::create(vocab);
  EXPECT_EQ(r.out, nlohmann::json(t->encode("Lily", false, false)).dump() + "\n" +
                       nlohmann::json(t->encode("a\nb", false, false)).dump() + "\n");
}

TEST(CliTokenizer, SpecialTokensOnlyWhenAsked) {
  ARIADNE_REQUIRE_SHARED("fixtures/vocab/llama.cpp/ggml-vocab-llama-spm.gguf");
  TempDir tmp;
  const std::string v = test::shared_dir() + "/fixtures/vocab/llama.cpp/ggml-vocab-llama-spm.gguf";
  const auto plain = nlohmann::json::parse(run_cli("tokenize --tokenizer " + v, "<s>hi", tmp).out);
  const auto special =
      nlohmann::json::parse(run_cli("tokenize --special --tokenizer " + v, "<s>hi", tmp).out);
  EXPECT_NE(plain[0], 1);
  EXPECT_EQ(special[0], 1);
}

TEST(CliTokenizer, BadInputIsAClearError) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string tok = test::shared_dir() + "/" + kStoriesDir + "/tok512.bin";
  struct Case {
    std::string args, input, expect;
  };
  for (const Case& c : {Case{"detokenize --tokenizer " + tok, "[1, 99999]", "outside the vocabulary"},
                        Case{"detokenize --tokenizer " + tok, "[1, \"x\"]", "not a token id"},
                        Case{"detokenize --tokenizer " + tok, "{", "not a JSON array"},
                        Case{"tokenize --jsonl --tokenizer " + tok, "not json\n", "stdin line 1"},
                        Case{"tokenize", "x", "give --model or --tokenizer"},
                        Case{"tokenize --tokenizer " + tmp.file("nope.json"), "x", "nope.json"},
                        Case{"chat-template --tokenizer " + tok + " --family nope", "[]", "nope"}}) {
    SCOPED_TRACE(c.args);
    const Result r = run_cli(c.args, c.input, tmp);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
  }
}

TEST(CliTokenizer, ChatTemplateBuiltinFamily) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string tok = test::shared_dir() + "/" + kStoriesDir + "/tok512.bin";
  const Result r = run_cli("chat-template --family chatml --tokenizer " + tok,
                           R"([{"role": "user", "content": "Hi"}])", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// A vocabulary without a template gets its family's built-in one (SentencePiece -> Llama 2 chat), and says
// so.
TEST(CliTokenizer, ChatTemplateFallsBackToTheFamily) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string tok = test::shared_dir() + "/" + kStoriesDir + "/tok512.bin";
  const Result r = run_cli("chat-template --tokenizer " + tok, R"([{"role": "user", "content": "Hi"}])", tmp);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("<s>[INST] Hi [/INST]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("built-in 'llama2'"), std::string::npos) << r.out;
}

// convert carries the tokenizer: the GGUF's vocabulary tokenizes exactly like the tokenizer.bin it came from.
TEST(CliTokenizer, ConvertCarriesTheLlama2cTokenizer) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  TempDir tmp;
  const std::string dir = test::shared_dir() + "/" + kStoriesDir;
  const Result c = run_cli("convert -q -i " + dir + "/stories260K.bin --tokenizer " + dir +
                               "/tok512.bin -o " + tmp.file("s.gguf") + " --type f32",
                           "", tmp);
  ASSERT_EQ(c.exit_code, 0) << c.out;
  const GgufFile file(tmp.file("s.gguf"));
  ASSERT_TRUE(gguf_has_vocab(file));
  const auto from_gguf = Tokenizer::create(vocab_from_gguf(file));
  const auto from_bin = Tokenizer::create(load_vocab_file(dir + "/tok512.bin"));
  for (const char* text : {"One day, Lily met a big dog.", "Once upon a time\nthere was 3.5 \xc3\xa9"}) {
    EXPECT_EQ(from_gguf->encode(text, true, false), from_bin->encode(text, true, false)) << text;
  }
  const Result t = run_cli("tokenize --bos -m " + tmp.file("s.gguf"), "One day, Lily met a", tmp);
  EXPECT_EQ(nlohmann::json::parse(t.out), nlohmann::json({1, 385, 328, 432, 317, 284, 316, 261}));
}

}  // namespace
}  // namespace ariadne
