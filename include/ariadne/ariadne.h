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
  /* What the KV cache keeps (docs/chelsea.md): "full" (NULL), "chelsea", "streaming" or "snapkv". The memory
   * check counts the most the policy can hold, so a context too large for a full cache may fit compressed. */
  const char* kv_policy;
  double kv_budget;      /* entries per KV head: a fraction in (0, 1] of prompt + generated tokens, or a
                            whole number > 1 of entries; 0: 0.2 */
  int32_t kv_sink;       /* protected first entries; 0: the policy's default (chelsea 16, streaming 4, snapkv
                            0); < 0: none */
  int32_t kv_recent;     /* chelsea: protected last entries (0: 64); snapkv: observation window (0: 32) */
  int32_t chelsea_chunk; /* chelsea's chunk size; 0: 256 */
  int32_t chelsea_interval; /* decode steps between compressions (chelsea, streaming); 0: 64 */
  int32_t kv_generation;    /* tokens expected after each prompt, which the budget counts; 0: 512 */
  const char* kv_sidecar;   /* chelsea's outlier heads: NULL: <model>.chelsea.gguf when it exists; "": none;
                               else this file (which must exist) */
  /* What attention reads at each decode step (../shared/specs/hata.md; prompts are always read whole):
   * "dense" (NULL), "hata" (learned hashes from `ariadne calibrate --method hata`), "exact-topk" (the
   * oracle), "quest" (page bounds) or "hash-random" (untrained hashes). */
  const char* attn;
  double attn_topk;              /* entries each KV head reads: a fraction in (0, 1] or a whole number > 1;
                                    0: min(n, max(512, n/64)) */
  const char* attn_dense_layers; /* layers read whole, "0,1" (NULL); "" or "none": none */
  int32_t attn_sink;             /* first entries always read (counted in the budget) */
  int32_t attn_recent;           /* last entries always read (counted in the budget); the current token is */
  const char* hata_sidecar;      /* hata's weights: NULL: <model>.hata.gguf; else this file */
  const char* attn_score;        /* hata, hash-random: "norm" or "hamming"; NULL: the sidecar's (norm) */
  const char* attn_follow;       /* "on" (NULL) or "off": also read the entry after each query head's most
                                    attended one of the previous step (inside the budget) */
} ariadne_session_params;

/* Memory a session of these parameters is expected to hold, computed without allocating anything. */
typedef struct ariadne_memory_estimate {
  uint64_t weights;     /* the model's tensors (mapped from the file, resident once touched) */
  uint64_t kv;          /* the most the KV cache can hold: every head full (n_ctx entries), or less under a
                           compressing KV policy (one layer full while a prompt goes through it) */
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
 * the chunks done stay in the session and the call fails with "prefill cancelled". Under a compressing KV
 * policy a prompt goes through the model layer by layer (done counts token-layers, scaled to tokens), and a
 * cancelled prefill clears the session. */
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

/* The session's KV policy in one line for users: "full", or e.g. "chelsea: budget 0.2, sinks 16, recent 64,
 * chunk 256, interval 64, 3 outlier heads kept full (from m.gguf.chelsea.gguf)" followed, for chelsea, by
 * what the outlier sidecar lookup found. Valid while the session lives. */
const char* ariadne_session_kv_policy(const ariadne_session* session);

typedef struct ariadne_kv_policy_stats {
  int64_t budget;               /* entries per KV head the last prompt was compressed to; 0: none yet */
  bool budget_clamped;          /* raised to the policy's smallest budget */
  int64_t prefill_compressions; /* layers compressed after prompts */
  int64_t decode_compressions;  /* layers compressed during decode */
  double prefill_seconds;       /* spent compressing after prompts */
  double decode_seconds;        /* spent compressing during decode */
} ariadne_kv_policy_stats;
ariadne_kv_policy_stats ariadne_session_kv_policy_stats(const ariadne_session* session);

/* What attention reads, in one line for users: "dense", or e.g. "hata: top-k 1/16 of the entries per KV head,
 * dense layers 0,1, r = 128 bits, norm scores, weights m.hata.gguf". Valid while the session lives. */
const char* ariadne_session_attention(const ariadne_session* session);

typedef struct ariadne_attention_stats {
  int64_t steps;         /* (layer, decode step) pairs that chose entries */
  int64_t sparse_heads;  /* KV head reads that took a subset */
  int64_t dense_heads;   /* ... that read every entry (dense layer, or no more entries than the budget) */
  int64_t entries_read;  /* entries the sparse reads took */
  int64_t entries_held;  /* entries their heads held */
  double encode_seconds; /* query codes (hata), page bounds (quest) */
  double score_seconds;
  double select_seconds;
  uint64_t side_bytes; /* key codes or page bounds held now */
} ariadne_attention_stats;
ariadne_attention_stats ariadne_session_attention_stats(const ariadne_session* session);

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

/* ---- XL3M: questions over inputs longer than the trained window ---- */

/* ../shared/specs/xl3m.md: the input (prefix P + content + question Xt) is cut into overlapping segments of
 * the content; each sub-context [P, segment, Xt] is scored by the model's certainty about what follows; the
 * most certain segments that fit the window are spliced back in their original order (overlaps merged, a
 * separator between spans that are not contiguous), P before them and Xt after: the key context, which is
 * prefilled and decoded like any prompt. An input that fits the window (answer included) is left as it is.
 * Memory does not grow with the input beyond 4 bytes per token: the scoring runs on a session of the
 * window's size, one sub-context at a time over P's cached entries. */

typedef enum ariadne_xl3m_score {
  ARIADNE_XL3M_LAST_ENTROPY = 0,   /* entropy of the next-token distribution after Xt (the default) */
  ARIADNE_XL3M_MEAN_Q_ENTROPY = 1, /* mean entropy of the rows predicting each token of Xt and the answer */
  ARIADNE_XL3M_Q_NLL = 2,          /* mean negative log-likelihood of the tokens of Xt */
  ARIADNE_XL3M_FUSED = 3           /* LAST_ENTROPY's and MEAN_Q_ENTROPY's top picks taken in turn */
} ariadne_xl3m_score;

typedef struct ariadne_xl3m_params {
  int32_t window;  /* C: tokens the key context and the answer may take; 0: the trained context */
  int32_t n_gen;   /* tokens of C kept for the answer */
  int32_t segment; /* S: content tokens per segment; 0: min(512, C / 8) */
  int32_t overlap; /* O: tokens consecutive segments share; -1: S / 8 */
  int32_t top_k;   /* most segments chosen; 0: as many as fit */
  ariadne_xl3m_score score;
  bool snap; /* move segment starts to the nearest sentence start within O/2 (needs a tokenizer) */
  const char* separator;   /* text between spans that are not contiguous (copied); NULL: "\n" */
  int32_t question_tokens; /* without a question: the content's last tokens become it, this many ... */
  int32_t max_question;    /* ... moved back to a sentence or line start up to this many */
  bool add_bos;            /* BOS starts the prefix when the vocabulary adds one */
  bool parse_special;      /* control tokens written in the text become their ids (as ariadne run) */
  int32_t max_lead; /* whitespace tokens the model surely emits after Xt, appended to Xt for scoring only,
                       so that scores are read where the answer's content starts; 0: Xt as given */
} ariadne_xl3m_params;
/* window 0, n_gen 512, segment 0, overlap -1, top_k 0, LAST_ENTROPY, snap, separator NULL, question 64 up
 * to 512 tokens, add_bos, parse_special, max_lead 2. */
ariadne_xl3m_params ariadne_xl3m_default_params(void);

typedef struct ariadne_xl3m ariadne_xl3m;
/* Checks the parameters; the model must outlive the object. */
ariadne_xl3m* ariadne_xl3m_create(const ariadne_model* model, const ariadne_xl3m_params* params,
                                  ariadne_error* err);
void ariadne_xl3m_free(ariadne_xl3m* xl3m);
/* The prefix P (an instruction header): text is encoded after BOS; ids are taken as given. Default: BOS
 * alone (when the vocabulary adds one). */
int ariadne_xl3m_set_prefix_text(ariadne_xl3m* xl3m, const char* text, size_t length, ariadne_error* err);
int ariadne_xl3m_set_prefix_tokens(ariadne_xl3m* xl3m, const int32_t* ids, int32_t n, ariadne_error* err);
/* Appends content. Text may come in pieces cut anywhere (a file read block by block): it is encoded as it
 * arrives, holding about 64 KiB of it, with the ids of the whole text encoded at once. */
int ariadne_xl3m_add_text(ariadne_xl3m* xl3m, const char* text, size_t length, ariadne_error* err);
int ariadne_xl3m_add_tokens(ariadne_xl3m* xl3m, const int32_t* ids, int32_t n, ariadne_error* err);
/* Room for n content ids in all, e.g. a file's size in bytes (no token is shorter than a byte): the ids then
 * never move as they arrive, and the part of the room they do not fill is never touched (not resident). */
int ariadne_xl3m_reserve(ariadne_xl3m* xl3m, int64_t n, ariadne_error* err);
/* The question Xt, ending where the answer starts (encoded without BOS). Without one, the content's last
 * question_tokens tokens (whitespace-only tokens at its very end dropped) moved back to a sentence or line
 * start become the question. */
int ariadne_xl3m_set_question_text(ariadne_xl3m* xl3m, const char* text, size_t length, ariadne_error* err);
int ariadne_xl3m_set_question_tokens(ariadne_xl3m* xl3m, const int32_t* ids, int32_t n, ariadne_error* err);
/* Scores the segments on session (which must hold a sub-context: a session of the window's size does; use
 * one without a compressing KV policy) and builds the key context; the session is left empty.
 * progress(segments done, segments, user_data) after each segment; returning false cancels. */
int ariadne_xl3m_select(ariadne_xl3m* xl3m, ariadne_session* session, ariadne_progress_callback progress,
                        void* user_data, ariadne_error* err);
/* The key context (after a select): writes up to capacity ids, returns its length. */
int32_t ariadne_xl3m_key_context(const ariadne_xl3m* xl3m, int32_t* ids, int32_t capacity);

typedef struct ariadne_xl3m_stats {
  bool selected;      /* ariadne_xl3m_select has run */
  bool bypass;        /* the input fit the window: the key context is the input as given */
  int64_t n_input;    /* prefix + content + question tokens */
  int32_t n_prefix;   /* P */
  int64_t n_body;     /* content the segments cover (the content less a question taken from its tail) */
  int32_t n_question; /* Xt */
  int32_t window;     /* C */
  int32_t n_gen;
  int32_t segment; /* S */
  int32_t overlap; /* O */
  int32_t budget;  /* content and separator tokens the key context may hold */
  int32_t n_segments;
  int32_t n_chosen;      /* segments chosen */
  int32_t n_spans;       /* spans they merge into */
  int32_t n_key;         /* tokens of the key context */
  int64_t scored_tokens; /* tokens the scoring passes evaluated */
  double seconds;        /* scoring and selecting */
  ariadne_xl3m_score score;
  int32_t n_lead; /* blank tokens appended to Xt for scoring (ariadne_xl3m_params.max_lead) */
} ariadne_xl3m_stats;
ariadne_xl3m_stats ariadne_xl3m_get_stats(const ariadne_xl3m* xl3m);

typedef struct ariadne_xl3m_segment {
  int64_t begin, end; /* content token offsets [begin, end) */
  double score;       /* lower: more certain */
  int32_t rank;       /* 0: the most certain (ties: the earlier segment) */
  bool chosen;
} ariadne_xl3m_segment;
/* Segment i of ariadne_xl3m_get_stats().n_segments, in content order. Returns 0, or -1 out of range. */
int ariadne_xl3m_get_segment(const ariadne_xl3m* xl3m, int32_t index, ariadne_xl3m_segment* out,
                             ariadne_error* err);
/* Span i of n_spans: content tokens [*begin, *end) the key context holds, in order. */
int ariadne_xl3m_get_span(const ariadne_xl3m* xl3m, int32_t index, int64_t* begin, int64_t* end,
                          ariadne_error* err);

#ifdef __cplusplus
}
#endif

#endif /* ARIADNE_H */
