#include "bench_attention.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "core/error.h"
#include "runtime/attention_bench.h"
#include "runtime/hata.h"

namespace ariadne::cli {

BenchAttention::BenchAttention(const AttentionFlags& flags, const std::string& method,
                               const ModelSource& source)
    : method_(method) {
  AttentionFlags f = flags;
  f.method = method;
  // hash-random@BITS: the random hash at that code length, beside others on the same fill.
  if (const size_t at = method.find('@'); at != std::string::npos) {
    f.method = method.substr(0, at);
    const std::string bits = method.substr(at + 1);
    if (f.method != "hash-random")
      fail("--attn: '{}': only hash-random takes @BITS (hata's code length is its sidecar's)", method);
    try {
      size_t used = 0;
      f.hash_bits = std::stoll(bits, &used);
      if (used != bits.size() || f.hash_bits < 64 || f.hash_bits > 4096 || f.hash_bits % 64 != 0)
        throw std::invalid_argument(bits);
    } catch (const std::exception&) {
      fail(
          "--attn: '{}': expected hash-random@BITS with BITS a multiple of 64 in [64, 4096], e.g. "
          "hash-random@64",
          method);
    }
  }
  // A dense variant beside sparse ones ignores their flags; dense alone refuses them as run does.
  if (method != "dense" || flags.method == "dense")
    selector_ = make_sparse_selector(attention_config(f), source);
}

void BenchAttention::install(Session& session) const {
  session.kv().set_selector(selector_);
}

std::vector<std::string> bench_attention_methods(const std::string& list) {
  std::vector<std::string> methods;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    std::string m = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (m.empty()) fail("--attn: '{}' has an empty method (expected e.g. dense,hata)", list);
    if (std::find(methods.begin(), methods.end(), m) != methods.end())
      fail("--attn: '{}' names {} twice", list, m);
    methods.push_back(std::move(m));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return methods;
}

nlohmann::json BenchAttention::take(int64_t n_gen) {
  if (!selector_) return nullptr;
  const SparseAttentionStats now = selector_->stats();
  SparseAttentionStats d;
  d.steps = now.steps - last_.steps;
  d.sparse_heads = now.sparse_heads - last_.sparse_heads;
  d.dense_heads = now.dense_heads - last_.dense_heads;
  d.entries_read = now.entries_read - last_.entries_read;
  d.entries_held = now.entries_held - last_.entries_held;
  d.encode_seconds = now.encode_seconds - last_.encode_seconds;
  d.score_seconds = now.score_seconds - last_.score_seconds;
  d.select_seconds = now.select_seconds - last_.select_seconds;
  last_ = now;
  // The stats also count warmup and depth filling; per token is what a timed decode step spends on average.
  const double tokens =
      d.steps > 0 ? static_cast<double>(d.steps) / static_cast<double>(std::max<int64_t>(1, n_gen)) : 0;
  auto per_token = [&](double s) { return tokens > 0 ? s / tokens : 0.0; };
  if (n_gen > 0 && d.sparse_heads > 0)
    lines_.push_back(fmt::format(
        "  tg{}: per decode token encode {:.1f} us, score {:.1f} us, select {:.1f} us; {:.2f}% of the "
        "entries read",
        n_gen, 1e6 * per_token(d.encode_seconds), 1e6 * per_token(d.score_seconds),
        1e6 * per_token(d.select_seconds),
        d.entries_held > 0 ? 100.0 * static_cast<double>(d.entries_read) / static_cast<double>(d.entries_held)
                           : 0.0));
  return {{"description", selector_->describe()}, {"steps", d.steps},
          {"sparse_heads", d.sparse_heads},       {"dense_heads", d.dense_heads},
          {"entries_read", d.entries_read},       {"entries_held", d.entries_held},
          {"encode_seconds", d.encode_seconds},   {"score_seconds", d.score_seconds},
          {"select_seconds", d.select_seconds},   {"side_bytes", selector_->bytes()}};
}

void BenchAttention::print_summary() const {
  if (!selector_) return;
  std::printf("attention: %s\n", selector_->describe().c_str());
  for (const std::string& l : lines_) std::printf("%s\n", l.c_str());
}

int run_attention_only_bench(const std::string& model_path, const AttentionFlags& flags,
                             const std::vector<int64_t>& depths, int n_threads, int repetitions,
                             DType kv_type, bool json) {
  const std::unique_ptr<ModelSource> source = open_model(model_path);
  SparseAttentionConfig config = attention_config(flags);
  if (config.method == "dense")
    fail("--attn-only compares dense attention with a sparse one: add --attn METHOD");
  HataWeights weights;
  const HataWeights* w = nullptr;
  if (config.method == "hata") {
    const std::string path = config.sidecar.empty() ? hata_sidecar_path(source->path) : config.sidecar;
    if (std::filesystem::exists(path)) {
      weights = read_hata_sidecar(path);
      check_hata_weights(weights, *source, path);
      w = &weights;
    }
  }
  AttentionBenchOptions o;
  o.depths = depths;
  o.n_threads = n_threads;
  o.repetitions = repetitions;
  o.kv_type = kv_type;
  const std::vector<AttentionBenchRow> rows = bench_attention(source->config, config, w, o);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const AttentionBenchRow& r : rows)
      out.push_back({{"depth", r.depth},
                     {"method", r.method},
                     {"k", r.k},
                     {"n_threads", n_threads},
                     {"kv_type", std::string(dtype_name(kv_type))},
                     {"total_seconds", r.total},
                     {"encode_seconds", r.encode},
                     {"score_seconds", r.score},
                     {"select_seconds", r.select},
                     {"attend_seconds", r.attend},
                     {"kv_bytes", r.kv_bytes},
                     {"side_bytes", r.side_bytes},
                     {"hata_weights", w != nullptr}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("one layer of %s: %lld query heads, %lld KV heads of %lld, %s cache, %d threads%s\n\n",
              model_path.c_str(), static_cast<long long>(source->config.n_head),
              static_cast<long long>(source->config.n_head_kv),
              static_cast<long long>(source->config.head_dim), std::string(dtype_name(kv_type)).c_str(),
              n_threads,
              config.method == "hata" && w == nullptr ? " (no sidecar: random weights, the same path)" : "");
  std::printf("| %7s | %-11s | %7s | %10s | %9s | %9s | %9s | %9s | %7s | %6s |\n", "depth", "method", "k",
              "total us", "encode", "score", "select", "attend", "speedup", "codes");
  std::printf(
      "| ------: | :---------- | ------: | ---------: | --------: | --------: | --------: | --------: | "
      "------: | -----: |\n");
  double dense = 0;
  for (const AttentionBenchRow& r : rows) {
    if (r.method == "dense") dense = r.total;
    std::printf(
        "| %7lld | %-11s | %7lld | %10.1f | %9.1f | %9.1f | %9.1f | %9.1f | %6.2fx | %5.2f%% |\n",
        static_cast<long long>(r.depth), r.method.c_str(), static_cast<long long>(r.k), 1e6 * r.total,
        1e6 * r.encode, 1e6 * r.score, 1e6 * r.select, 1e6 * r.attend, r.total > 0 ? dense / r.total : 0.0,
        r.kv_bytes > 0 ? 100.0 * static_cast<double>(r.side_bytes) / static_cast<double>(r.kv_bytes) : 0.0);
  }
  return 0;
}

}  // namespace ariadne::cli
