/* The public C API, used from a C translation unit: load stories260K with its tokenizer, tokenize the
 * prompt of ../shared/fixtures/llama2c/stories260K/reference_greedy.json, prefill, decode greedily step by
 * step through the sampler, and compare with the reference run's tokens; cache statistics; errors. Then
 * every other function: detokenizing, chat templates, memory estimates, prefill progress and cancelling,
 * truncation, timings, sampler parameters (biases, ignore_eos, validation, reset), the text stream with
 * stop strings, and XL3M context selection. Exit code 77 (ctest: skipped) when ../shared is absent. */
#include <stdio.h>
#include <string.h>

#include "ariadne/ariadne.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                                \
    }                                                                          \
  } while (0)

/* Progress callback: records the calls; stops after `stop_after` calls when that is > 0. */
typedef struct progress_log {
  int32_t done[16];
  int32_t total;
  int calls;
  int stop_after;
} progress_log;

static bool on_progress(int32_t done, int32_t total, void* user) {
  progress_log* log = (progress_log*)user;
  if (log->calls < 16) log->done[log->calls] = done;
  log->total = total;
  ++log->calls;
  return log->stop_after <= 0 || log->calls < log->stop_after;
}

/* Everything past load / tokenize / prefill / decode / sample, on the same model. */
static int test_more(ariadne_model* model, const int32_t* prompt, int32_t n_prompt) {
  ariadne_error err;
  char text[4096];

  /* Tokenizer facts and detokenizing. */
  CHECK(ariadne_model_has_tokenizer(model));
  CHECK(strcmp(ariadne_model_tokenizer_error(model), "") == 0);
  CHECK(ariadne_model_n_tokens(model) == 512);
  CHECK(strcmp(ariadne_token_text(model, 1), "<s>") == 0);
  CHECK(ariadne_token_text(model, 512) == NULL && ariadne_token_text(model, -1) == NULL);
  CHECK(ariadne_model_eos(model) == 2 && ariadne_model_is_end_of_generation(model, 2));
  CHECK(!ariadne_model_is_end_of_generation(model, 376));
  const int32_t little_girl[] = {376, 298, 315, 421};
  CHECK(ariadne_detokenize(model, little_girl, 4, false, text, sizeof text, &err) == 11);
  CHECK(memcmp(text, "little girl", 11) == 0); /* as a whole text: Spm drops the leading space */
  CHECK(ariadne_detokenize(model, little_girl, 4, false, text, 3, &err) == 11); /* reports the need */
  CHECK(ariadne_detokenize(model, little_girl, -1, false, text, sizeof text, &err) == -1);

  /* Chat templates: stories260K has none of its own; llama2's renders [INST] with the model's <s>. */
  CHECK(ariadne_model_chat_template(model) == NULL);
  const char* llama2 = ariadne_chat_builtin_template("llama2", &err);
  CHECK(llama2 != NULL && strstr(llama2, "[INST]") != NULL);
  CHECK(ariadne_chat_builtin_template("nope", &err) == NULL && strstr(err.message, "llama3") != NULL);
  ariadne_chat_message messages[2] = {{"system", "Be brief."}, {"user", "Hi"}};
  int32_t n_text = ariadne_chat_apply_template(model, llama2, messages, 2, true, text, sizeof text - 1, &err);
  CHECK(n_text > 0 && n_text < (int32_t)sizeof text);
  text[n_text] = '\0';
  CHECK(strncmp(text, "<s>[INST] ", 10) == 0 && strstr(text, "Be brief.") != NULL &&
        strstr(text, "Hi [/INST]") != NULL);
  CHECK(ariadne_chat_apply_template(model, NULL, messages, 2, true, text, sizeof text, &err) == -1);
  CHECK(strstr(err.message, "no chat template") != NULL);

  /* Memory: the estimate is made before any session; the KV part is the full cache of n_ctx tokens. */
  ariadne_session_params sp = {0};
  sp.n_ctx = 24;
  sp.n_threads = 1;
  sp.n_batch = 3;
  ariadne_memory_estimate mem;
  CHECK(ariadne_estimate_memory(model, &sp, &mem, &err) == 0);
  CHECK(mem.n_ctx == 24 && mem.weights > 0 && mem.kv > 0 && mem.activations > 0);
  CHECK(mem.total == mem.weights + mem.kv + mem.activations);
  ariadne_session* session = ariadne_session_create(model, &sp, &err);
  CHECK(session != NULL);
  CHECK(ariadne_session_n_ctx(session) == 24);
  CHECK(ariadne_session_cache_stats(session).bytes_capacity == mem.kv);
  CHECK(ariadne_peak_resident_bytes() > 0);

  /* Prefill in chunks of n_batch = 3 with progress: 3, 6, 8 of 8. */
  progress_log log = {{0}, 0, 0, 0};
  CHECK(ariadne_session_prefill_with_progress(session, prompt, n_prompt, on_progress, &log, &err) == 0);
  CHECK(log.calls == 3 && log.done[0] == 3 && log.done[1] == 6 && log.done[2] == 8 && log.total == 8);
  CHECK(ariadne_session_n_past(session) == 8);
  CHECK(memcmp(ariadne_session_tokens(session), prompt, sizeof(int32_t) * 8) == 0);
  ariadne_timings t = ariadne_session_timings(session);
  CHECK(t.n_prefill == 8 && t.n_decode == 0 && t.prefill_seconds > 0);

  /* Greedy through the sampler; the logits after the prompt are kept to compare with. */
  ariadne_sampler_params greedy = ariadne_sampler_default_params();
  greedy.temperature = 0.0f;
  ariadne_sampler* sampler = ariadne_sampler_create(model, &greedy, &err);
  CHECK(sampler != NULL && ariadne_sampler_seed(sampler) == 42);
  float first[512];
  memcpy(first, ariadne_session_logits(session), sizeof first);
  CHECK(ariadne_sampler_sample(sampler, first, &err) == 376);
  CHECK(ariadne_session_decode(session, 376, &err) == 0);
  CHECK(ariadne_session_decode(session, 298, &err) == 0);
  t = ariadne_session_timings(session);
  CHECK(t.n_prefill == 8 && t.n_decode == 2 && t.decode_seconds > 0);
  ariadne_session_reset_timings(session);
  CHECK(ariadne_session_timings(session).n_prefill == 0 && ariadne_session_timings(session).n_decode == 0);

  /* Truncate back to the prompt minus its last token, and feed that token again: the same logits. */
  CHECK(ariadne_session_truncate(session, 7, &err) == 0);
  CHECK(ariadne_session_n_past(session) == 7 && ariadne_session_logits(session) == NULL);
  CHECK(ariadne_session_cache_stats(session).entries == 7 * 5 * 4);
  CHECK(ariadne_session_truncate(session, 9, &err) == -1 && strstr(err.message, "9") != NULL);
  CHECK(ariadne_session_decode(session, prompt[7], &err) == 0);
  CHECK(memcmp(ariadne_session_logits(session), first, sizeof first) == 0);

  /* Cancelling: the chunks done stay. */
  ariadne_session_clear(session);
  progress_log stop = {{0}, 0, 0, 2};
  CHECK(ariadne_session_prefill_with_progress(session, prompt, n_prompt, on_progress, &stop, &err) == -1);
  CHECK(strstr(err.message, "cancelled") != NULL && stop.calls == 2);
  CHECK(ariadne_session_n_past(session) == 6);
  CHECK(ariadne_session_timings(session).n_prefill == 6);

  /* Sampler parameters: validation names the flag; a bias makes EOS the choice, ignore_eos bans it. */
  ariadne_sampler_params bad = ariadne_sampler_default_params();
  bad.top_p = 2.0f;
  CHECK(ariadne_sampler_params_validate(&bad, &err) == -1 && strstr(err.message, "--top-p") != NULL);
  CHECK(ariadne_sampler_params_validate(&greedy, &err) == 0);
  ariadne_logit_bias to_eos = {2, 1000.0f};
  ariadne_sampler_params biased = greedy;
  biased.logit_bias = &to_eos;
  biased.n_logit_bias = 1;
  ariadne_sampler* eos_sampler = ariadne_sampler_create(model, &biased, &err);
  CHECK(eos_sampler != NULL && ariadne_sampler_sample(eos_sampler, first, &err) == 2);
  biased.ignore_eos = true;
  ariadne_sampler* no_eos = ariadne_sampler_create(model, &biased, &err);
  CHECK(no_eos != NULL && ariadne_sampler_sample(no_eos, first, &err) == 376);
  ariadne_logit_bias outside = {700, 1.0f};
  biased.logit_bias = &outside;
  CHECK(ariadne_sampler_create(model, &biased, &err) == NULL && strstr(err.message, "700") != NULL);
  ariadne_sampler_free(no_eos);
  ariadne_sampler_free(eos_sampler);

  /* Seeded sampling repeats after a reset. */
  ariadne_sampler_params hot = ariadne_sampler_default_params();
  hot.temperature = 1.5f;
  hot.top_k = 0;
  hot.top_p = 1.0f;
  hot.min_p = 0.0f;
  hot.seed = 7;
  ariadne_sampler* random = ariadne_sampler_create(model, &hot, &err);
  CHECK(random != NULL);
  int32_t draws[8];
  for (int i = 0; i < 8; ++i) draws[i] = ariadne_sampler_sample(random, first, &err);
  ariadne_sampler_reset(random);
  int differ = 0;
  for (int i = 0; i < 8; ++i) CHECK(ariadne_sampler_sample(random, first, &err) == draws[i]);
  for (int i = 1; i < 8; ++i) differ += draws[i] != draws[0];
  CHECK(differ > 0); /* at temperature 1.5 over 512 ids the draws vary */
  ariadne_sampler_free(random);

  /* Text stream: pieces continue the prompt (leading space kept); a stop string across tokens cuts the text.
   */
  const char* stops[] = {"girl"};
  ariadne_text_stream* stream = ariadne_text_stream_create(model, stops, 1, &err);
  CHECK(stream != NULL);
  CHECK(ariadne_text_stream_begin(stream, prompt, n_prompt, &err) == 0);
  char streamed[64] = {0};
  size_t n_streamed = 0, n_piece = 0;
  int stopped = 0;
  for (int i = 0; i < 4 && !stopped; ++i) {
    stopped = ariadne_text_stream_push(stream, little_girl[i], &err);
    CHECK(stopped >= 0);
    const char* piece = ariadne_text_stream_take(stream, &n_piece);
    memcpy(streamed + n_streamed, piece, n_piece);
    n_streamed += n_piece;
  }
  CHECK(stopped == 1);
  size_t n_all = 0;
  CHECK(strcmp(ariadne_text_stream_text(stream, &n_all), " little ") == 0 && n_all == 8);
  CHECK(n_streamed == 8 && memcmp(streamed, " little ", 8) == 0);
  /* Begun again without stops reached: all text, finish releases what was held. */
  CHECK(ariadne_text_stream_begin(stream, prompt, n_prompt, &err) == 0);
  CHECK(ariadne_text_stream_push(stream, 376, &err) == 0 && ariadne_text_stream_push(stream, 298, &err) == 0);
  CHECK(ariadne_text_stream_finish(stream) == 0);
  CHECK(strcmp(ariadne_text_stream_text(stream, NULL), " little g") == 0);
  CHECK(ariadne_text_stream_push(stream, 9999, &err) == -1);
  ariadne_text_stream_free(stream);
  const char* empty[] = {""};
  CHECK(ariadne_text_stream_create(model, empty, 1, &err) == NULL && strstr(err.message, "empty") != NULL);

  ariadne_sampler_free(sampler);
  ariadne_session_free(session);
  return 0;
}

/* Progress of an XL3M selection: counts the calls; cancels at call `stop_at` when that is > 0. */
typedef struct segment_log {
  int calls;
  int32_t last_done, total;
  int stop_at;
} segment_log;

static bool on_segment(int32_t done, int32_t total, void* user) {
  segment_log* log = (segment_log*)user;
  ++log->calls;
  log->last_done = done;
  log->total = total;
  return log->stop_at <= 0 || log->calls < log->stop_at;
}

/* XL3M: a story 8x longer than the window, streamed in pieces, answered from the selected segments. */
static int test_xl3m(ariadne_model* model) {
  ariadne_error err;
  const char* story =
      "Once upon a time, there was a little girl named Lily. She loved to play with her red ball in the "
      "park. One day, she saw a big dog. The dog was sad because it lost its bone. Lily wanted to help. ";
  const char* question = "Lily found the bone under the";
  ariadne_xl3m_params xp = ariadne_xl3m_default_params();
  CHECK(xp.n_gen == 512 && xp.overlap == -1 && xp.snap && xp.add_bos);
  xp.n_gen = 16;
  xp.segment = 64;
  xp.overlap = 64;
  CHECK(ariadne_xl3m_create(model, &xp, &err) == NULL && strstr(err.message, "overlap") != NULL);
  xp.overlap = 8;
  ariadne_xl3m* x = ariadne_xl3m_create(model, &xp, &err);
  CHECK(x != NULL);
  CHECK(!ariadne_xl3m_get_stats(x).selected && ariadne_xl3m_key_context(x, NULL, 0) == 0);
  const size_t len = strlen(story);
  for (int rep = 0; rep < 60; ++rep) /* pieces of 37 bytes, cut anywhere */
    for (size_t pos = 0; pos < len; pos += 37)
      CHECK(ariadne_xl3m_add_text(x, story + pos, len - pos < 37 ? len - pos : 37, &err) == 0);
  CHECK(ariadne_xl3m_set_question_text(x, question, strlen(question), &err) == 0);

  ariadne_session_params sp = {0};
  sp.n_ctx = 512;
  sp.n_threads = 1;
  ariadne_session* session = ariadne_session_create(model, &sp, &err);
  CHECK(session != NULL);
  segment_log log = {0, 0, 0, 3};
  CHECK(ariadne_xl3m_select(x, session, on_segment, &log, &err) == -1 && strstr(err.message, "cancelled"));
  CHECK(ariadne_session_n_past(session) == 0);
  memset(&log, 0, sizeof log);
  CHECK(ariadne_xl3m_select(x, session, on_segment, &log, &err) == 0);
  const ariadne_xl3m_stats st = ariadne_xl3m_get_stats(x);
  CHECK(st.selected && !st.bypass && st.window == 512 && st.segment == 64 && st.overlap == 8);
  CHECK(st.n_prefix == 1 && st.n_input == st.n_prefix + st.n_body + st.n_question && st.n_input > 8 * 512);
  CHECK(log.calls == st.n_segments && log.last_done == st.n_segments && log.total == st.n_segments);
  CHECK(st.n_key <= 512 - 16 && st.n_chosen >= 1 && st.n_spans >= 1 && st.scored_tokens > st.n_body);
  CHECK(ariadne_session_n_past(session) == 0);

  /* The key context: BOS, the spans in order with "\n" between them, the question. */
  int32_t key[512];
  CHECK(ariadne_xl3m_key_context(x, key, 512) == st.n_key);
  CHECK(key[0] == 1);
  int32_t q[64];
  const int32_t n_q = ariadne_tokenize(model, question, strlen(question), false, false, q, 64, &err);
  CHECK(n_q == st.n_question && memcmp(key + st.n_key - n_q, q, sizeof(int32_t) * (size_t)n_q) == 0);
  int64_t content = 0, prev_end = -1;
  for (int32_t i = 0; i < st.n_spans; ++i) {
    int64_t b = 0, e = 0;
    CHECK(ariadne_xl3m_get_span(x, i, &b, &e, &err) == 0 && b > prev_end && e > b);
    content += e - b;
    prev_end = e;
  }
  CHECK(st.n_key == 1 + content + (st.n_spans - 1) + n_q);
  int chosen = 0, rank_sum = 0;
  for (int32_t i = 0; i < st.n_segments; ++i) {
    ariadne_xl3m_segment seg;
    CHECK(ariadne_xl3m_get_segment(x, i, &seg, &err) == 0 && seg.end - seg.begin == 64);
    chosen += seg.chosen;
    rank_sum += seg.rank;
  }
  CHECK(chosen == st.n_chosen && rank_sum == st.n_segments * (st.n_segments - 1) / 2);
  ariadne_xl3m_segment none;
  CHECK(ariadne_xl3m_get_segment(x, st.n_segments, &none, &err) == -1);

  /* The answer: prefill the key context and decode. */
  CHECK(ariadne_session_prefill(session, key, st.n_key, &err) == 0);
  CHECK(ariadne_session_logits(session) != NULL);
  ariadne_xl3m_free(x);

  /* An input that fits is fed as given: BOS + the text's ids + the question's. */
  x = ariadne_xl3m_create(model, &xp, &err);
  CHECK(x != NULL && ariadne_xl3m_add_text(x, story, len, &err) == 0);
  const int32_t extra[] = {376, 298};
  CHECK(ariadne_xl3m_set_question_tokens(x, extra, 2, &err) == 0);
  CHECK(ariadne_xl3m_select(x, session, NULL, NULL, &err) == 0 && ariadne_xl3m_get_stats(x).bypass);
  int32_t whole[256];
  const int32_t n_whole = ariadne_tokenize(model, story, len, true, false, whole, 254, &err);
  whole[n_whole] = 376;
  whole[n_whole + 1] = 298;
  CHECK(ariadne_xl3m_key_context(x, key, 512) == n_whole + 2 &&
        memcmp(key, whole, sizeof(int32_t) * (size_t)(n_whole + 2)) == 0);
  CHECK(ariadne_xl3m_set_question_tokens(x, extra, -1, &err) == -1);
  ariadne_xl3m_free(x);
  ariadne_session_free(session);
  return 0;
}

int main(void) {
  const char* dir = ARIADNE_SHARED_DIR "/fixtures/llama2c/stories260K";
  char model_path[1024], tok_path[1024];
  snprintf(model_path, sizeof model_path, "%s/stories260K.bin", dir);
  snprintf(tok_path, sizeof tok_path, "%s/tok512.bin", dir);
  FILE* probe = fopen(model_path, "rb");
  if (probe == NULL) {
    fprintf(stderr, "skipped: %s is absent\n", model_path);
    return 77;
  }
  fclose(probe);

  ariadne_error err;
  ariadne_model* model = ariadne_model_load(model_path, tok_path, &err);
  CHECK(model != NULL);
  CHECK(ariadne_model_n_vocab(model) == 512);
  CHECK(ariadne_model_bos(model) == 1);

  /* reference_greedy.json, run 2: BOS + "One day, Lily met a", then greedy tokens. */
  const int32_t expected[] = {1, 385, 328, 432, 317, 284, 316, 261, 376, 298, 315, 421, 395, 317, 426, 338};
  const char* prompt = "One day, Lily met a";
  int32_t ids[64];
  const int32_t n = ariadne_tokenize(model, prompt, strlen(prompt), true, false, ids, 64, &err);
  CHECK(n == 8);
  CHECK(memcmp(ids, expected, sizeof(int32_t) * 8) == 0);
  CHECK(ariadne_tokenize(model, prompt, strlen(prompt), true, false, ids, 2, &err) ==
        8); /* reports the need */

  char piece[16];
  CHECK(ariadne_token_to_piece(model, 385, false, piece, sizeof piece, &err) == 4 &&
        memcmp(piece, " One", 4) == 0);

  ariadne_session_params sp = {0};
  sp.n_ctx = 64;
  sp.n_threads = 2;
  ariadne_session* session = ariadne_session_create(model, &sp, &err);
  CHECK(session != NULL);
  CHECK(ariadne_session_logits(session) == NULL);
  CHECK(ariadne_session_prefill(session, ids, n, &err) == 0);

  ariadne_sampler_params greedy = ariadne_sampler_default_params();
  greedy.temperature = 0.0f;
  ariadne_sampler* sampler = ariadne_sampler_create(model, &greedy, &err);
  CHECK(sampler != NULL);
  for (int i = 8; i < 16; ++i) {
    const int32_t next = ariadne_sampler_sample(sampler, ariadne_session_logits(session), &err);
    CHECK(next == expected[i]);
    ariadne_sampler_accept(sampler, next);
    CHECK(ariadne_session_decode(session, next, &err) == 0);
  }
  CHECK(ariadne_session_n_past(session) == 16);

  const ariadne_cache_stats st = ariadne_session_cache_stats(session);
  CHECK(st.n_ctx == 64);
  CHECK(st.entries == 16 * 5 * 4); /* 16 tokens x 5 layers x 4 KV heads */
  CHECK(st.bytes > 0 && st.bytes <= st.bytes_capacity);

  /* Errors: a full context, an id outside the vocabulary, a missing file, a bad cache type. */
  int32_t many[64] = {0};
  CHECK(ariadne_session_prefill(session, many, 64, &err) == -1 && strstr(err.message, "context") != NULL);
  const int32_t bad = 9999;
  CHECK(ariadne_session_decode(session, bad, &err) == -1 && strstr(err.message, "vocabulary") != NULL);
  CHECK(ariadne_model_load("/nonexistent/model.gguf", NULL, &err) == NULL &&
        strstr(err.message, "nonexistent"));
  sp.kv_type = "q5_1";
  CHECK(ariadne_session_create(model, &sp, &err) == NULL && strstr(err.message, "q5_1") != NULL);

  ariadne_session_clear(session);
  CHECK(ariadne_session_n_past(session) == 0 && ariadne_session_cache_stats(session).bytes == 0);
  if (test_more(model, expected, 8) != 0) return 1;
  if (test_xl3m(model) != 0) return 1;

  ariadne_sampler_free(sampler);
  ariadne_session_free(session);
  ariadne_model_free(model);
  printf("c api: ok\n");
  return 0;
}
