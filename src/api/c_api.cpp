// The C API over the runtime: each handle owns its C++ object; errors become messages in ariadne_error.
#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "ariadne/ariadne.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

struct ariadne_model {
  std::shared_ptr<const ariadne::ModelSource> source;
  std::unique_ptr<ariadne::Tokenizer> tokenizer;  // null when the model has none
  std::string tokenizer_error;
};

struct ariadne_session {
  std::unique_ptr<ariadne::Session> session;
  std::vector<float> logits;  // [n_vocab] of the last position
};

struct ariadne_sampler {
  std::unique_ptr<ariadne::Sampler> sampler;
  int32_t n_vocab;
};

namespace {

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

}  // namespace

extern "C" {

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
  if (m->tokenizer) return token == m->tokenizer->vocab().eos_id || token == m->tokenizer->vocab().eot_id;
  return token == m->source->config.eos_id;
}

int32_t ariadne_tokenize(const ariadne_model* m, const char* text, size_t length, bool add_special,
                         bool parse_special, int32_t* ids, int32_t capacity, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    if (!m->tokenizer) ariadne::fail("the model has no tokenizer: {}", m->tokenizer_error);
    const std::vector<int32_t> out =
        m->tokenizer->encode(std::string_view(text, length), add_special, parse_special);
    std::copy_n(out.begin(), std::min<size_t>(out.size(), static_cast<size_t>(std::max(capacity, 0))), ids);
    return static_cast<int32_t>(out.size());
  });
}

int32_t ariadne_token_to_piece(const ariadne_model* m, int32_t token, bool special, char* buffer,
                               int32_t capacity, ariadne_error* err) {
  return guarded<int32_t>(err, -1, [&] {
    if (!m->tokenizer) ariadne::fail("the model has no tokenizer: {}", m->tokenizer_error);
    if (token < 0 || token >= m->tokenizer->vocab().size())
      ariadne::fail("token id {} is outside the vocabulary [0, {})", token, m->tokenizer->vocab().size());
    const std::string piece = m->tokenizer->token_to_piece(token, special);
    std::memcpy(buffer, piece.data(),
                std::min<size_t>(piece.size(), static_cast<size_t>(std::max(capacity, 0))));
    return static_cast<int32_t>(piece.size());
  });
}

ariadne_session* ariadne_session_create(const ariadne_model* m, const ariadne_session_params* params,
                                        ariadne_error* err) {
  return guarded<ariadne_session*>(err, nullptr, [&] {
    ariadne::SessionOptions o;
    if (params != nullptr) {
      o.n_ctx = params->n_ctx;
      o.n_threads = params->n_threads;
      if (params->n_batch > 0) o.n_batch = params->n_batch;
      if (params->kv_type != nullptr) {
        const auto t = ariadne::dtype_from_name(params->kv_type);
        if (!t)
          ariadne::fail("kv_type: unknown type '{}' (expected f32, f16, bf16 or q8_0)", params->kv_type);
        o.kv_type = *t;
      }
    }
    if (o.n_threads <= 0) o.n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto s = std::make_unique<ariadne_session>();
    s->session = std::make_unique<ariadne::Session>(m->source, o);
    return s.release();
  });
}

void ariadne_session_free(ariadne_session* s) {
  delete s;
}

int ariadne_session_prefill(ariadne_session* s, const int32_t* ids, int32_t n, ariadne_error* err) {
  return guarded<int>(err, -1, [&] {
    if (n <= 0 || ids == nullptr) ariadne::fail("prefill: no tokens given");
    s->logits = s->session->eval(std::span<const int32_t>(ids, static_cast<size_t>(n)), false);
    return 0;
  });
}

int ariadne_session_decode(ariadne_session* s, int32_t token, ariadne_error* err) {
  return ariadne_session_prefill(s, &token, 1, err);
}

const float* ariadne_session_logits(const ariadne_session* s) {
  return s->logits.empty() ? nullptr : s->logits.data();
}
int32_t ariadne_session_n_past(const ariadne_session* s) {
  return static_cast<int32_t>(s->session->n_past());
}
void ariadne_session_clear(ariadne_session* s) {
  s->session->clear();
  s->logits.clear();
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

ariadne_sampler* ariadne_sampler_create(const ariadne_model* m, const ariadne_sampler_params* params,
                                        ariadne_error* err) {
  return guarded<ariadne_sampler*>(err, nullptr, [&] {
    const ariadne_sampler_params p = params ? *params : ariadne_sampler_default_params();
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
    auto s = std::make_unique<ariadne_sampler>();
    s->n_vocab = ariadne_model_n_vocab(m);
    s->sampler = std::make_unique<ariadne::Sampler>(sp, s->n_vocab);
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

}  // extern "C"
