/* Ariadne's public C API: load a model, tokenize, prefill, decode step by step, sample, read cache
 * statistics. Every function that can fail takes an ariadne_error* (may be NULL) that receives the message
 * and returns NULL or a negative value. Objects are not thread-safe; use one session per thread. */
#ifndef ARIADNE_H
#define ARIADNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ariadne_error {
  char message[1024];
} ariadne_error;

typedef struct ariadne_model ariadne_model;
typedef struct ariadne_session ariadne_session;
typedef struct ariadne_sampler ariadne_sampler;

/* A GGUF file, Hugging Face folder or llama2.c checkpoint; tokenizer_path may be NULL (the model's own, or
 * none: tokenize then fails but ids still run). */
ariadne_model* ariadne_model_load(const char* path, const char* tokenizer_path, ariadne_error* err);
void ariadne_model_free(ariadne_model* model);
int32_t ariadne_model_n_vocab(const ariadne_model* model);
int32_t ariadne_model_n_ctx_train(const ariadne_model* model);
int32_t ariadne_model_bos(const ariadne_model* model); /* -1 when none */
int32_t ariadne_model_eos(const ariadne_model* model);
bool ariadne_model_is_end_of_generation(const ariadne_model* model, int32_t token); /* EOS or EOT */

/* Writes up to capacity ids; returns how many the text has (call again with a larger buffer when it is
 * more than capacity), or -1 on error. */
int32_t ariadne_tokenize(const ariadne_model* model, const char* text, size_t length, bool add_special,
                         bool parse_special, int32_t* ids, int32_t capacity, ariadne_error* err);
/* The bytes of one token (not NUL-terminated); returns their count (may exceed capacity) or -1. */
int32_t ariadne_token_to_piece(const ariadne_model* model, int32_t token, bool special, char* buffer,
                               int32_t capacity, ariadne_error* err);

typedef struct ariadne_session_params {
  int32_t n_ctx;       /* 0: the model's trained context, at most 4096 */
  int32_t n_threads;   /* 0: all cores */
  int32_t n_batch;     /* 0: 512 */
  const char* kv_type; /* "f32" (NULL), "f16", "bf16", "q8_0" */
} ariadne_session_params;

ariadne_session* ariadne_session_create(const ariadne_model* model, const ariadne_session_params* params,
                                        ariadne_error* err);
void ariadne_session_free(ariadne_session* session);
/* Feeds ids at the next positions (chunked by n_batch); afterwards ariadne_session_logits holds the last
 * position's logits. Returns 0, or -1 on error (e.g. the context is full). */
int ariadne_session_prefill(ariadne_session* session, const int32_t* ids, int32_t n, ariadne_error* err);
int ariadne_session_decode(ariadne_session* session, int32_t token, ariadne_error* err);
const float* ariadne_session_logits(const ariadne_session* session); /* [n_vocab], NULL before any eval */
int32_t ariadne_session_n_past(const ariadne_session* session);
void ariadne_session_clear(ariadne_session* session);

typedef struct ariadne_cache_stats {
  uint64_t bytes;          /* held by the KV cache now */
  uint64_t bytes_capacity; /* when every head is full */
  int64_t entries;         /* summed over layers and KV heads */
  int32_t n_ctx;
} ariadne_cache_stats;
ariadne_cache_stats ariadne_session_cache_stats(const ariadne_session* session);

typedef struct ariadne_sampler_params {
  float temperature; /* <= 0: greedy */
  int32_t top_k;     /* 0: off */
  float top_p;       /* 1: off */
  float min_p;       /* 0: off */
  float repeat_penalty;
  int32_t repeat_last_n;
  float presence_penalty;
  float frequency_penalty;
  uint64_t seed;
} ariadne_sampler_params;
/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties, seed 42. */
ariadne_sampler_params ariadne_sampler_default_params(void);
ariadne_sampler* ariadne_sampler_create(const ariadne_model* model, const ariadne_sampler_params* params,
                                        ariadne_error* err);
void ariadne_sampler_free(ariadne_sampler* sampler);
int32_t ariadne_sampler_sample(ariadne_sampler* sampler, const float* logits, ariadne_error* err);
void ariadne_sampler_accept(ariadne_sampler* sampler, int32_t token);

#ifdef __cplusplus
}
#endif

#endif /* ARIADNE_H */
