/* Ariadne's public C API: load a model, tokenize and detokenize, render a chat template, open a session
 * (KV memory sized up front), prefill with progress, decode step by step, sample, turn generated tokens into
 * text with stop strings, read cache statistics, timings and memory predictions. `ariadne run` and
 * `ariadne chat` are built on it.
 *
 * Every function that can fail takes an ariadne_error* (may be NULL) that receives the message and returns
 * NULL or a negative value. Objects are not thread-safe; use one session per thread. Strings are UTF-8;
 * lengths are in bytes. */
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
typedef struct ariadne_text_stream ariadne_text_stream;

/* ---- Model and tokenizer ---- */

/* A GGUF file, Hugging Face folder or llama2.c checkpoint; tokenizer_path may be NULL (the model's own, or
 * none: tokenize then fails with the reason, but ids still run). */
ariadne_model* ariadne_model_load(const char* path, const char* tokenizer_path, ariadne_error* err);
void ariadne_model_free(ariadne_model* model);
int32_t ariadne_model_n_vocab(const ariadne_model* model); /* rows of the model's output (logits) */
int32_t ariadne_model_n_ctx_train(const ariadne_model* model);
int32_t ariadne_model_bos(const ariadne_model* model); /* -1 when none */
int32_t ariadne_model_eos(const ariadne_model* model);
/* The tokens that end generation: the vocabulary's EOS and EOT and the model config's EOS. */
bool ariadne_model_is_end_of_generation(const ariadne_model* model, int32_t token);
bool ariadne_model_has_tokenizer(const ariadne_model* model);
/* Why the model has no tokenizer ("" when it has one); valid while the model lives. */
const char* ariadne_model_tokenizer_error(const ariadne_model* model);
/* Tokens the tokenizer knows (0 without one); may be fewer than n_vocab (padded embeddings). */
int32_t ariadne_model_n_tokens(const ariadne_model* model);
/* The vocabulary's spelling of a token, special tokens as written ("<s>", "<|eot_id|>"); NULL when the id is
 * outside the vocabulary or there is no tokenizer. Valid while the model lives. */
const char* ariadne_token_text(const ariadne_model* model, int32_t token);

/* Writes up to capacity ids; returns how many the text has (call again with a larger buffer when it is
 * more than capacity), or -1 on error. add_special: BOS (and EOS) as the vocabulary asks; parse_special:
 * control tokens written in the text ("<|eot_id|>") become their ids. */
int32_t ariadne_tokenize(const ariadne_model* model, const char* text, size_t length, bool add_special,
                         bool parse_special, int32_t* ids, int32_t capacity, ariadne_error* err);
/* The bytes of one token (not NUL-terminated); returns their count (may exceed capacity) or -1. */
int32_t ariadne_token_to_piece(const ariadne_model* model, int32_t token, bool special, char* buffer,
                               int32_t capacity, ariadne_error* err);
/* The text of a token sequence (not NUL-terminated), as the tokenizer decodes it as a whole (Spm drops the
 * space its prefix added at the start); returns the byte count (may exceed capacity) or -1. */
int32_t ariadne_detokenize(const ariadne_model* model, const int32_t* ids, int32_t n, bool special,
                           char* buffer, int32_t capacity, ariadne_error* err);

/* ---- Chat templates ---- */

typedef struct ariadne_chat_message {
  const char* role; /* "system", "user", "assistant", ... */
  const char* content;
} ariadne_chat_message;

/* The model's own chat template (Jinja source), or NULL when its files carry none. */
const char* ariadne_model_chat_template(const ariadne_model* model);
/* The built-in template of a family: "llama3", "llama2", "mistral", "chatml", "qwen2", "qwen3"; NULL (and
 * the known names in err) for any other. Static storage. */
const char* ariadne_chat_builtin_template(const char* family, ariadne_error* err);
/* Renders messages with tmpl (Jinja source; NULL: the model's own, an error when it has none), bos_token and
 * eos_token taken from the model's vocabulary, ending with the assistant header when add_generation_prompt.
 * Writes up to capacity bytes (no NUL); returns the text's length (may exceed capacity) or -1. */
int32_t ariadne_chat_apply_template(const ariadne_model* model, const char* tmpl,
                                    const ariadne_chat_message* messages, int32_t n_messages,
                                    bool add_generation_prompt, char* buffer, int32_t capacity,
                                    ariadne_error* err);

/* ---- Sessions: a model with its KV memory and threads ---- */

typedef struct ariadne_session_params {
  int32_t n_ctx;       /* KV entries; 0: the model's trained context, at most 4096 */
  int32_t n_threads;   /* 0: all cores */
  int32_t n_batch;     /* tokens per forward call while prefilling (the micro-batch); 0: 512 */
  const char* kv_type; /* KV cache element type: "f32" (NULL), "f16", "bf16", "q8_0" */
  bool exact_matmul;   /* quantized weights with f32 activations instead of 8-bit ones (slower, exact) */
} ariadne_session_params;

/* Memory a session of these parameters is expected to hold, computed without allocating anything. */
typedef struct ariadne_memory_estimate {
  uint64_t weights;     /* the model's tensors (mapped from the file, resident once touched) */
  uint64_t kv;          /* the KV cache when every head is full (n_ctx entries) */
  uint64_t activations; /* one forward call's buffers, the logits, each thread's scratch */
  uint64_t total;       /* the sum of the three */
  uint64_t available;   /* memory the system can hand out now (MemAvailable), 0 when unknown */
  int32_t n_ctx;        /* the context the estimate is for (params->n_ctx resolved) */
} ariadne_memory_estimate;
int ariadne_estimate_memory(const ariadne_model* model, const ariadne_session_params* params,
                            ariadne_memory_estimate* out, ariadne_error* err);
/* Peak resident memory of this process so far (VmHWM), in bytes; 0 when unknown. */
uint64_t ariadne_peak_resident_bytes(void);

/* Sizes the KV memory before any work and fails, with both numbers in the message, when it cannot fit in
 * the memory available. */
ariadne_session* ariadne_session_create(const ariadne_model* model, const ariadne_session_params* params,
                                        ariadne_error* err);
void ariadne_session_free(ariadne_session* session);
/* Feeds ids at the next positions (chunked by n_batch); afterwards ariadne_session_logits holds the last
 * position's logits. Returns 0, or -1 on error (e.g. the context is full; nothing is evaluated then). */
int ariadne_session_prefill(ariadne_session* session, const int32_t* ids, int32_t n, ariadne_error* err);
/* Called after each n_batch chunk with the tokens done so far and n. Returning false stops the prefill:
 * the chunks done stay in the session and the call fails with "prefill cancelled". */
typedef bool (*ariadne_progress_callback)(int32_t done, int32_t total, void* user_data);
int ariadne_session_prefill_with_progress(ariadne_session* session, const int32_t* ids, int32_t n,
                                          ariadne_progress_callback progress, void* user_data,
                                          ariadne_error* err);
/* One token at the next position. */
int ariadne_session_decode(ariadne_session* session, int32_t token, ariadne_error* err);
const float* ariadne_session_logits(const ariadne_session* session); /* [n_vocab], NULL before any eval */
int32_t ariadne_session_n_past(const ariadne_session* session);
int32_t ariadne_session_n_ctx(const ariadne_session* session);
/* The ids the session holds, [n_past] (valid until the next call that changes the session). */
const int32_t* ariadne_session_tokens(const ariadne_session* session);
void ariadne_session_clear(ariadne_session* session);
/* Keeps the first n_keep tokens and forgets the rest (freeing their KV blocks); the next prefill continues
 * at position n_keep. The logits are gone until the next eval. Returns 0, or -1 when n_keep is outside
 * [0, n_past]. */
int ariadne_session_truncate(ariadne_session* session, int32_t n_keep, ariadne_error* err);

typedef struct ariadne_cache_stats {
  uint64_t bytes;          /* held by the KV cache now */
  uint64_t bytes_capacity; /* when every head is full */
  int64_t entries;         /* summed over layers and KV heads */
  int32_t n_ctx;
} ariadne_cache_stats;
ariadne_cache_stats ariadne_session_cache_stats(const ariadne_session* session);

/* Wall time spent in prefill and decode calls since creation or the last reset. */
typedef struct ariadne_timings {
  double prefill_seconds;
  int64_t n_prefill; /* tokens prefilled */
  double decode_seconds;
  int64_t n_decode; /* tokens decoded */
} ariadne_timings;
ariadne_timings ariadne_session_timings(const ariadne_session* session);
void ariadne_session_reset_timings(ariadne_session* session);

/* ---- Sampling ---- */

#define ARIADNE_SEED_RANDOM UINT64_MAX

typedef struct ariadne_logit_bias {
  int32_t token;
  float bias; /* added to the logit; -INFINITY bans the token */
} ariadne_logit_bias;

typedef struct ariadne_sampler_params {
  float temperature; /* <= 0: greedy */
  int32_t top_k;     /* 0: off */
  float top_p;       /* in (0, 1]; 1: off */
  float min_p;       /* in [0, 1]; 0: off */
  float repeat_penalty;
  int32_t repeat_last_n; /* tokens the three penalties look back on; 0: off */
  float presence_penalty;
  float frequency_penalty;
  uint64_t seed; /* ARIADNE_SEED_RANDOM: drawn at creation (ariadne_sampler_seed tells which) */
  const ariadne_logit_bias* logit_bias; /* [n_logit_bias], copied at creation; may be NULL */
  int32_t n_logit_bias;
  bool ignore_eos; /* ban the end-of-generation tokens instead of sampling them */
} ariadne_sampler_params;
/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties, seed 42, no
 * biases. */
ariadne_sampler_params ariadne_sampler_default_params(void);
/* Checks the values without a model (token ids of the biases are checked at creation). Returns 0 or -1; the
 * message names the llama.cpp flag (--temp, --top-p, ...). */
int ariadne_sampler_params_validate(const ariadne_sampler_params* params, ariadne_error* err);
/* With a tokenizer, ids it cannot decode (model rows past the vocabulary) are never sampled. */
ariadne_sampler* ariadne_sampler_create(const ariadne_model* model, const ariadne_sampler_params* params,
                                        ariadne_error* err);
void ariadne_sampler_free(ariadne_sampler* sampler);
/* Does not record the token: call ariadne_sampler_accept with the token used. */
int32_t ariadne_sampler_sample(ariadne_sampler* sampler, const float* logits, ariadne_error* err);
/* Records a token for the penalties (the prompt's tokens as well as generated ones). */
void ariadne_sampler_accept(ariadne_sampler* sampler, int32_t token);
/* Forgets the accepted tokens and restarts the generator at the seed: the same calls give the same tokens. */
void ariadne_sampler_reset(ariadne_sampler* sampler);
uint64_t ariadne_sampler_seed(const ariadne_sampler* sampler);

/* ---- Generated tokens to text ---- */

/* Streams generated tokens into text: a UTF-8 character split over tokens is held back until complete, and
 * stop strings are matched across token boundaries, text that may still become one held back. Needs a
 * tokenizer. stops: [n_stops] non-empty strings (may be NULL when n_stops is 0). */
ariadne_text_stream* ariadne_text_stream_create(const ariadne_model* model, const char* const* stops,
                                                int32_t n_stops, ariadne_error* err);
void ariadne_text_stream_free(ariadne_text_stream* stream);
/* Starts a new text (forgetting any earlier one) whose tokens come after these (the prompt): the first
 * generated piece is a continuation and keeps its leading space. */
int ariadne_text_stream_begin(ariadne_text_stream* stream, const int32_t* prompt, int32_t n,
                              ariadne_error* err);
/* Appends a token's text. Returns 1 when a stop string now occurs (the text is cut before it; stop
 * generating), 0 otherwise, -1 on error. */
int ariadne_text_stream_push(ariadne_text_stream* stream, int32_t token, ariadne_error* err);
/* End of generation: held-back bytes become final. Returns 1 when they complete a stop string, else 0. */
int ariadne_text_stream_finish(ariadne_text_stream* stream);
/* Text that became final since the last call, to print (*length bytes, not NUL-terminated); valid until the
 * next call on the stream. */
const char* ariadne_text_stream_take(ariadne_text_stream* stream, size_t* length);
/* All text so far (cut before a stop string), NUL-terminated, *length bytes when length is not NULL. */
const char* ariadne_text_stream_text(const ariadne_text_stream* stream, size_t* length);

#ifdef __cplusplus
}
#endif

#endif /* ARIADNE_H */
