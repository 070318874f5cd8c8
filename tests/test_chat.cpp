// Chat: truncating the KV cache and the session to a prefix, and `ariadne chat` keeping the cache across
// turns (only the tokens past what it holds are prefilled), /reset, /exit, end of input, and `run --chat`
// sharing the same code.
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/model_source.h"
#include "ops/context.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"
#include "test_util.h"
#include "tokenizer/chat_template.h"

namespace ariadne {
namespace {

using test::CliResult;

// --- KvCache::truncate and Session::truncate ---

TEST(KvCacheTruncate, DropsLaterPositionsAndFreesTheirBlocks) {
  KvCacheOptions o;
  o.n_layer = 2;
  o.n_kv_heads = 2;
  o.head_dim = 32;
  o.n_ctx = 64;
  o.type = DType::F16;
  o.block_size = 4;
  KvCache cache(o);
  ThreadPool pool(1);
  ops::Context ctx{pool, {}};
  const int64_t n = 10;
  std::vector<float> k(static_cast<size_t>(n * o.n_kv_heads * o.head_dim)), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = std::sin(0.1f * static_cast<float>(i));
    v[i] = std::cos(0.3f * static_cast<float>(i));
  }
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  for (int64_t l = 0; l < o.n_layer; ++l) cache.store(ctx, l, n, positions.data(), k.data(), v.data());
  const uint64_t per_block = 4 * (2 * row_bytes(DType::F16, 32) + sizeof(int32_t));
  EXPECT_EQ(cache.bytes(), 4 * 3 * per_block);  // 4 heads, 10 entries -> 3 blocks each
  const std::vector<uint8_t> row4(cache.key_row(1, 1, 4), cache.key_row(1, 1, 4) + row_bytes(DType::F16, 32));

  cache.truncate(5);
  for (int64_t l = 0; l < o.n_layer; ++l)
    for (int64_t g = 0; g < o.n_kv_heads; ++g) {
      ASSERT_EQ(cache.size(l, g), 5);
      EXPECT_EQ(cache.positions(l, g)[4], 4);
    }
  EXPECT_EQ(cache.bytes(), 4 * 2 * per_block);  // 5 entries -> 2 blocks each
  EXPECT_EQ(std::vector<uint8_t>(cache.key_row(1, 1, 4), cache.key_row(1, 1, 4) + row4.size()), row4);
  cache.truncate(100);  // nothing at or past 100
  EXPECT_EQ(cache.size(0, 0), 5);
  cache.truncate(0);
  EXPECT_EQ(cache.bytes(), 0u);
}

class SessionTruncate : public test::TinyModelTest {};

// After truncate(k), evaluating more tokens gives exactly what a fresh session gives for the first k tokens
// followed by those.
TEST_F(SessionTruncate, ContinuesAsIfOnlyTheKeptTokensWereEvaluated) {
  SessionOptions options;
  options.n_ctx = 32;
  options.n_batch = 4;
  Session session(open_model(model()), options);
  const std::vector<int32_t> first = {1, 15, 27, 99, 3, 42, 7, 300, 11, 5};
  session.eval(first, false);
  session.truncate(6);
  EXPECT_EQ(session.n_past(), 6);
  EXPECT_EQ(session.kv().size(0, 0), 6);
  const std::vector<int32_t> more = {8, 200, 64};
  const std::vector<float> got = session.eval(more, true);

  Session fresh(open_model(model()), options);
  std::vector<int32_t> all(first.begin(), first.begin() + 6);
  all.insert(all.end(), more.begin(), more.end());
  const std::vector<float> all_logits = fresh.eval(all, true);
  const std::vector<float> expect(all_logits.end() - static_cast<std::ptrdiff_t>(got.size()),
                                  all_logits.end());
  EXPECT_EQ(got, expect);
  EXPECT_EQ(session.kv().bytes(), fresh.kv().bytes());

  EXPECT_THROW(session.truncate(10), Error);  // holds 9
  EXPECT_THROW(session.truncate(-1), Error);
  session.truncate(0);
  EXPECT_EQ(session.n_past(), 0);
  EXPECT_EQ(session.kv().bytes(), 0u);
}

// --- ariadne chat ---

constexpr const char* kStoriesDir = "fixtures/llama2c/stories260K";

std::string stories_model_args() {
  const std::string dir = test::shared_dir() + "/" + kStoriesDir;
  return "-m " + dir + "/stories260K.bin --tokenizer " + dir + "/tok512.bin ";
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// A fresh `ariadne run` on a rendered conversation: what every chat turn must answer. (chatml writes no BOS
// itself, so run adds it, as the chat does.)
nlohmann::json fresh_run(const std::string& conversation, const std::string& flags) {
  test::TempDir tmp;
  test::write_bytes(tmp.file("c.txt"), std::vector<uint8_t>(conversation.begin(), conversation.end()));
  const CliResult r =
      test::run_cli("run " + stories_model_args() + "-f " + tmp.file("c.txt") + " --json " + flags, "",
                    /*merge_stderr=*/false);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

std::string render_chatml(const std::vector<ChatMessage>& messages) {
  ChatTemplateOptions options;
  options.add_generation_prompt = true;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  return render_chat_template(builtin_chat_template("chatml"), messages, options);
}

TEST(ChatCli, LaterTurnsPrefillOnlyWhatTheCacheLacks) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  const std::string flags = "--temp 0.7 --seed 5 --repeat-penalty 1.2 -n 12";
  const std::string chat =
      "chat " + stories_model_args() + "--chat-template-family chatml --system 'Tell a story.' " + flags;
  const CliResult r = test::run_cli(chat + " --json -v", "Hi\n\nA dog\n", /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> turns = json_lines(r.out);
  ASSERT_EQ(turns.size(), 2u);  // the empty line is no turn
  EXPECT_EQ(turns[0]["n_reused"], 0);
  EXPECT_EQ(turns[0]["n_dropped"], 0);
  EXPECT_EQ(turns[0]["n_past"].get<int64_t>(),
            turns[0]["n_prompt"].get<int64_t>() + turns[0]["generated_tokens"].size() - 1);
  // Turn 2 reuses at least turn 1's whole prompt; everything cached is either reused or dropped.
  EXPECT_GE(turns[1]["n_reused"].get<int64_t>(), turns[0]["n_prompt"].get<int64_t>());
  EXPECT_EQ(turns[1]["n_reused"].get<int64_t>() + turns[1]["n_dropped"].get<int64_t>(),
            turns[0]["n_past"].get<int64_t>());
  EXPECT_LT(turns[1]["n_prompt"].get<int64_t>(), turns[0]["n_past"].get<int64_t>());

  // Each turn answers as a fresh run on the rendered conversation (sampling, seed and penalties included).
  const std::vector<ChatMessage> one = {{"system", "Tell a story."}, {"user", "Hi"}};
  const nlohmann::json fresh1 = fresh_run(render_chatml(one), flags);
  EXPECT_EQ(turns[0]["generated_tokens"], fresh1["generated_tokens"]);
  EXPECT_EQ(turns[0]["n_prompt"], fresh1["n_prompt"]);
  std::vector<ChatMessage> two = one;
  two.push_back({"assistant", turns[0]["text"].get<std::string>()});
  two.push_back({"user", "A dog"});
  const nlohmann::json fresh2 = fresh_run(render_chatml(two), flags);
  EXPECT_EQ(turns[1]["generated_tokens"], fresh2["generated_tokens"]);
  EXPECT_EQ(turns[1]["text"], fresh2["text"]);
  EXPECT_EQ(turns[1]["n_reused"].get<int64_t>() + turns[1]["n_prompt"].get<int64_t>(), fresh2["n_prompt"]);

  // --verbose: one statistics line per turn on stderr; no "> " marker when stdin is not a terminal.
  EXPECT_NE(r.err.find("turn 1: 0 tokens reused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("turn 2: " + std::to_string(turns[1]["n_reused"].get<int64_t>()) + " tokens reused"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("> "), std::string::npos) << r.err;

  // Without --json: each reply streamed, then a newline.
  const CliResult plain = test::run_cli(chat, "Hi\nA dog\n", /*merge_stderr=*/false);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out,
            turns[0]["text"].get<std::string>() + "\n" + turns[1]["text"].get<std::string>() + "\n");
  EXPECT_TRUE(plain.err.empty()) << plain.err;
}

TEST(ChatCli, ResetStartsOverAndKeepsTheSharedPrefix) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  const std::string chat = "chat " + stories_model_args() +
                           "--chat-template-family llama2 --system 'Be kind.' --temp 0 -n 10 --json";
  // No /exit: the end of input ends the chat.
  const CliResult r = test::run_cli(chat, "Hi\nA cat\n/reset\nHi\n", /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> turns = json_lines(r.out);
  ASSERT_EQ(turns.size(), 3u);
  // After /reset the conversation is turn 1's again: the same answer; the cache held all of its prompt, so
  // only the last prompt token (for its logits) is prefilled, and everything after it is dropped.
  EXPECT_EQ(turns[2]["text"], turns[0]["text"]);
  EXPECT_EQ(turns[2]["generated_tokens"], turns[0]["generated_tokens"]);
  EXPECT_EQ(turns[2]["n_prompt"], 1);
  EXPECT_EQ(turns[2]["n_reused"].get<int64_t>() + 1, turns[0]["n_prompt"].get<int64_t>());
  EXPECT_EQ(turns[2]["n_dropped"].get<int64_t>(),
            turns[1]["n_past"].get<int64_t>() - turns[2]["n_reused"].get<int64_t>());
  EXPECT_EQ(turns[2]["n_past"], turns[0]["n_past"]);
  EXPECT_EQ(turns[2]["turn"], 3);

  // /exit ends the chat: what follows is not read.
  const CliResult exited = test::run_cli(chat, "Hi\n/exit\nA cat\n", /*merge_stderr=*/false);
  ASSERT_EQ(exited.exit_code, 0) << exited.err;
  ASSERT_EQ(json_lines(exited.out).size(), 1u);
  EXPECT_EQ(json_lines(exited.out)[0]["text"], turns[0]["text"]);
  // Empty input: no turn, success.
  const CliResult none = test::run_cli(chat, "", /*merge_stderr=*/false);
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_TRUE(none.out.empty()) << none.out;
}

TEST(ChatCli, RunChatIsTheSameChat) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  const std::string common = stories_model_args() + "--chat-template-family chatml --temp 0 -n 8 --json";
  const CliResult chat = test::run_cli("chat " + common + " --system 'Be brief.'", "Hi\nA dog\n", false);
  const CliResult run = test::run_cli("run " + common + " --chat -p 'Be brief.'", "Hi\nA dog\n", false);
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto a = json_lines(chat.out);
  const auto b = json_lines(run.out);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i]["generated_tokens"], b[i]["generated_tokens"]);
    EXPECT_EQ(a[i]["n_reused"], b[i]["n_reused"]);
    EXPECT_EQ(a[i]["n_prompt"], b[i]["n_prompt"]);
  }
}

TEST(ChatCli, ErrorsAreClear) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  struct Case {
    std::string args;
    std::string input;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "Hi\n", "--chat-template-family"},  // stories260K has no template of its own
      {"--chat-template-family nope", "Hi\n", "known: llama3"},
      {"--chat-template-family chatml -c 16", "Hi there, tell me a long story about a dog\n", "raise -c"},
      {"--chat-template-family chatml --top-p 0", "Hi\n", "--top-p"},
      {"--chat-template-family chatml --stop ''", "Hi\n", "--stop"},
      {"--chat-template-family chatml --cache-type q4", "Hi\n", "--cache-type"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const CliResult r = test::run_cli("chat " + stories_model_args() + c.args, c.input, false);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("ariadne: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace ariadne
