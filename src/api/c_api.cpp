// The C API over the runtime: each handle owns its C++ object; errors become messages in ariadne_error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ariadne/ariadne.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "runtime/bench.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

struct ariadne_model {
  std::shared_ptr<const ariadne::ModelSource> source;
  std::unique_ptr<ariadne::Tokenizer> tokenizer;  // null when the model has none
  std::string tokenizer_error;
  std::vector<int32_t> end_of_generation;  // ariadne::end_of_generation_ids
};

struct ariadne_session {
  std::unique_ptr<ariadne::Session> session;
  int64_t n_batch = 512;
  std::vector<float> logits;    // [n_vocab] of the last position; empty when there is none
  std::vector<int32_t> tokens;  // [n_past] the ids the session holds
  ariadne_timings timings{};
};

struct ariadne_sampler {
  std::unique_ptr<ariadne::Sampler> sampler;
  int32_t n_vocab;
};

struct ariadne_text_stream {
  const ariadne::Tokenizer* tokenizer;
  std::vector<std::string> stops;
  std::optional<ariadne::StreamDecoder> decoder;
  std::optional<ariadne::StopMatcher> matcher;
  std::string taken;  // what the last ariadne_text_stream_take returned
};

namespace {

using Clock = std::chrono::steady_clock;

void set_error(ariadne_error* err, const char* message) {
  if (err == nullptr) return;
  std::snprintf(err->message, sizeof(err->message), "%s", message);
}

// Runs fn, turning any exception into the error message and `failed`.
template <typename T, typename Fn>
T guarded(ariadne_error* err, T failed, Fn&& fn) {
  try {
    if (err != nullptr) err->message[0] = '\0';
    return fn();
  } catch (const std::bad_alloc&) {
    set_error(err, "out of memory");
  } catch (const std::exception& e) {
    set_error(err, e.what());
  }
  return failed;
}

const ariadne::Tokenizer& need_tokenizer(const ariadne_model* m) {
  if (!m->tokenizer) ariadne::fail("the model has no tokenizer: {}", m->tokenizer_error);
  return *m->tokenizer;
}

// Copies text into buffer (up to capacity bytes) and returns its full length.
int32_t copy_out(const std::string& text, char* buffer, int32_t capacity) {
  if (text.size() > static_cast<size_t>(INT32_MAX))
    ariadne::fail("text of {} bytes is too long", text.size());
  if (buffer != nullptr)
    std::memcpy(buffer, text.data(),
                std::min<size_t>(text.size(), static_cast<size_t>(std::max(capacity, 0))));
  return static_cast<int32_t>(text.size());
}

ariadne::SessionOptions session_options(const ariadne_session_params* params) {
  ariadne::SessionOptions o;
  if (params != nullptr) {
    if (params->n_ctx < 0) ariadne::fail("n_ctx: expected >= 0 (0: the default), got {}", params->n_ctx);
    if (params->n_batch < 0) ariadne::fail("n_batch: expected >= 0 (0: 512), got {}", params->n_batch);
    o.n_ctx = params->n_ctx;
    o.n_threads = params->n_threads;
    if (params->n_batch > 0) o.n_batch = params->n_batch;
    if (params->kv_type != nullptr) {
      const auto t = ariadne::dtype_from_name(params->kv_type);
      if (!t || (*t != ariadne::DType::F32 && *t != ariadne::DType::F16 && *t != ariadne::DType::BF16 &&
                 *t != ariadne::DType::Q8_0))
        ariadne::fail("kv_type: unknown type '{}' (expected f32, f16, bf16 or q8_0)", params->kv_type);
      o.kv_type = *t;
    }
    o.exact_matmul = params->exact_matmul;
  }
  if (o.n_threads <= 0) o.n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

// Session's default context, for estimates made before a session exists.
int64_t resolved_context(const ariadne::ModelConfig& c, int64_t n_ctx) {
  return n_ctx > 0 ? n_ctx : std::min<int64_t>(c.n_ctx_train > 0 ? c.n_ctx_train : 4096, 4096);
}

ariadne::SamplerParams to_sampler_params(const ariadne_sampler_params& p) {
  ariadne::SamplerParams sp;
  sp.temperature = p.temperature;
  sp.top_k = p.top_k;
  sp.top_p = p.top_p;
  sp.min_p = p.min_p;
  sp.repeat_penalty = p.repeat_penalty;
  sp.repeat_last_n = p.repeat_last_n;
  sp.presence_penalty = p.presence_penalty;
  sp.frequency_penalty = p.frequency_penalty;
  sp.seed = p.seed;
  if (p.n_logit_bias < 0) ariadne::fail("n_logit_bias: expected >= 0, got {}", p.n_logit_bias);
  if (p.n_logit_bias > 0 && p.logit_bias == nullptr) ariadne::fail("logit_bias is NULL but n_logit_bias > 0");
  for (int32_t i = 0; i < p.n_logit_bias; ++i)
    sp.logit_bias.emplace_back(p.logit_bias[i].token, p.logit_bias[i].bias);
  return sp;
}

// Runs ids through the session in chunks of n_batch, keeping tokens in step with it.
void prefill(ariadne_session* s, const int32_t* ids, int32_t n, ariadne_progress_callback progress,
             void* user) {
  if (n <= 0 || ids == nullptr) ariadne::fail("prefill: no tokens given");
  ariadne::Session& session = *s->session;
  // Everything that can be checked is, before the first chunk: a bad request must not leave half a prompt.
  if (session.n_past() + n > session.n_ctx())
    ariadne::fail("{} tokens after {} already evaluated exceed the context of {} tokens (raise -c)", n,
                  session.n_past(), session.n_ctx());
  const int64_t n_vocab = session.model().config().n_vocab;
  for (int32_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= n_vocab)
      ariadne::fail("token id {} at index {} is outside the vocabulary [0, {})", ids[i], i, n_vocab);
  s->logits.clear();
  for (int32_t done = 0; done < n;) {
    const auto len = static_cast<int32_t>(std::min<int64_t>(s->n_batch, n - done));
    std::vector<float> logits =
        session.eval(std::span<const int32_t>(ids + done, static_cast<size_t>(len)), false);
    s->tokens.insert(s->tokens.end(), ids + done, ids + done + len);
    done += len;
    if (done == n) s->logits = std::move(logits);
    if (progress != nullptr && !progress(done, n, user))
      ariadne::fail("prefill cancelled after {} of {} tokens", done, n);
  }
}

// Adds the wall time of its scope and the tokens the session gained to a pair of timing fields, also when
// the scope ends by an exception (a cancelled prefill still took its time).
class TimedScope {
 public:
  TimedScope(const ariadne_session* s, double* seconds, int64_t* tokens)
      : s_(s), seconds_(seconds), tokens_(tokens), n_past_(s->session->n_past()), start_(Clock::now()) {}
  ~TimedScope() {
    *seconds_ += std::chrono::duration<double>(Clock::now() - start_).count();
    *tokens_ += s_->session->n_past() - n_past_;
  }
  TimedScope(const TimedScope&) = delete;
  TimedScope& operator=(const TimedScope&) = delete;

 private:
  const ariadne_session* s_;
  double* seconds_;
  int64_t* tokens_;
  int64_t n_past_;
  Clock::time_point start_;
};

}  // namespace

extern "C" {

// ---- Model and tokenizer ----

ariadne_model* ariadne_model_load(const char* path, const char* tokenizer_path, ariadne_error* err) {
  return guarded<ariadne_model*>(err, nullptr, [&] {
    if (path == nullptr) ariadne::fail("ariadne_model_load: path is NULL");
    auto model = std::make_unique<ariadne_model>();
    auto source = ariadne::open_model(path);
    ariadne::validate_model(*source);
    model->source = std::move(source);
    try {
      model->tokenizer =
          ariadne::Tokenizer::create(ariadne::load_model_vocab(path, tokenizer_path ? tokenizer_path : ""));
    } catch (const ariadne::Error& e) {
      if (tokenizer_path != nullptr) throw;  // asked for explicitly: a failure is an error
      model->tokenizer_error = e.what();
    }
    model->end_of_generation = ariadne::end_of_generation_ids(
        model->source->config, model->tokenizer ? &model->tokenizer->vocab() : nullptr);
    return model.release();
  });
}

void ariadne_model_free(ariadne_model* model) {
  delete model;
}

int32_t ariadne_model_n_vocab(const ariadne_model* m) {
  return static_cast<int32_t>(m->source->config.n_vocab);
}
int32_t ariadne_model_n_ctx_train(const ariadne_model* m) {
  return static_cast<int32_t>(m->source->config.n_ctx_train);
}
int32_t ariadne_model_bos(const ariadne_model* m) {
  return m->tokenizer ? m->tokenizer->vocab().bos_id : m->source->config.bos_id;
}
int32_t ariadne_model_eos(const ariadne_model* m) {
  return m->tokenizer ? m->tokenizer->vocab().eos_id : m->source->config.eos_id;
}
bool ariadne_model_is_end_of_generation(const ariadne_model* m, int32_t token) {
  return std::find(m->end_of_generation.begin(), m->end_of_generation.end(), token) !=
         m->end_of_generation.end();
}
bool ariadne_model_has_tokenizer(const ariadne_model* m) {
  return m->tokenizer != nullptr;
}
const char* ariadne_model_tokenizer_error(const ariadne_model* m) {
  return m->tokenizer_error.c_str();
}
int32_t ariadne_model_n_tokens(const ariadne_model* m) {
  return m->tokenizer ? m->tokenizer->vocab().size() : 0;
}
const char* ariadne_token_text(const ariadne_model* m, int32_t token) {
  if (!m->tokenizer || token < 0 || token >= m->tokenizer->vocab().size()) return nullptr;
  return m->tokenizer->vocab().tokens[static_cast<size_t>(token)].c_str();
}

int32_t ariadne_tokenize(const ariadne_model* m, const char* text, size_t length, bool add_special,
                         bool parse_special, int32_t* ids, int32_t capacity, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    const std::vector<int32_t> out =
        need_tokenizer(m).encode(std::string_view(text, length), add_special, parse_special);
    if (out.size() > static_cast<size_t>(INT32_MAX))
      ariadne::fail("text of {} tokens is too long", out.size());
    if (ids != nullptr)
      std::copy_n(out.begin(), std::min<size_t>(out.size(), static_cast<size_t>(std::max(capacity, 0))), ids);
    return static_cast<int32_t>(out.size());
  });
}

int32_t ariadne_token_to_piece(const ariadne_model* m, int32_t token, bool special, char* buffer,
                               int32_t capacity, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    const ariadne::Tokenizer& t = need_tokenizer(m);
    if (token < 0 || token >= t.vocab().size())
      ariadne::fail("token id {} is outside the vocabulary [0, {})", token, t.vocab().size());
    return copy_out(t.token_to_piece(token, special), buffer, capacity);
  });
}

int32_t ariadne_detokenize(const ariadne_model* m, const int32_t* ids, int32_t n, bool special, char* buffer,
                           int32_t capacity, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    if (n < 0 || (n > 0 && ids == nullptr)) ariadne::fail("detokenize: expected n >= 0 ids, got {}", n);
    return copy_out(need_tokenizer(m).decode(std::span<const int32_t>(ids, static_cast<size_t>(n)), special),
                    buffer, capacity);
  });
}

// ---- Chat templates ----

const char* ariadne_model_chat_template(const ariadne_model* m) {
  if (!m->tokenizer || m->tokenizer->vocab().chat_template.empty()) return nullptr;
  return m->tokenizer->vocab().chat_template.c_str();
}

const char* ariadne_chat_builtin_template(const char* family, ariadne_error* err) {
  return guarded<const char*>(err, nullptr, [&]() -> const char* {
    static const char* const kFamilies[] = {"llama3", "llama2", "mistral", "chatml", "qwen2", "qwen3"};
    // Built once: the returned pointers stay valid for the life of the program.
    static const std::vector<std::string> kSources = [] {
      std::vector<std::string> v;
      for (const char* f : kFamilies) v.push_back(ariadne::builtin_chat_template(f));
      return v;
    }();
    const std::string name = family != nullptr ? family : "";
    for (size_t i = 0; i < std::size(kFamilies); ++i)
      if (name == kFamilies[i]) return kSources[i].c_str();
    ariadne::builtin_chat_template(name);  // throws the message listing the known families
    return nullptr;
  });
}

int32_t ariadne_chat_apply_template(const ariadne_model* m, const char* tmpl,
                                    const ariadne_chat_message* messages, int32_t n_messages,
                                    bool add_generation_prompt, char* buffer, int32_t capacity,
                                    ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    const char* source = tmpl != nullptr ? tmpl : ariadne_model_chat_template(m);
    if (source == nullptr)
      ariadne::fail("{}: the model has no chat template (pass one, e.g. a built-in family's)",
                    m->source->path);
    if (n_messages < 0 || (n_messages > 0 && messages == nullptr))
      ariadne::fail("chat template: expected n_messages >= 0 messages, got {}", n_messages);
    std::vector<ariadne::ChatMessage> list;
    for (int32_t i = 0; i < n_messages; ++i) {
      if (messages[i].role == nullptr || messages[i].content == nullptr)
        ariadne::fail("chat template: message {} has a NULL role or content", i);
      list.push_back({messages[i].role, messages[i].content});
    }
    ariadne::ChatTemplateOptions options;
    options.add_generation_prompt = add_generation_prompt;
    if (m->tokenizer) {
      const ariadne::Vocab& v = m->tokenizer->vocab();
      if (v.bos_id >= 0 && v.bos_id < v.size()) options.bos_token = v.tokens[static_cast<size_t>(v.bos_id)];
      if (v.eos_id >= 0 && v.eos_id < v.size()) options.eos_token = v.tokens[static_cast<size_t>(v.eos_id)];
    }
    return copy_out(ariadne::render_chat_template(source, list, options), buffer, capacity);
  });
}

// ---- Sessions ----

int ariadne_estimate_memory(const ariadne_model* m, const ariadne_session_params* params,
                            ariadne_memory_estimate* out, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const ariadne::SessionOptions o = session_options(params);
    const int64_t n_ctx = resolved_context(m->source->config, o.n_ctx);
    const ariadne::MemoryEstimate e =
        ariadne::estimate_bench_memory(*m->source, n_ctx, o.n_batch, o.n_threads, o.kv_type);
    *out = ariadne_memory_estimate{};
    out->weights = e.weights;
    out->kv = e.kv;
    out->activations = e.activations;
    out->total = e.total();
    out->available = ariadne::available_memory_bytes();
    out->n_ctx = static_cast<int32_t>(n_ctx);
    return 0;
  });
}

uint64_t ariadne_peak_resident_bytes(void) {
  return ariadne::peak_resident_bytes();
}

ariadne_session* ariadne_session_create(const ariadne_model* m, const ariadne_session_params* params,
                                        ariadne_error* err) {
  return guarded<ariadne_session*>(err, nullptr, [&] {
    const ariadne::SessionOptions o = session_options(params);
    auto s = std::make_unique<ariadne_session>();
    s->n_batch = o.n_batch;
    s->session = std::make_unique<ariadne::Session>(m->source, o);
    return s.release();
  });
}

void ariadne_session_free(ariadne_session* s) {
  delete s;
}

int ariadne_session_prefill(ariadne_session* s, const int32_t* ids, int32_t n, ariadne_error* err) {
  return ariadne_session_prefill_with_progress(s, ids, n, nullptr, nullptr, err);
}

int ariadne_session_prefill_with_progress(ariadne_session* s, const int32_t* ids, int32_t n,
                                          ariadne_progress_callback progress, void* user_data,
                                          ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const TimedScope timed(s, &s->timings.prefill_seconds, &s->timings.n_prefill);
    prefill(s, ids, n, progress, user_data);
    return 0;
  });
}

int ariadne_session_decode(ariadne_session* s, int32_t token, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const TimedScope timed(s, &s->timings.decode_seconds, &s->timings.n_decode);
    prefill(s, &token, 1, nullptr, nullptr);
    return 0;
  });
}

const float* ariadne_session_logits(const ariadne_session* s) {
  return s->logits.empty() ? nullptr : s->logits.data();
}
int32_t ariadne_session_n_past(const ariadne_session* s) {
  return static_cast<int32_t>(s->session->n_past());
}
int32_t ariadne_session_n_ctx(const ariadne_session* s) {
  return static_cast<int32_t>(s->session->n_ctx());
}
const int32_t* ariadne_session_tokens(const ariadne_session* s) {
  return s->tokens.data();
}
void ariadne_session_clear(ariadne_session* s) {
  s->session->clear();
  s->logits.clear();
  s->tokens.clear();
}

int ariadne_session_truncate(ariadne_session* s, int32_t n_keep, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    s->session->truncate(n_keep);
    s->tokens.resize(static_cast<size_t>(n_keep));
    s->logits.clear();
    return 0;
  });
}

ariadne_cache_stats ariadne_session_cache_stats(const ariadne_session* s) {
  const ariadne::KvCache& kv = s->session->kv();
  ariadne_cache_stats st{};
  st.bytes = kv.bytes();
  st.bytes_capacity = ariadne::KvCache::bytes_needed(kv.options());
  for (int64_t l = 0; l < kv.options().n_layer; ++l)
    for (int64_t g = 0; g < kv.options().n_kv_heads; ++g) st.entries += kv.size(l, g);
  st.n_ctx = static_cast<int32_t>(kv.options().n_ctx);
  return st;
}

ariadne_timings ariadne_session_timings(const ariadne_session* s) {
  return s->timings;
}
void ariadne_session_reset_timings(ariadne_session* s) {
  s->timings = ariadne_timings{};
}

// ---- Sampling ----

ariadne_sampler_params ariadne_sampler_default_params(void) {
  ariadne_sampler_params p{};
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  p.repeat_penalty = 1.0f;
  p.repeat_last_n = 64;
  p.seed = 42;
  return p;
}

int ariadne_sampler_params_validate(const ariadne_sampler_params* params, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    if (params == nullptr) ariadne::fail("sampler parameters are NULL");
    ariadne::validate(to_sampler_params(*params));
    return 0;
  });
}

ariadne_sampler* ariadne_sampler_create(const ariadne_model* m, const ariadne_sampler_params* params,
                                        ariadne_error* err) {
  return guarded<ariadne_sampler*>(err, nullptr, [&] {
    const ariadne_sampler_params p = params ? *params : ariadne_sampler_default_params();
    auto s = std::make_unique<ariadne_sampler>();
    s->n_vocab = ariadne_model_n_vocab(m);
    s->sampler = std::make_unique<ariadne::Sampler>(
        ariadne::generation_sampler_params(to_sampler_params(p), m->source->config,
                                           m->tokenizer ? &m->tokenizer->vocab() : nullptr, p.ignore_eos),
        s->n_vocab);
    return s.release();
  });
}

void ariadne_sampler_free(ariadne_sampler* s) {
  delete s;
}

int32_t ariadne_sampler_sample(ariadne_sampler* s, const float* logits, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    if (logits == nullptr) ariadne::fail("sample: logits are NULL (nothing evaluated yet)");
    return s->sampler->sample(std::span<const float>(logits, static_cast<size_t>(s->n_vocab)));
  });
}

void ariadne_sampler_accept(ariadne_sampler* s, int32_t token) {
  s->sampler->accept(token);
}
void ariadne_sampler_reset(ariadne_sampler* s) {
  s->sampler->reset();
}
uint64_t ariadne_sampler_seed(const ariadne_sampler* s) {
  return s->sampler->seed();
}

// ---- Generated tokens to text ----

ariadne_text_stream* ariadne_text_stream_create(const ariadne_model* m, const char* const* stops,
                                                int32_t n_stops, ariadne_error* err) {
  return guarded<ariadne_text_stream*>(err, nullptr, [&] {
    if (!m->tokenizer)
      ariadne::fail("text needs a tokenizer to turn tokens into text, and this model has none ({})",
                    m->tokenizer_error);
    if (n_stops < 0 || (n_stops > 0 && stops == nullptr))
      ariadne::fail("text stream: expected n_stops >= 0 stop strings, got {}", n_stops);
    auto s = std::make_unique<ariadne_text_stream>();
    s->tokenizer = m->tokenizer.get();
    for (int32_t i = 0; i < n_stops; ++i) {
      if (stops[i] == nullptr) ariadne::fail("stop string {} is NULL", i);
      s->stops.emplace_back(stops[i]);
    }
    s->matcher.emplace(s->stops);  // checks that none is empty
    s->decoder.emplace(*s->tokenizer);
    return s.release();
  });
}

void ariadne_text_stream_free(ariadne_text_stream* s) {
  delete s;
}

int ariadne_text_stream_begin(ariadne_text_stream* s, const int32_t* prompt, int32_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    if (n < 0 || (n > 0 && prompt == nullptr))
      ariadne::fail("text stream: expected n >= 0 prompt ids, got {}", n);
    s->matcher.emplace(s->stops);
    s->decoder.emplace(*s->tokenizer);
    s->taken.clear();
    // The decoder continues the prompt: its first piece is not the start of a text, so it keeps the space
    // Spm's decode would strip there. Whatever the prompt leaves incomplete (a split UTF-8 character) is
    // prompt text, not generated text, and is dropped.
    const int32_t n_decodable = s->tokenizer->vocab().size();
    for (int32_t i = n; i-- > 0;) {
      if (prompt[i] >= 0 && prompt[i] < n_decodable) {
        s->decoder->push(prompt[i]);
        s->decoder->flush();
        break;
      }
    }
    return 0;
  });
}

int ariadne_text_stream_push(ariadne_text_stream* s, int32_t token, ariadne_error* err) {
  return guarded<int>(err, -1, [&] { return s->matcher->append(s->decoder->push(token)) ? 1 : 0; });
}

int ariadne_text_stream_finish(ariadne_text_stream* s) {
  // Bytes of an unfinished character at the very end: passed on as they are.
  if (s->matcher->append(s->decoder->flush())) return 1;
  s->matcher->finish();
  return 0;
}

const char* ariadne_text_stream_take(ariadne_text_stream* s, size_t* length) {
  s->taken = std::string(s->matcher->take_final());
  if (length != nullptr) *length = s->taken.size();
  return s->taken.c_str();
}

const char* ariadne_text_stream_text(const ariadne_text_stream* s, size_t* length) {
  if (length != nullptr) *length = s->matcher->text().size();
  return s->matcher->text().c_str();
}

}  // extern "C"
