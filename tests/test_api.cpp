// The C++ wrapper of the public API (the C header itself is exercised from C in tests/c/c_api_test.c).
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

}  // namespace
