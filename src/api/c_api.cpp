// The C API over the runtime: each handle owns its C++ object; errors become messages in ariadne_error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
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
#include "runtime/chelsea_sidecar.h"
#include "runtime/generate.h"
#include "runtime/kv_policies.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/sparse_attention.h"
#include "runtime/xl3m.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/load.h"
#include "tokenizer/stream_encoder.h"
#include "tokenizer/tokenizer.h"

struct ariadne_model {
  std::shared_ptr<const ariadne::ModelSource> source;
  std::unique_ptr<ariadne::Tokenizer> tokenizer;  // null when the model has none
  std::string tokenizer_error;
  std::vector<int32_t> end_of_generation;  // ariadne::end_of_generation_ids
};

struct ariadne_session {
  std::unique_ptr<ariadne::Session> session;
  std::string kv_policy;                              // ariadne_session_kv_policy
  std::string attention;                              // ariadne_session_attention
  std::shared_ptr<ariadne::SparseSelector> selector;  // null: dense
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

// The KV policy the parameters ask for (null: full). note receives what chelsea's outlier sidecar lookup
// found.
// The session's attention selector (null: dense), from attn, attn_topk, attn_dense_layers, attn_sink,
// attn_recent, hata_sidecar, attn_score and attn_follow.
std::shared_ptr<ariadne::SparseSelector> attention_selector(const ariadne_model* m,
                                                            const ariadne_session_params* p) {
  if (p == nullptr || p->attn == nullptr || std::string_view(p->attn) == "dense") return nullptr;
  ariadne::SparseAttentionConfig c;
  c.method = p->attn;
  c.topk = p->attn_topk;
  if (p->attn_dense_layers != nullptr)
    c.dense_layers = ariadne::parse_layer_list(p->attn_dense_layers, "attn_dense_layers");
  c.sink = p->attn_sink;
  c.recent = p->attn_recent;
  if (p->hata_sidecar != nullptr) c.sidecar = p->hata_sidecar;
  if (p->attn_score != nullptr) {
    ariadne::HataScore score;
    if (!ariadne::parse_hata_score(p->attn_score, &score))
      ariadne::fail("attn_score: '{}' is not norm or hamming", p->attn_score);
    c.score = score;
  }
  if (p->attn_follow != nullptr) c.follow = ariadne::parse_follow(p->attn_follow, "attn_follow");
  ariadne::validate_sparse_attention(c);
  return ariadne::make_sparse_selector(c, *m->source);
}

std::shared_ptr<ariadne::KvPolicy> kv_policy(const ariadne_model* m, const ariadne_session_params* p,
                                             std::string* note) {
  if (p == nullptr || p->kv_policy == nullptr || std::string_view(p->kv_policy) == "full") return nullptr;
  ariadne::KvPolicyConfig c;
  c.name = p->kv_policy;
  if (p->kv_budget < 0) ariadne::fail("kv_budget: expected a budget > 0 (0: 0.2), got {}", p->kv_budget);
  if (p->chelsea_chunk < 0 || p->chelsea_interval < 0 || p->kv_generation < 0)
    ariadne::fail("chelsea_chunk, chelsea_interval and kv_generation must be >= 0 (0: the default)");
  if (p->kv_budget > 0) c.budget = p->kv_budget;
  c.sink = p->kv_sink == 0 ? -1 : std::max(p->kv_sink, 0);
  c.recent = p->kv_recent == 0 ? -1 : std::max(p->kv_recent, 0);
  if (p->chelsea_chunk > 0) c.chunk = p->chelsea_chunk;
  if (p->chelsea_interval > 0) c.interval = p->chelsea_interval;
  if (p->kv_generation > 0) c.generation = p->kv_generation;
  ariadne::validate_kv_policy(c);
  if (c.name == "chelsea" && (p->kv_sidecar == nullptr || p->kv_sidecar[0] != '\0')) {
    const ariadne::ChelseaOutliers found =
        ariadne::load_chelsea_outliers(*m->source, c.budget, p->kv_sidecar != nullptr ? p->kv_sidecar : "");
    c.outliers = found.outliers;
    c.outliers_source = found.path;
    if (note != nullptr) *note = found.note;
  }
  return ariadne::make_kv_policy(c);
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

// Runs ids through the session (chunked by n_batch inside), keeping tokens in step with it.
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
  const int64_t before = session.n_past();
  // tokens follows the session, also when the eval stops early (the chunks done stay; a cancelled
  // layer-by-layer prefill clears the session).
  auto sync = [&] {
    const int64_t now = session.n_past();
    if (now < before) {
      s->tokens.resize(static_cast<size_t>(now));
    } else {
      s->tokens.insert(s->tokens.end(), ids, ids + (now - before));
    }
  };
  ariadne::EvalProgress on_chunk;
  if (progress != nullptr)
    on_chunk = [&](int64_t done, int64_t total) {
      return progress(static_cast<int32_t>(done), static_cast<int32_t>(total), user);
    };
  std::vector<float> logits;
  try {
    logits = session.eval(std::span<const int32_t>(ids, static_cast<size_t>(n)), false, on_chunk);
  } catch (...) {
    sync();
    throw;
  }
  sync();
  s->logits = std::move(logits);
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
    const std::shared_ptr<ariadne::KvPolicy> policy = kv_policy(m, params, nullptr);
    const ariadne::MemoryEstimate e =
        ariadne::estimate_bench_memory(*m->source, n_ctx, o.n_batch, o.n_threads, o.kv_type, policy.get());
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
    ariadne::SessionOptions o = session_options(params);
    auto s = std::make_unique<ariadne_session>();
    s->n_batch = o.n_batch;
    std::string note;
    o.kv_policy = kv_policy(m, params, &note);
    s->kv_policy = o.kv_policy ? o.kv_policy->describe() : "full";
    if (!note.empty() &&
        (o.kv_policy == nullptr || s->kv_policy.find("outlier heads kept full") == std::string::npos))
      s->kv_policy += "; " + note;
    s->session = std::make_unique<ariadne::Session>(m->source, o);
    s->selector = attention_selector(m, params);
    s->attention = s->selector ? s->selector->describe() : "dense";
    if (s->selector) s->session->kv().set_selector(s->selector);
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

const char* ariadne_session_kv_policy(const ariadne_session* s) {
  return s->kv_policy.c_str();
}

ariadne_kv_policy_stats ariadne_session_kv_policy_stats(const ariadne_session* s) {
  ariadne_kv_policy_stats st{};
  const ariadne::KvPolicy* policy = s->session->kv().policy();
  if (policy == nullptr) return st;
  const ariadne::KvPolicyStats p = policy->stats();
  st.budget = p.budget;
  st.budget_clamped = p.budget_clamped;
  st.prefill_compressions = p.prefill_compressions;
  st.decode_compressions = p.decode_compressions;
  st.prefill_seconds = p.prefill_seconds;
  st.decode_seconds = p.decode_seconds;
  return st;
}

const char* ariadne_session_attention(const ariadne_session* s) {
  return s->attention.c_str();
}

ariadne_attention_stats ariadne_session_attention_stats(const ariadne_session* s) {
  ariadne_attention_stats st{};
  if (!s->selector) return st;
  const ariadne::SparseAttentionStats& a = s->selector->stats();
  st.steps = a.steps;
  st.sparse_heads = a.sparse_heads;
  st.dense_heads = a.dense_heads;
  st.entries_read = a.entries_read;
  st.entries_held = a.entries_held;
  st.encode_seconds = a.encode_seconds;
  st.score_seconds = a.score_seconds;
  st.select_seconds = a.select_seconds;
  st.side_bytes = s->selector->bytes();
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

// ---- XL3M ----

struct ariadne_xl3m {
  const ariadne_model* model;
  ariadne::Xl3mOptions options;
  bool add_bos = true;
  bool parse_special = true;
  std::optional<std::vector<int32_t>> prefix;     // P as set; unset: BOS alone
  std::vector<int32_t> content;                   // [n] every content id so far
  std::optional<std::vector<int32_t>> question;   // Xt as set; unset: taken from the content's tail
  std::optional<ariadne::StreamEncoder> encoder;  // with a tokenizer
  std::unique_ptr<ariadne::SentenceBoundaries> boundaries;
  // After a select.
  bool selected = false;
  ariadne::Xl3mResult result;
  std::vector<int32_t> ranks;  // [segments] rank by score
  int64_t n_input = 0;
  int64_t n_prefix = 0;
  int64_t n_question = 0;
};

namespace {

void xl3m_flush(ariadne_xl3m* x) {
  if (x->encoder) x->encoder->finish(x->content);
}

std::vector<int32_t> checked_ids(const ariadne_xl3m* x, const int32_t* ids, int32_t n, const char* what) {
  if (n < 0 || (n > 0 && ids == nullptr)) ariadne::fail("xl3m {}: expected n >= 0 ids, got {}", what, n);
  const int32_t n_vocab = ariadne_model_n_vocab(x->model);
  for (int32_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= n_vocab)
      ariadne::fail("xl3m {}: token id {} at index {} is outside the vocabulary [0, {})", what, ids[i], i,
                    n_vocab);
  return std::vector<int32_t>(ids, ids + n);
}

}  // namespace

extern "C" {

ariadne_xl3m_params ariadne_xl3m_default_params(void) {
  ariadne_xl3m_params p{};
  p.window = 0;
  p.n_gen = 512;
  p.segment = 0;
  p.overlap = -1;
  p.top_k = 0;
  p.score = ARIADNE_XL3M_LAST_ENTROPY;
  p.snap = true;
  p.separator = nullptr;
  p.question_tokens = 64;
  p.max_question = 512;
  p.add_bos = true;
  p.parse_special = true;
  p.max_lead = 2;
  return p;
}

ariadne_xl3m* ariadne_xl3m_create(const ariadne_model* m, const ariadne_xl3m_params* params,
                                  ariadne_error* err) {
  return guarded<ariadne_xl3m*>(err, nullptr, [&] {
    if (m == nullptr) ariadne::fail("xl3m: the model is NULL");
    const ariadne_xl3m_params p = params != nullptr ? *params : ariadne_xl3m_default_params();
    if (p.window < 0) ariadne::fail("xl3m window: expected >= 0 (0: the trained context), got {}", p.window);
    if (p.n_gen < 0) ariadne::fail("xl3m n_gen: expected >= 0 answer tokens, got {}", p.n_gen);
    if (p.segment < 0) ariadne::fail("xl3m segment: expected >= 0 (0: the default), got {}", p.segment);
    if (p.overlap < -1) ariadne::fail("xl3m overlap: expected >= 0 (-1: the default), got {}", p.overlap);
    if (p.segment > 0 && p.overlap >= p.segment)
      ariadne::fail("xl3m overlap: {} is not smaller than the segment length {}", p.overlap, p.segment);
    if (p.top_k < 0) ariadne::fail("xl3m top_k: expected >= 0 (0: as many as fit), got {}", p.top_k);
    if (p.score < ARIADNE_XL3M_LAST_ENTROPY || p.score > ARIADNE_XL3M_FUSED)
      ariadne::fail("xl3m score: unknown mode {} (expected 0, 1, 2 or 3)", static_cast<int>(p.score));
    if (p.question_tokens < 1 || p.max_question < 1)
      ariadne::fail("xl3m question_tokens and max_question: expected >= 1, got {} and {}", p.question_tokens,
                    p.max_question);
    if (p.max_lead < 0)
      ariadne::fail("xl3m max_lead: expected >= 0 (0: score Xt as given), got {}", p.max_lead);
    auto x = std::make_unique<ariadne_xl3m>();
    x->model = m;
    ariadne::Xl3mOptions& o = x->options;
    o.window = p.window;
    o.n_gen = p.n_gen;
    o.segment = p.segment;
    o.overlap = p.overlap;
    o.top_k = p.top_k;
    o.score = static_cast<ariadne::Xl3mScore>(p.score);
    o.snap = p.snap;
    o.question_tokens = p.question_tokens;
    o.max_question = p.max_question;
    o.max_lead = p.max_lead;
    x->add_bos = p.add_bos;
    x->parse_special = p.parse_special;
    const std::string separator = p.separator != nullptr ? p.separator : "\n";
    if (m->tokenizer) {
      o.separator = ariadne::xl3m_separator_ids(*m->tokenizer, separator);
      o.blank_tokens = ariadne::xl3m_blank_token_ids(*m->tokenizer);
      x->encoder.emplace(*m->tokenizer, p.parse_special);
      if (p.snap) x->boundaries = std::make_unique<ariadne::SentenceBoundaries>(*m->tokenizer);
    } else if (!separator.empty()) {
      // Without a tokenizer the separator has no ids: spans are joined directly.
      o.separator.clear();
    }
    return x.release();
  });
}

void ariadne_xl3m_free(ariadne_xl3m* x) {
  delete x;
}

int ariadne_xl3m_set_prefix_text(ariadne_xl3m* x, const char* text, size_t length, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const ariadne::Tokenizer& t = need_tokenizer(x->model);
    std::vector<int32_t> ids;
    const ariadne::Vocab& v = t.vocab();
    if (x->add_bos && v.add_bos && v.bos_id >= 0) ids.push_back(v.bos_id);
    const std::vector<int32_t> more = t.encode(std::string_view(text, length), false, x->parse_special);
    ids.insert(ids.end(), more.begin(), more.end());
    x->prefix = std::move(ids);
    return 0;
  });
}

int ariadne_xl3m_set_prefix_tokens(ariadne_xl3m* x, const int32_t* ids, int32_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    x->prefix = checked_ids(x, ids, n, "prefix");
    return 0;
  });
}

int ariadne_xl3m_add_text(ariadne_xl3m* x, const char* text, size_t length, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    need_tokenizer(x->model);
    if (length > 0 && text == nullptr) ariadne::fail("xl3m text: NULL with length {}", length);
    x->encoder->push(std::string_view(text, length), x->content);
    return 0;
  });
}

int ariadne_xl3m_add_tokens(ariadne_xl3m* x, const int32_t* ids, int32_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const std::vector<int32_t> more = checked_ids(x, ids, n, "content");
    xl3m_flush(x);  // text before these ids comes first
    x->content.insert(x->content.end(), more.begin(), more.end());
    return 0;
  });
}

int ariadne_xl3m_reserve(ariadne_xl3m* x, int64_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    if (n < 0) ariadne::fail("xl3m reserve: expected n >= 0 ids, got {}", n);
    x->content.reserve(static_cast<size_t>(n));
    return 0;
  });
}

int ariadne_xl3m_set_question_text(ariadne_xl3m* x, const char* text, size_t length, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    x->question = need_tokenizer(x->model).encode(std::string_view(text, length), false, x->parse_special);
    return 0;
  });
}

int ariadne_xl3m_set_question_tokens(ariadne_xl3m* x, const int32_t* ids, int32_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    x->question = checked_ids(x, ids, n, "question");
    return 0;
  });
}

int ariadne_xl3m_select(ariadne_xl3m* x, ariadne_session* s, ariadne_progress_callback progress, void* user,
                        ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    if (s == nullptr) ariadne::fail("xl3m select: the session is NULL");
    xl3m_flush(x);
    x->selected = false;
    std::vector<int32_t> prefix;
    if (x->prefix) {
      prefix = *x->prefix;
    } else if (x->add_bos) {
      const int32_t bos = ariadne_model_bos(x->model);
      const bool adds = x->model->tokenizer ? x->model->tokenizer->vocab().add_bos : bos >= 0;
      if (adds && bos >= 0) prefix.push_back(bos);
    }
    const std::span<const int32_t> content(x->content);
    ariadne::Xl3mInput in;
    in.prefix = prefix;
    const int64_t window = x->options.window > 0 ? x->options.window : x->model->source->config.n_ctx_train;
    const auto n_all =
        static_cast<int64_t>(prefix.size() + content.size() + (x->question ? x->question->size() : 0));
    if (x->question) {
      in.body = content;
      in.question = *x->question;
    } else if (static_cast<int64_t>(prefix.size() + content.size()) + x->options.n_gen <= window) {
      in.body = content;  // fits: fed as given (a bypass), no question needed
    } else {
      const ariadne::TokenSpan q =
          ariadne::xl3m_tail_question(content, 0, x->options, x->model->tokenizer.get(), x->boundaries.get());
      in.body = content.subspan(0, static_cast<size_t>(q.begin));
      in.question = content.subspan(static_cast<size_t>(q.begin), static_cast<size_t>(q.size()));
    }
    std::function<void(int64_t, int64_t)> on_segment;
    if (progress != nullptr) {
      on_segment = [&](int64_t done, int64_t total) {
        if (!progress(static_cast<int32_t>(done), static_cast<int32_t>(total), user))
          ariadne::fail("xl3m selection cancelled after {} of {} segments", done, total);
      };
    }
    s->logits.clear();
    s->tokens.clear();
    try {
      x->result = ariadne::xl3m_key_context(*s->session, in, x->options, x->boundaries.get(), on_segment);
    } catch (...) {
      s->session->clear();
      throw;
    }
    if (x->result.key.size() > static_cast<size_t>(INT32_MAX))
      ariadne::fail("xl3m: a key context of {} tokens is too long", x->result.key.size());
    // Ranks as the selection orders them.
    const std::vector<size_t> order = ariadne::xl3m_rank_order(x->result.scores);
    x->ranks.assign(order.size(), 0);
    for (size_t r = 0; r < order.size(); ++r) x->ranks[order[r]] = static_cast<int32_t>(r);
    x->n_input = n_all;
    x->n_prefix = static_cast<int64_t>(in.prefix.size());
    x->n_question = static_cast<int64_t>(in.question.size());
    x->selected = true;
    return 0;
  });
}

int32_t ariadne_xl3m_key_context(const ariadne_xl3m* x, int32_t* ids, int32_t capacity) {
  if (!x->selected) return 0;
  const auto n = static_cast<int32_t>(x->result.key.size());
  if (ids != nullptr && capacity > 0) std::copy_n(x->result.key.begin(), std::min(n, capacity), ids);
  return n;
}

ariadne_xl3m_stats ariadne_xl3m_get_stats(const ariadne_xl3m* x) {
  ariadne_xl3m_stats st{};
  st.score = static_cast<ariadne_xl3m_score>(x->options.score);
  if (!x->selected) return st;
  const ariadne::Xl3mResult& r = x->result;
  st.selected = true;
  st.bypass = r.plan.bypass;
  st.n_input = x->n_input;
  st.n_prefix = static_cast<int32_t>(x->n_prefix);
  st.n_body = r.plan.n_body;
  st.n_question = static_cast<int32_t>(x->n_question);
  st.window = static_cast<int32_t>(r.plan.window);
  st.n_gen = static_cast<int32_t>(r.plan.n_gen);
  st.segment = static_cast<int32_t>(r.plan.segment);
  st.overlap = static_cast<int32_t>(r.plan.overlap);
  st.budget = static_cast<int32_t>(r.plan.budget);
  st.n_segments = static_cast<int32_t>(r.segments.size());
  st.n_chosen = static_cast<int32_t>(r.selection.chosen.size());
  st.n_spans = static_cast<int32_t>(r.selection.spans.size());
  st.n_key = static_cast<int32_t>(r.key.size());
  st.scored_tokens = r.scored_tokens;
  st.seconds = r.seconds;
  st.n_lead = static_cast<int32_t>(r.lead.size());
  return st;
}

int ariadne_xl3m_get_segment(const ariadne_xl3m* x, int32_t index, ariadne_xl3m_segment* out,
                             ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const ariadne::Xl3mResult& r = x->result;
    if (!x->selected || index < 0 || static_cast<size_t>(index) >= r.segments.size())
      ariadne::fail("xl3m segment {}: expected an index in [0, {})", index,
                    x->selected ? r.segments.size() : 0);
    const auto i = static_cast<size_t>(index);
    out->begin = r.segments[i].begin;
    out->end = r.segments[i].end;
    out->score = r.scores[i];
    out->rank = x->ranks[i];
    out->chosen = std::find(r.selection.chosen.begin(), r.selection.chosen.end(), static_cast<int64_t>(i)) !=
                  r.selection.chosen.end();
    return 0;
  });
}

int ariadne_xl3m_get_span(const ariadne_xl3m* x, int32_t index, int64_t* begin, int64_t* end,
                          ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    const std::vector<ariadne::TokenSpan>& spans = x->result.selection.spans;
    if (!x->selected || index < 0 || static_cast<size_t>(index) >= spans.size())
      ariadne::fail("xl3m span {}: expected an index in [0, {})", index, x->selected ? spans.size() : 0);
    *begin = spans[static_cast<size_t>(index)].begin;
    *end = spans[static_cast<size_t>(index)].end;
    return 0;
  });
}

}  // extern "C"
