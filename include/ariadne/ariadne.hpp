// A thin C++ wrapper over ariadne.h: owning handles, exceptions instead of error structs, std::string and
// std::vector instead of buffers. Everything goes through the C functions.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ariadne/ariadne.h"

namespace ariadne::api {

class ApiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename T>
T* check(T* p, const ariadne_error& e) {
  if (p == nullptr) throw ApiError(e.message);
  return p;
}
inline int check(int rc, const ariadne_error& e) {
  if (rc < 0) throw ApiError(e.message);
  return rc;
}
// Calls fill(buffer, capacity) -> length once with a guess and again when the text is longer.
template <typename Fill>
std::string fill_string(Fill&& fill, size_t guess = 64) {
  ariadne_error e;
  std::string out(guess, '\0');
  int32_t n = check(fill(out.data(), static_cast<int32_t>(out.size()), &e), e);
  if (n > static_cast<int32_t>(out.size())) {
    out.resize(static_cast<size_t>(n));
    n = check(fill(out.data(), n, &e), e);
  }
  out.resize(static_cast<size_t>(n));
  return out;
}
}  // namespace detail

struct ChatMessage {
  std::string role;
  std::string content;
};

// The built-in chat template of a family ("llama3", "llama2", "mistral", "chatml", "qwen2", "qwen3").
inline std::string builtin_chat_template(const std::string& family) {
  ariadne_error e;
  return detail::check(ariadne_chat_builtin_template(family.c_str(), &e), e);
}

inline uint64_t peak_resident_bytes() {
  return ariadne_peak_resident_bytes();
}

class Model {
 public:
  explicit Model(const std::string& path, const std::string& tokenizer = "") {
    ariadne_error e;
    model_.reset(detail::check(
        ariadne_model_load(path.c_str(), tokenizer.empty() ? nullptr : tokenizer.c_str(), &e), e));
  }
  int32_t n_vocab() const { return ariadne_model_n_vocab(model_.get()); }
  int32_t n_ctx_train() const { return ariadne_model_n_ctx_train(model_.get()); }
  int32_t bos() const { return ariadne_model_bos(model_.get()); }
  int32_t eos() const { return ariadne_model_eos(model_.get()); }
  bool is_end_of_generation(int32_t token) const {
    return ariadne_model_is_end_of_generation(model_.get(), token);
  }
  bool has_tokenizer() const { return ariadne_model_has_tokenizer(model_.get()); }
  std::string tokenizer_error() const { return ariadne_model_tokenizer_error(model_.get()); }
  int32_t n_tokens() const { return ariadne_model_n_tokens(model_.get()); }
  // The vocabulary's spelling of a token; empty when the id is outside it.
  std::string token_text(int32_t token) const {
    const char* t = ariadne_token_text(model_.get(), token);
    return t != nullptr ? t : "";
  }

  std::vector<int32_t> tokenize(std::string_view text, bool add_special = true,
                                bool parse_special = false) const {
    ariadne_error e;
    std::vector<int32_t> ids(text.size() + 8);
    int32_t n =
        detail::check(ariadne_tokenize(model_.get(), text.data(), text.size(), add_special, parse_special,
                                       ids.data(), static_cast<int32_t>(ids.size()), &e),
                      e);
    if (n > static_cast<int32_t>(ids.size())) {
      ids.resize(static_cast<size_t>(n));
      n = detail::check(ariadne_tokenize(model_.get(), text.data(), text.size(), add_special, parse_special,
                                         ids.data(), n, &e),
                        e);
    }
    ids.resize(static_cast<size_t>(n));
    return ids;
  }
  std::string piece(int32_t token, bool special = false) const {
    return detail::fill_string(
        [&](char* b, int32_t c, ariadne_error* e) {
          return ariadne_token_to_piece(model_.get(), token, special, b, c, e);
        },
        32);
  }
  std::string detokenize(const std::vector<int32_t>& ids, bool special = false) const {
    return detail::fill_string(
        [&](char* b, int32_t c, ariadne_error* e) {
          return ariadne_detokenize(model_.get(), ids.data(), static_cast<int32_t>(ids.size()), special, b, c,
                                    e);
        },
        ids.size() * 8 + 16);
  }

  // The model's own chat template, or nullptr.
  const char* chat_template() const { return ariadne_model_chat_template(model_.get()); }
  // Renders messages with tmpl (Jinja source; nullptr: the model's own).
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                  const char* tmpl = nullptr) const {
    std::vector<ariadne_chat_message> list;
    for (const ChatMessage& m : messages) list.push_back({m.role.c_str(), m.content.c_str()});
    return detail::fill_string(
        [&](char* b, int32_t c, ariadne_error* e) {
          return ariadne_chat_apply_template(model_.get(), tmpl, list.data(),
                                             static_cast<int32_t>(list.size()), add_generation_prompt, b, c,
                                             e);
        },
        1024);
  }

  ariadne_memory_estimate estimate_memory(const ariadne_session_params& params) const {
    ariadne_error e;
    ariadne_memory_estimate m{};
    detail::check(ariadne_estimate_memory(model_.get(), &params, &m, &e), e);
    return m;
  }

  const ariadne_model* get() const { return model_.get(); }

 private:
  std::unique_ptr<ariadne_model, decltype(&ariadne_model_free)> model_{nullptr, &ariadne_model_free};
};

class Session {
 public:
  explicit Session(const Model& model, ariadne_session_params params = {}) {
    ariadne_error e;
    session_.reset(detail::check(ariadne_session_create(model.get(), &params, &e), e));
  }
  // Returns the last position's logits [n_vocab].
  const float* prefill(const std::vector<int32_t>& ids) {
    ariadne_error e;
    detail::check(ariadne_session_prefill(session_.get(), ids.data(), static_cast<int32_t>(ids.size()), &e),
                  e);
    return logits();
  }
  // progress(done, total) after each n_batch chunk; returning false cancels (ApiError). An exception it
  // throws cancels the prefill and is rethrown here.
  const float* prefill(const std::vector<int32_t>& ids,
                       const std::function<bool(int32_t, int32_t)>& progress) {
    struct Context {
      const std::function<bool(int32_t, int32_t)>* progress;
      std::exception_ptr error;
    } context{&progress, nullptr};
    auto trampoline = [](int32_t done, int32_t total, void* user) -> bool {
      auto* c = static_cast<Context*>(user);
      try {
        return (*c->progress)(done, total);
      } catch (...) {
        c->error = std::current_exception();
        return false;
      }
    };
    ariadne_error e;
    const int rc = ariadne_session_prefill_with_progress(
        session_.get(), ids.data(), static_cast<int32_t>(ids.size()), trampoline, &context, &e);
    if (context.error) std::rethrow_exception(context.error);
    detail::check(rc, e);
    return logits();
  }
  const float* decode(int32_t token) {
    ariadne_error e;
    detail::check(ariadne_session_decode(session_.get(), token, &e), e);
    return logits();
  }
  const float* logits() const { return ariadne_session_logits(session_.get()); }
  int32_t n_past() const { return ariadne_session_n_past(session_.get()); }
  int32_t n_ctx() const { return ariadne_session_n_ctx(session_.get()); }
  std::vector<int32_t> tokens() const {
    const int32_t* t = ariadne_session_tokens(session_.get());
    return std::vector<int32_t>(t, t + n_past());
  }
  void clear() { ariadne_session_clear(session_.get()); }
  void truncate(int32_t n_keep) {
    ariadne_error e;
    detail::check(ariadne_session_truncate(session_.get(), n_keep, &e), e);
  }
  ariadne_cache_stats cache_stats() const { return ariadne_session_cache_stats(session_.get()); }
  std::string kv_policy() const { return ariadne_session_kv_policy(session_.get()); }
  ariadne_kv_policy_stats kv_policy_stats() const { return ariadne_session_kv_policy_stats(session_.get()); }
  std::string attention() const { return ariadne_session_attention(session_.get()); }
  ariadne_attention_stats attention_stats() const { return ariadne_session_attention_stats(session_.get()); }
  ariadne_timings timings() const { return ariadne_session_timings(session_.get()); }
  void reset_timings() { ariadne_session_reset_timings(session_.get()); }
  ariadne_session* get() { return session_.get(); }

 private:
  std::unique_ptr<ariadne_session, decltype(&ariadne_session_free)> session_{nullptr, &ariadne_session_free};
};

class Sampler {
 public:
  // params.logit_bias is copied here; the array need not outlive the call.
  Sampler(const Model& model, const ariadne_sampler_params& params) {
    ariadne_error e;
    sampler_.reset(detail::check(ariadne_sampler_create(model.get(), &params, &e), e));
  }
  // The next token; with accept (the default) it is also recorded for the penalties.
  int32_t sample(const float* logits, bool accept = true) {
    ariadne_error e;
    const int32_t t = ariadne_sampler_sample(sampler_.get(), logits, &e);
    if (t < 0) throw ApiError(e.message);
    if (accept) ariadne_sampler_accept(sampler_.get(), t);
    return t;
  }
  void accept(int32_t token) { ariadne_sampler_accept(sampler_.get(), token); }
  void reset() { ariadne_sampler_reset(sampler_.get()); }
  uint64_t seed() const { return ariadne_sampler_seed(sampler_.get()); }

  static void validate(const ariadne_sampler_params& params) {
    ariadne_error e;
    detail::check(ariadne_sampler_params_validate(&params, &e), e);
  }

 private:
  std::unique_ptr<ariadne_sampler, decltype(&ariadne_sampler_free)> sampler_{nullptr, &ariadne_sampler_free};
};

// Generated tokens to text, with stop strings (ariadne_text_stream).
class TextStream {
 public:
  TextStream(const Model& model, const std::vector<std::string>& stops = {}) {
    std::vector<const char*> list;
    for (const std::string& s : stops) list.push_back(s.c_str());
    ariadne_error e;
    stream_.reset(detail::check(
        ariadne_text_stream_create(model.get(), list.data(), static_cast<int32_t>(list.size()), &e), e));
  }
  void begin(const std::vector<int32_t>& prompt) {
    ariadne_error e;
    detail::check(
        ariadne_text_stream_begin(stream_.get(), prompt.data(), static_cast<int32_t>(prompt.size()), &e), e);
  }
  // True when a stop string now occurs.
  bool push(int32_t token) {
    ariadne_error e;
    return detail::check(ariadne_text_stream_push(stream_.get(), token, &e), e) == 1;
  }
  bool finish() { return ariadne_text_stream_finish(stream_.get()) == 1; }
  // Final text since the last take (valid until the next call on the stream).
  std::string_view take() {
    size_t n = 0;
    const char* p = ariadne_text_stream_take(stream_.get(), &n);
    return {p, n};
  }
  std::string_view text() const {
    size_t n = 0;
    const char* p = ariadne_text_stream_text(stream_.get(), &n);
    return {p, n};
  }

 private:
  std::unique_ptr<ariadne_text_stream, decltype(&ariadne_text_stream_free)> stream_{
      nullptr, &ariadne_text_stream_free};
};

// XL3M context selection (ariadne_xl3m): feed the input, select on a session, read the key context.
class Xl3m {
 public:
  Xl3m(const Model& model, const ariadne_xl3m_params& params) {
    ariadne_error e;
    xl3m_.reset(detail::check(ariadne_xl3m_create(model.get(), &params, &e), e));
  }
  void set_prefix_text(std::string_view text) {
    ariadne_error e;
    detail::check(ariadne_xl3m_set_prefix_text(xl3m_.get(), text.data(), text.size(), &e), e);
  }
  void set_prefix_tokens(const std::vector<int32_t>& ids) {
    ariadne_error e;
    detail::check(
        ariadne_xl3m_set_prefix_tokens(xl3m_.get(), ids.data(), static_cast<int32_t>(ids.size()), &e), e);
  }
  void add_text(std::string_view text) {
    ariadne_error e;
    detail::check(ariadne_xl3m_add_text(xl3m_.get(), text.data(), text.size(), &e), e);
  }
  void add_tokens(const std::vector<int32_t>& ids) {
    ariadne_error e;
    detail::check(ariadne_xl3m_add_tokens(xl3m_.get(), ids.data(), static_cast<int32_t>(ids.size()), &e), e);
  }
  void reserve(int64_t n) {
    ariadne_error e;
    detail::check(ariadne_xl3m_reserve(xl3m_.get(), n, &e), e);
  }
  void set_question_text(std::string_view text) {
    ariadne_error e;
    detail::check(ariadne_xl3m_set_question_text(xl3m_.get(), text.data(), text.size(), &e), e);
  }
  void set_question_tokens(const std::vector<int32_t>& ids) {
    ariadne_error e;
    detail::check(
        ariadne_xl3m_set_question_tokens(xl3m_.get(), ids.data(), static_cast<int32_t>(ids.size()), &e), e);
  }
  // progress(segments done, segments) after each segment; returning false cancels (ApiError). An exception
  // it throws cancels the selection and is rethrown here.
  void select(Session& session, const std::function<bool(int32_t, int32_t)>& progress = {}) {
    struct Context {
      const std::function<bool(int32_t, int32_t)>* progress;
      std::exception_ptr error;
    } context{&progress, nullptr};
    auto trampoline = [](int32_t done, int32_t total, void* user) -> bool {
      auto* c = static_cast<Context*>(user);
      try {
        return (*c->progress)(done, total);
      } catch (...) {
        c->error = std::current_exception();
        return false;
      }
    };
    ariadne_error e;
    const int rc =
        ariadne_xl3m_select(xl3m_.get(), session.get(), progress ? +trampoline : nullptr, &context, &e);
    if (context.error) std::rethrow_exception(context.error);
    detail::check(rc, e);
  }
  std::vector<int32_t> key_context() const {
    std::vector<int32_t> ids(static_cast<size_t>(ariadne_xl3m_key_context(xl3m_.get(), nullptr, 0)));
    ariadne_xl3m_key_context(xl3m_.get(), ids.data(), static_cast<int32_t>(ids.size()));
    return ids;
  }
  ariadne_xl3m_stats stats() const { return ariadne_xl3m_get_stats(xl3m_.get()); }
  ariadne_xl3m_segment segment(int32_t index) const {
    ariadne_error e;
    ariadne_xl3m_segment s{};
    detail::check(ariadne_xl3m_get_segment(xl3m_.get(), index, &s, &e), e);
    return s;
  }
  std::pair<int64_t, int64_t> span(int32_t index) const {
    ariadne_error e;
    int64_t begin = 0, end = 0;
    detail::check(ariadne_xl3m_get_span(xl3m_.get(), index, &begin, &end, &e), e);
    return {begin, end};
  }

 private:
  std::unique_ptr<ariadne_xl3m, decltype(&ariadne_xl3m_free)> xl3m_{nullptr, &ariadne_xl3m_free};
};

}  // namespace ariadne::api
