// Text generation over a Session: prefill the prompt, then sample one token at a time until an
// end-of-generation token, a token budget, a full context or a stop string ends it.
//
// Decisions worth knowing:
//  - End-of-generation ids are the tokenizer vocabulary's eos_id and eot_id plus the model config's eos_id
//    (so a Hugging Face folder without a tokenizer still stops at its config's eos_token_id). With
//    ignore_eos they are banned (logit bias -infinity, as llama.cpp's --ignore-eos) instead of ending the
//    run, so they are never sampled.
//  - With a tokenizer, ids the tokenizer cannot decode (a model vocabulary padded past the tokenizer's, as
//    Qwen's 151936 rows for 151665 tokens) are banned the same way: the text always has a meaning.
//  - The prompt's tokens are accepted into the sampler first, so the repeat/presence/frequency penalties
//    see them, as llama.cpp does.
//  - The last sampled token is not evaluated (nothing would read its logits): after a run,
//    session.n_past() == n_past before + n_prompt + tokens.size() - 1, or + n_prompt when nothing was
//    generated.
//  - Text is streamed through StreamDecoder, so a UTF-8 character split over byte tokens is never cut.
//    The text is what decoding prompt + generated adds to decoding the prompt alone: the first generated
//    piece keeps its leading space (" little" after "met a"), as llama.cpp prints it.
//  - Stop strings are matched on the text, across token boundaries. Text that could still become the
//    start of a stop string is held back from on_text until it can no longer; the stop string and
//    anything after it are neither streamed nor part of the result. The token that completed it is kept
//    in tokens (it was sampled and accepted).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace ariadne {

struct GenerationOptions {
  int32_t n_predict = -1;  // tokens to generate at most; -1: until the context is full
  SamplerParams sampler;
  std::vector<std::string> stop;  // stop strings (text level; need a tokenizer), none empty
  bool ignore_eos = false;        // never sample the end-of-generation tokens
  int64_t n_batch = 512;          // prompt tokens per Session::eval call while prefilling (>= 1); under a
                                  // KV policy that compresses prompts, one call (the session's n_batch)

  // Called after each prefill chunk with prompt tokens done so far and the prompt length.
  std::function<void(int64_t done, int64_t total)> on_prefill;
  // Generated text as it becomes final (never part of a UTF-8 character or of a possible stop string).
  std::function<void(std::string_view text)> on_text;
  // Each generated token, in order (not the end-of-generation token that ends the run).
  std::function<void(int32_t token)> on_token;
};

struct GenerationResult {
  std::string text;             // generated text (empty without a tokenizer), cut before a stop string
  std::vector<int32_t> tokens;  // generated tokens, without the end-of-generation token
  int64_t n_prompt = 0;
  std::string stop_reason;  // "eos", "length" (n_predict reached), "stop" (stop string), "context" (full)
  uint64_t seed = 0;        // the sampler's seed (the drawn one when SamplerParams::seed was kRandomSeed)
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;  // sampling and evaluating the generated tokens
};

// The ids that end generation: the vocabulary's EOS and EOT (vocab may be null) and the config's EOS, those
// inside [0, config.n_vocab), without repeats.
std::vector<int32_t> end_of_generation_ids(const ModelConfig& config, const Vocab* vocab);

// The sampler parameters generation uses: params with -infinity biases appended for the end-of-generation
// ids when ignore_eos, and, with a vocabulary, for every id the tokenizer cannot decode (model rows past the
// vocabulary's size).
SamplerParams generation_sampler_params(SamplerParams params, const ModelConfig& config, const Vocab* vocab,
                                        bool ignore_eos);

// Generates a continuation of prompt, appended to whatever the session already holds (positions
// session.n_past() onwards). tokenizer may be null (ids-only: no text, no stop strings). Throws Error
// before evaluating anything when the prompt is empty, holds an id outside the model's vocabulary, or
// does not fit in the context left (both numbers in the message), or when an option is invalid
// (n_predict < -1, n_batch < 1, an empty stop string, stop strings without a tokenizer, sampler values).
GenerationResult generate(Session& session, const Tokenizer* tokenizer, std::span<const int32_t> prompt,
                          const GenerationOptions& options);

// Stop-string bookkeeping, exposed for tests: the text seen so far and how much of it is final.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Appends text. Returns true when a stop string now occurs: text() is then cut before its first
  // occurrence and everything left is final.
  bool append(std::string_view piece);
  // Declares the end of the stream: all text is final.
  void finish() { final_ = text_.size(); }
  const std::string& text() const { return text_; }
  // Text that can be emitted: it cannot become part of a stop string any more. Advances the mark.
  std::string_view take_final();

 private:
  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string text_;
  size_t final_ = 0;     // text_[0, final_) is final
  size_t emitted_ = 0;   // text_[0, emitted_) was returned by take_final
  size_t searched_ = 0;  // no stop string starts before this offset
};

}  // namespace ariadne
