// The C++ wrapper of the public API (the C header itself is exercised from C in tests/c/c_api_test.c).
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ariadne/ariadne.hpp"
#include "test_util.h"

namespace {

TEST(PublicApi, GreedyStoriesThroughTheWrapper) {
  ARIADNE_REQUIRE_SHARED("fixtures/llama2c/stories260K");
  const std::string dir = ariadne::test::shared_dir() + "/fixtures/llama2c/stories260K";
  ariadne::api::Model model(dir + "/stories260K.bin", dir + "/tok512.bin");
  const std::vector<int32_t> prompt = model.tokenize("One day, Lily met a");
  EXPECT_EQ(prompt, (std::vector<int32_t>{1, 385, 328, 432, 317, 284, 316, 261}));
  ariadne_session_params sp{};
  sp.n_ctx = 32;
  ariadne::api::Session session(model, sp);
  ariadne_sampler_params greedy = ariadne_sampler_default_params();
  greedy.temperature = 0;
  ariadne::api::Sampler sampler(model, greedy);
  const float* logits = session.prefill(prompt);
  std::string text;
  for (int i = 0; i < 4; ++i) {
    const int32_t t = sampler.sample(logits);
    text += model.piece(t);
    logits = session.decode(t);
  }
  // reference_greedy.json's prompt run continues "One day, Lily met a" with " little girl named Lily."; its
  // first four tokens (376 298 315 421) spell " little girl".
  EXPECT_EQ(text, " little girl");
  EXPECT_THROW(ariadne::api::Model("/nonexistent.gguf"), ariadne::api::ApiError);
}

// The wrapper's own logic: the progress trampoline (calls, cancelling, an exception carried through the C
// layer), strings grown to size, tokens() and truncate(), the text stream, chat templates, estimates.
TEST(PublicApi, WrapperProgressTruncateTextAndTemplates) {
  ARIADNE_REQUIRE_SHARED("fixtures/llama2c/stories260K");
  const std::string dir = ariadne::test::shared_dir() + "/fixtures/llama2c/stories260K";
  ariadne::api::Model model(dir + "/stories260K.bin", dir + "/tok512.bin");
  const std::vector<int32_t> prompt = model.tokenize("One day, Lily met a");
  ariadne_session_params sp{};
  sp.n_ctx = 32;
  sp.n_batch = 3;
  ariadne::api::Session session(model, sp);
  std::vector<int32_t> seen;
  const float* logits = session.prefill(prompt, [&](int32_t done, int32_t total) {
    EXPECT_EQ(total, 8);
    seen.push_back(done);
    return true;
  });
  EXPECT_EQ(seen, (std::vector<int32_t>{3, 6, 8}));
  EXPECT_EQ(session.tokens(), prompt);
  const std::vector<float> after_prompt(logits, logits + model.n_vocab());
  EXPECT_EQ(session.timings().n_prefill, 8);

  ariadne_sampler_params greedy = ariadne_sampler_default_params();
  greedy.temperature = 0;
  ariadne::api::Sampler sampler(model, greedy);
  ariadne::api::TextStream text(model, {" named"});
  text.begin(prompt);
  std::string streamed;
  bool stopped = false;
  for (int i = 0; i < 8 && !stopped; ++i) {
    const int32_t t = sampler.sample(logits);
    stopped = text.push(t);
    streamed += text.take();
    logits = session.decode(t);
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text.text(), " little girl");  // " little girl named Lily." cut before " named"
  EXPECT_EQ(streamed, " little girl");
  EXPECT_EQ(session.timings().n_decode, session.n_past() - 8);

  // Back to the prompt: the same logits as after the prefill.
  session.truncate(7);
  EXPECT_EQ(session.tokens(), std::vector<int32_t>(prompt.begin(), prompt.begin() + 7));
  EXPECT_EQ(session.logits(), nullptr);
  logits = session.decode(prompt[7]);
  EXPECT_EQ(std::vector<float>(logits, logits + model.n_vocab()), after_prompt);
  EXPECT_THROW(session.truncate(99), ariadne::api::ApiError);

  // Cancelling, and an exception from the callback reaching the caller through the C layer.
  session.clear();
  EXPECT_THROW(session.prefill(prompt, [](int32_t done, int32_t) { return done < 3; }),
               ariadne::api::ApiError);
  EXPECT_EQ(session.n_past(), 3);
  session.clear();
  EXPECT_THROW(session.prefill(prompt,
                               [](int32_t done, int32_t) -> bool {
                                 if (done >= 6) throw std::out_of_range("from the callback");
                                 return true;
                               }),
               std::out_of_range);
  EXPECT_EQ(session.n_past(), 6);

  // Strings longer than the first guess, chat templates, the memory estimate.
  std::vector<int32_t> many;
  for (int i = 0; i < 40; ++i) many.insert(many.end(), prompt.begin() + 1, prompt.end());
  const std::string long_text = model.detokenize(many);
  size_t copies = 0;
  for (size_t at = long_text.find("Lily met a"); at != std::string::npos;
       at = long_text.find("Lily met a", at + 1))
    ++copies;
  EXPECT_EQ(copies, 40u);
  const std::string rendered =
      model.apply_chat_template({{"user", "Hi"}, {"assistant", "Hello."}, {"user", long_text}}, true,
                                ariadne::api::builtin_chat_template("chatml").c_str());
  EXPECT_EQ(rendered.rfind("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n", 0),
            0u);
  EXPECT_NE(rendered.find(long_text), std::string::npos);
  EXPECT_EQ(rendered.substr(rendered.size() - 22), "<|im_start|>assistant\n");
  EXPECT_THROW(model.apply_chat_template({{"user", "Hi"}}, true), ariadne::api::ApiError);  // none of its own
  EXPECT_THROW(ariadne::api::builtin_chat_template("nope"), ariadne::api::ApiError);
  EXPECT_EQ(model.token_text(model.bos()), "<s>");
  const ariadne_memory_estimate m = model.estimate_memory(sp);
  EXPECT_EQ(m.kv, session.cache_stats().bytes_capacity);
  EXPECT_EQ(m.total, m.weights + m.kv + m.activations);
  EXPECT_GT(ariadne::api::peak_resident_bytes(), 0u);
}

}  // namespace
