// What `ariadne run` and `ariadne chat` share: the generation flags and their checks, and the decode loop,
// all over the public API (include/ariadne/ariadne.hpp), which is the only way these commands reach the
// library.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "ariadne/ariadne.hpp"
#include "attention_flags.h"
#include "kv_policy_flags.h"

namespace ariadne::cli {

struct GenerationFlags {
  std::string model;
  std::string tokenizer;
  int32_t n_predict = -1;
  int64_t n_ctx = 0;
  int64_t n_batch = 512;
  std::string cache_type = "f32";
  bool exact_matmul = false;
  int threads = 0;
  ariadne_sampler_params sampler = ariadne_sampler_default_params();  // seed comes from `seed`
  std::string seed = "-1";
  std::vector<std::string> stop;
  std::vector<std::string> logit_bias;
  bool ignore_eos = false;
  bool no_bos = false;
  bool json = false;
  KvPolicyFlags kv;     // --kv-policy and its parameters
  AttentionFlags attn;  // --attn and its parameters
};

// -m, --tokenizer, -n, -c, -b, --cache-type, -t, the sampling flags (llama.cpp's names), --stop,
// --ignore-eos, --no-bos, --json, the KV-policy flags (kv_policy_flags.h) and the attention flags
// (attention_flags.h).
void add_generation_flags(CLI::App* cmd, GenerationFlags& flags);

// The sampler parameters the flags give, checked (Error naming the flag) before any model is loaded: the
// seed, the logit biases, every sampling value, -n, -c, -b, --stop and --cache-type.
class CheckedGeneration {
 public:
  explicit CheckedGeneration(const GenerationFlags& flags);
  CheckedGeneration(const CheckedGeneration&) = delete;
  CheckedGeneration& operator=(const CheckedGeneration&) = delete;
  const ariadne_sampler_params& sampler() const { return sampler_; }

 private:
  std::vector<ariadne_logit_bias> biases_;
  ariadne_sampler_params sampler_;  // logit_bias points into biases_
};

// The model with its tokenizer (--tokenizer or its own). need_tokenizer: fail with the reason when it has
// none; otherwise a model without one is fine (ids in, ids out).
api::Model load_model(const GenerationFlags& flags, bool need_tokenizer);

// Session parameters of the flags with n_ctx tokens of context (valid while flags lives). generation: the
// tokens expected after each prompt, which a KV policy's budget counts (-1: -n when it is >= 0, else 512).
ariadne_session_params session_params(const GenerationFlags& flags, int64_t n_ctx, int64_t generation = -1);

// -c 0: the smaller of the model's trained context and 4096, raised to n_prompt + n_predict when that is
// more (never past the trained context).
int64_t default_context(int64_t n_ctx_train, int64_t n_prompt, int32_t n_predict);

struct Decoded {
  std::vector<int32_t> tokens;  // generated, without the end-of-generation token
  std::string stop_reason;      // "eos", "length", "stop" (a stop string), "context" (full)
  double seconds = 0.0;         // sampling, evaluating and detokenizing the generated tokens
};

// The decode loop, continuing from the session's logits after the prompt (the sampler has accepted the
// prompt, text has begun with it): sample, stop at an end-of-generation token, n_predict tokens (-1: no
// limit), a full context or a stop string. The last sampled token is not evaluated. text may be null (no
// tokenizer); on_text receives text as it becomes final, on_token each generated token.
Decoded decode_loop(const api::Model& model, api::Session& session, api::Sampler& sampler,
                    api::TextStream* text, int32_t n_predict,
                    const std::function<void(std::string_view)>& on_text,
                    const std::function<void(int32_t)>& on_token);

// Writes to stdout and flushes (streamed text appears as it is generated).
void write_out(std::string_view text);

double per_second(int64_t n, double seconds);

// One stderr line on what a compressing KV policy did: the cache held, the budget (with a warning when it
// was raised to the policy's minimum), the compressions and their time.
void print_kv_policy_summary(const api::Session& session);

struct ChatFlags {
  GenerationFlags gen;
  std::string system;       // system prompt; empty: none
  std::string chat_family;  // built-in template instead of the model's
  bool verbose = false;     // per-turn statistics on stderr
};

// The interactive chat of `ariadne chat` and `ariadne run --chat` (cmd_chat.cpp).
int run_chat(const ChatFlags& flags, const CheckedGeneration& checked);

}  // namespace ariadne::cli
