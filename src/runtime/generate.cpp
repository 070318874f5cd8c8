#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "core/error.h"

namespace ariadne {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) {
    if (s.empty()) fail("stop strings must not be empty (--stop)");
    max_stop_ = std::max(max_stop_, s.size());
  }
}

bool StopMatcher::append(std::string_view piece) {
  text_ += piece;
  if (stops_.empty()) {
    final_ = text_.size();
    return false;
  }
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, text_.find(s, searched_));
  if (first != std::string::npos) {
    text_.resize(first);
    final_ = first;
    return true;
  }
  // A stop string that starts earlier than max_stop_ - 1 bytes before the end would already be complete.
  if (text_.size() >= max_stop_) searched_ = std::max(searched_, text_.size() - max_stop_ + 1);
  // Hold back the longest tail that is a proper prefix of a stop string: the next piece may complete it.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, text_.size()); k > hold; --k) {
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  final_ = std::max(final_, text_.size() - hold);
  return false;
}

std::string_view StopMatcher::take_final() {
  const std::string_view out = std::string_view(text_).substr(emitted_, final_ - emitted_);
  emitted_ = final_;
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

std::vector<int32_t> end_of_generation_ids(const ModelConfig& config, const Vocab* vocab) {
  std::vector<int32_t> ids;
  auto add = [&](int32_t id) {
    if (id >= 0 && id < config.n_vocab && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(id);
  };
  if (vocab != nullptr) {
    add(vocab->eos_id);
    add(vocab->eot_id);
  }
  add(config.eos_id);
  return ids;
}

SamplerParams generation_sampler_params(SamplerParams params, const ModelConfig& config, const Vocab* vocab,
                                        bool ignore_eos) {
  if (ignore_eos)
    for (int32_t id : end_of_generation_ids(config, vocab)) params.logit_bias.emplace_back(id, -INFINITY);
  if (vocab != nullptr)
    for (int32_t id = std::max(vocab->size(), 0); id < config.n_vocab; ++id)
      params.logit_bias.emplace_back(id, -INFINITY);
  return params;
}

GenerationResult generate(Session& session, const Tokenizer* tokenizer, std::span<const int32_t> prompt,
                          const GenerationOptions& options) {
  // Every check comes before the first eval: a bad request must not cost a prefill.
  if (options.n_predict < -1)
    fail("the number of tokens to predict (-n) must be -1 (until the context is full) or >= 0, got {}",
         options.n_predict);
  if (options.n_batch < 1) fail("the batch size (-b) must be at least 1, got {}", options.n_batch);
  if (!options.stop.empty() && tokenizer == nullptr)
    fail("stop strings (--stop) need a tokenizer to turn tokens into text, and this model has none");
  StopMatcher matcher(options.stop);
  validate(options.sampler);
  const int64_t n_vocab = session.model().config().n_vocab;
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt == 0) fail("the prompt is empty: give at least one token (e.g. BOS)");
  for (int64_t i = 0; i < n_prompt; ++i) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab)
      fail("prompt token {} (at index {}) is outside the model's vocabulary [0, {})", prompt[i], i, n_vocab);
  }
  const int64_t room = session.n_ctx() - session.n_past();
  if (n_prompt > room) {
    if (session.n_past() == 0)
      fail("the prompt has {} tokens but the context holds only {} (raise -c)", n_prompt, session.n_ctx());
    fail("the prompt has {} tokens but only {} of the context's {} are left after the {} already evaluated",
         n_prompt, room, session.n_ctx(), session.n_past());
  }

  const Vocab* vocab = tokenizer != nullptr ? &tokenizer->vocab() : nullptr;
  const std::vector<int32_t> eog = end_of_generation_ids(session.model().config(), vocab);
  const int32_t n_decodable = tokenizer != nullptr ? tokenizer->vocab().size() : 0;
  Sampler sampler(
      generation_sampler_params(options.sampler, session.model().config(), vocab, options.ignore_eos),
      static_cast<int32_t>(n_vocab));
  for (int32_t id : prompt) sampler.accept(id);

  GenerationResult result;
  result.n_prompt = n_prompt;
  result.seed = sampler.seed();

  // Prefill in chunks so that a long prompt reports progress.
  const Clock::time_point prefill_start = Clock::now();
  std::vector<float> logits;  // [n_vocab] at the last evaluated position
  const KvPolicy* policy = session.kv().policy();
  if (policy != nullptr && policy->compresses_prefill()) {
    // The policy compresses each layer once the whole prompt is in it: one eval, layer by layer (chunked by
    // the session's n_batch).
    logits = session.eval(prompt, false, [&](int64_t done, int64_t total) {
      if (options.on_prefill) options.on_prefill(done, total);
      return true;
    });
  } else {
    for (int64_t start = 0; start < n_prompt; start += options.n_batch) {
      const int64_t len = std::min(options.n_batch, n_prompt - start);
      logits = session.eval(prompt.subspan(static_cast<size_t>(start), static_cast<size_t>(len)), false);
      if (options.on_prefill) options.on_prefill(start + len, n_prompt);
    }
  }
  result.prefill_seconds = seconds_since(prefill_start);

  // The decoder continues the prompt: its first piece is not the start of a text, so it keeps the space
  // Spm's decode would strip there. Whatever the prompt leaves incomplete (a split UTF-8 character) is
  // prompt text, not generated text, and is dropped.
  std::optional<StreamDecoder> decoder;
  if (tokenizer != nullptr) {
    decoder.emplace(*tokenizer);
    for (size_t i = prompt.size(); i-- > 0;) {
      if (prompt[i] < n_decodable) {
        decoder->push(prompt[i]);
        decoder->flush();
        break;
      }
    }
  }
  auto emit = [&] {
    const std::string_view text = matcher.take_final();
    if (!text.empty() && options.on_text) options.on_text(text);
  };

  const Clock::time_point decode_start = Clock::now();
  const int64_t n_predict = options.n_predict;
  if (n_predict == 0) result.stop_reason = "length";
  while (result.stop_reason.empty()) {
    const int32_t token = sampler.sample(logits);
    if (std::find(eog.begin(), eog.end(), token) != eog.end()) {
      result.stop_reason = "eos";
      break;
    }
    sampler.accept(token);
    result.tokens.push_back(token);
    if (options.on_token) options.on_token(token);
    if (decoder) {
      const bool stopped = matcher.append(decoder->push(token));
      emit();
      if (stopped) {
        result.stop_reason = "stop";
        break;
      }
    }
    if (n_predict >= 0 && static_cast<int64_t>(result.tokens.size()) >= n_predict) {
      result.stop_reason = "length";
    } else if (session.n_past() >= session.n_ctx()) {
      result.stop_reason = "context";
    } else {
      logits = session.eval(std::span<const int32_t>(&token, 1), false);
    }
  }
  if (decoder && result.stop_reason != "stop") {
    // Bytes of an unfinished character at the very end: passed on as they are.
    if (matcher.append(decoder->flush())) {
      result.stop_reason = "stop";
    } else {
      matcher.finish();
    }
    emit();
  }
  result.decode_seconds = seconds_since(decode_start);
  result.text = matcher.text();
  return result;
}

}  // namespace ariadne
