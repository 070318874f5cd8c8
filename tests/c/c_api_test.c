/* The public C API, used from a C translation unit: load stories260K with its tokenizer, tokenize the
 * prompt of ../shared/fixtures/llama2c/stories260K/reference_greedy.json, prefill, decode greedily step by
 * step through the sampler, and compare with the reference run's tokens; cache statistics; errors.
 * Exit code 77 (ctest: skipped) when ../shared is absent. */
#include <stdio.h>
#include <string.h>

#include "ariadne/ariadne.h"

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                        \
    }                                                                  \
  } while (0)

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
  CHECK(ariadne_tokenize(model, prompt, strlen(prompt), true, false, ids, 2, &err) == 8); /* reports the need */

  char piece[16];
  CHECK(ariadne_token_to_piece(model, 385, false, piece, sizeof piece, &err) == 4 && memcmp(piece, " One", 4) == 0);

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
  CHECK(ariadne_model_load("/nonexistent/model.gguf", NULL, &err) == NULL && strstr(err.message, "nonexistent"));
  sp.kv_type = "q5_1";
  CHECK(ariadne_session_create(model, &sp, &err) == NULL && strstr(err.message, "q5_1") != NULL);

  ariadne_session_clear(session);
  CHECK(ariadne_session_n_past(session) == 0 && ariadne_session_cache_stats(session).bytes == 0);

  ariadne_sampler_free(sampler);
  ariadne_session_free(session);
  ariadne_model_free(model);
  printf("c api: ok\n");
  return 0;
}
