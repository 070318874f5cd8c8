#include "attention_flags.h"

#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace ariadne::cli {

void add_attention_flags(CLI::App* cmd, AttentionFlags& f) {
  cmd->add_option("--attn", f.method,
                  fmt::format("Decode attention: dense or {} (prompts are always read whole)",
                              fmt::join(sparse_attention_methods(), ", ")))
      ->capture_default_str();
  f.topk_opt =
      cmd->add_option("--topk", f.topk,
                      "Entries each KV head reads per decode step: a fraction (1/16) or a count (512); "
                      "default min(n, max(512, n/64))");
  f.dense_opt =
      cmd->add_option("--attn-dense-layers", f.dense_layers, "Layers read whole: a comma list, or none")
          ->capture_default_str();
  f.sink_opt = cmd->add_option("--attn-sink", f.sink, "First entries always read (inside the budget)");
  f.recent_opt = cmd->add_option("--attn-recent", f.recent,
                                 "Last entries always read (inside the budget; the current token always is)");
  f.score_opt = cmd->add_option("--attn-score", f.score,
                                "hata, hash-random: norm (Hamming agreement times |k|) or hamming scores "
                                "(default: the sidecar's, norm)");
  f.follow_opt = cmd->add_option("--attn-follow", f.follow,
                                 "on or off: also read the entry after each query head's most attended one "
                                 "of the previous step (inside the budget)")
                     ->capture_default_str();
  f.bits_opt = cmd->add_option("--hash-bits", f.hash_bits,
                               "hash-random: bits per code, a multiple of 64 (hata takes its sidecar's)")
                   ->capture_default_str();
  f.hata_opt = cmd->add_option(
      "--hata", f.hata, "HATA weights from `ariadne calibrate --method hata` (default: <model>.hata.gguf)");
}

SparseAttentionConfig attention_config(const AttentionFlags& f) {
  SparseAttentionConfig c;
  c.method = f.method;
  if (f.method == "dense") {
    for (const CLI::Option* o : {f.topk_opt, f.dense_opt, f.sink_opt, f.recent_opt, f.hata_opt, f.score_opt,
                                 f.follow_opt, f.bits_opt})
      if (o != nullptr && o->count() > 0)
        fail("{} applies to sparse attention: add --attn {}", o->get_name(),
             fmt::join(sparse_attention_methods(), "|"));
  }
  if (f.hata_opt != nullptr && f.hata_opt->count() > 0 && f.method != "hata")
    fail("--hata names HATA's weights: it applies to --attn hata, not {}", f.method);
  if (!f.score.empty()) {
    if (f.method != "hata" && f.method != "hash-random")
      fail("--attn-score applies to --attn hata and hash-random, not {}", f.method);
    HataScore score;
    if (!parse_hata_score(f.score, &score)) fail("--attn-score: '{}' is not norm or hamming", f.score);
    c.score = score;
  }
  if (!f.topk.empty()) c.topk = parse_topk(f.topk, "--topk");
  c.dense_layers = parse_layer_list(f.dense_layers, "--attn-dense-layers");
  c.follow = parse_follow(f.follow, "--attn-follow");
  if (f.bits_opt != nullptr && f.bits_opt->count() > 0 && f.method != "hash-random")
    fail("--hash-bits sets hash-random's code length; {} takes its own (hata: the sidecar's)", f.method);
  c.rbits = f.hash_bits;
  c.sink = f.sink;
  c.recent = f.recent;
  c.sidecar = f.hata;
  validate_sparse_attention(c);
  return c;
}

void set_attention_params(const AttentionFlags& f, ariadne_session_params* p) {
  const SparseAttentionConfig c = attention_config(f);
  if (c.method == "dense") return;
  p->attn = f.method.c_str();
  p->attn_topk = c.topk;
  p->attn_dense_layers = f.dense_layers.c_str();
  p->attn_sink = static_cast<int32_t>(c.sink);
  p->attn_recent = static_cast<int32_t>(c.recent);
  p->hata_sidecar = f.hata.empty() ? nullptr : f.hata.c_str();
  p->attn_score = f.score.empty() ? nullptr : f.score.c_str();
}

void print_attention_summary(const api::Session& session) {
  const ariadne_attention_stats a = session.attention_stats();
  const double share = a.entries_held > 0
                           ? 100.0 * static_cast<double>(a.entries_read) / static_cast<double>(a.entries_held)
                           : 0.0;
  std::fprintf(stderr,
               "ariadne: attention: %s | sparse head reads %lld (dense %lld) took %.1f%% of their entries\n",
               session.attention().c_str(), static_cast<long long>(a.sparse_heads),
               static_cast<long long>(a.dense_heads), share);
}

nlohmann::json attention_json(const api::Session& session) {
  const ariadne_attention_stats a = session.attention_stats();
  return {{"description", session.attention()}, {"steps", a.steps},
          {"sparse_heads", a.sparse_heads},     {"dense_heads", a.dense_heads},
          {"entries_read", a.entries_read},     {"entries_held", a.entries_held},
          {"encode_seconds", a.encode_seconds}, {"score_seconds", a.score_seconds},
          {"select_seconds", a.select_seconds}, {"side_bytes", a.side_bytes}};
}

}  // namespace ariadne::cli
