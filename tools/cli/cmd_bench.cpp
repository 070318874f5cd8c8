// ariadne bench: prompt-processing and generation speed, llama-bench's counterpart (docs/benchmarks.md).
// Prints a markdown table shaped like llama-bench's (model | size | params | threads | test | t/s), or with
// --json one JSON array with a record per test (llama-bench's -o json idea, plus memory fields).
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_attention.h"
#include "cache_type.h"
#include "commands.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "kv_policy_flags.h"
#include "runtime/bench.h"
#include "runtime/chelsea_sidecar.h"
#include "runtime/session.h"

namespace ariadne::cli {

namespace {

struct BenchCliOptions {
  std::string model;
  std::string n_prompt = "512";
  std::string n_gen = "128";
  std::string n_depth = "0";
  std::string threads;  // empty: every core
  std::string repetitions = "5";
  std::string batch = "512";
  std::string cache_type = "f32";
  bool exact_matmul = false;
  bool no_warmup = false;
  bool json = false;
  AttentionFlags attn;     // --attn and its parameters
  bool attn_only = false;  // time one layer's attention alone (bench_attention.h)
  KvPolicyFlags kv;        // --kv-policy and its parameters
};

// Numbers are parsed here rather than by CLI11 so that every bad value gets the same kind of message (naming
// the flag and what was expected) and exit status 1.
bool parse_integer(const std::string& text, int64_t* value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return !text.empty() && ec == std::errc() && ptr == end;
}

int64_t parse_count(const std::string& text, const char* flag, int64_t min) {
  int64_t v = 0;
  if (!parse_integer(text, &v) || v < min)
    fail("{}: '{}' is not a valid value (expected an integer >= {})", flag, text, min);
  return v;
}

std::vector<int64_t> parse_counts(const std::string& text, const char* flag) {
  std::vector<int64_t> values;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int64_t v = 0;
    if (!parse_integer(item, &v) || v < 0)
      fail("{}: '{}' is not a token count (expected integers >= 0 separated by commas, e.g. 512 or 0,4096)",
           flag, item);
    values.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return values;
}

BenchOptions to_bench_options(const BenchCliOptions& c) {
  BenchOptions o;
  o.n_prompt = parse_counts(c.n_prompt, "-p");
  o.n_gen = parse_counts(c.n_gen, "-n");
  o.n_depth = parse_counts(c.n_depth, "-d");
  o.repetitions = static_cast<int>(std::min<int64_t>(parse_count(c.repetitions, "-r", 1), INT32_MAX));
  o.n_batch = parse_count(c.batch, "-b", 1);
  o.n_threads = c.threads.empty()
                    ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                    : static_cast<int>(std::min<int64_t>(parse_count(c.threads, "-t", 1), INT32_MAX));
  o.warmup = !c.no_warmup;
  validate_bench_options(o);
  return o;
}

std::string format_size(uint64_t bytes) {
  if (bytes < 1024ull * 1024 * 1024) return fmt::format("{:.2f} MiB", bytes / 1048576.0);
  return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
}

std::string format_params(int64_t n) {
  if (n < 1000000000) return fmt::format("{:.2f} M", n / 1e6);
  return fmt::format("{:.2f} B", n / 1e9);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Display width of UTF-8 text ("±" is two bytes, one column).
size_t columns(const std::string& s) {
  size_t n = 0;
  for (const unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// llama-bench's layout: the model column left-aligned, the others right-aligned.
class MarkdownTable {
 public:
  MarkdownTable(size_t model_width, size_t test_width)
      : widths_{std::max<size_t>(model_width, 5), 10, 10, 7, std::max<size_t>(test_width, 4), 20} {}

  void header() const {
    row({"model", "size", "params", "threads", "test", "t/s"});
    std::string line = "|";
    for (size_t i = 0; i < widths_.size(); ++i)
      line += " " + std::string(widths_[i] - 1, '-') + (i == 0 ? "-" : ":") + " |";
    std::printf("%s\n", line.c_str());
  }

  void row(const std::vector<std::string>& cells) const {
    std::string line = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(widths_[i] > columns(cells[i]) ? widths_[i] - columns(cells[i]) : 0, ' ');
      line += " " + (i == 0 ? cells[i] + pad : pad + cells[i]) + " |";
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  std::vector<size_t> widths_;
};

// One self-overwriting status line on stderr, only when stderr is a terminal and the output is not JSON.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled && ::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { clear(); }

  void show(const BenchProgress& p, int repetitions) {
    if (!enabled_) return;
    std::string what;
    switch (p.phase) {
      case BenchProgress::Phase::Warmup:
        what = "warmup";
        break;
      case BenchProgress::Phase::Depth:
        what = fmt::format("run {}/{}: filling depth {}/{}", p.repetition + 1, repetitions, p.tokens_done,
                           p.tokens_total);
        break;
      case BenchProgress::Phase::Timed:
        what = fmt::format("run {}/{}: timing", p.repetition + 1, repetitions);
        break;
    }
    std::fprintf(stderr, "\rbench %zu/%zu %s: %s\033[K", p.test_index + 1, p.n_tests, p.test->name().c_str(),
                 what.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  // Called before anything goes to stdout so that a table row never lands after a half-drawn status line.
  void clear() {
    if (!drawn_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
};

int run_bench_command(const BenchCliOptions& c) {
  if (c.model.empty()) fail("bench needs -m MODEL (a GGUF file, Hugging Face folder or llama2.c .bin)");
  BenchOptions o = to_bench_options(c);
  if (c.attn_only)
    return run_attention_only_bench(c.model, c.attn, o.n_depth, o.n_threads, o.repetitions,
                                    parse_cache_type(c.cache_type), c.json);
  // What the process held before the model: code, libraries, stacks. Peak RSS minus this is what the run
  // added, the number to compare with the prediction.
  const uint64_t baseline_rss = peak_resident_bytes();
  std::shared_ptr<const ModelSource> source = open_model(c.model);
  const int64_t n_ctx = bench_context(o);

  // The KV policy: its budget counts the generated tokens of the largest tg test after each depth.
  int64_t generation = 0;
  for (const int64_t n : o.n_gen) generation = std::max(generation, n);
  KvPolicyConfig kv_config = kv_policy_config(c.kv, generation);
  std::string kv_note;
  if (kv_config.name == "chelsea" && c.kv.sidecar != "none") {
    const ChelseaOutliers found = load_chelsea_outliers(*source, kv_config.budget, c.kv.sidecar);
    kv_config.outliers = found.outliers;
    kv_config.outliers_source = found.path;
    if (found.outliers.empty()) kv_note = found.note;
  }
  std::shared_ptr<KvPolicy> policy = kv_config.name == "full" ? nullptr : make_kv_policy(kv_config);
  const std::string kv_description =
      policy == nullptr ? "full" : policy->describe() + (kv_note.empty() ? "" : "; " + kv_note);
  if (policy != nullptr && !c.json) std::fprintf(stderr, "ariadne: kv policy: %s\n", kv_description.c_str());

  // Refuse before any work (no session, no pages touched) when the run cannot fit.
  const DType kv_type = parse_cache_type(c.cache_type);
  const MemoryEstimate predicted =
      estimate_bench_memory(*source, n_ctx, o.n_batch, o.n_threads, kv_type, policy.get());
  check_bench_memory(c.model, o, predicted, available_memory_bytes());

  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = o.n_threads;
  so.n_batch = o.n_batch;
  so.kv_type = kv_type;
  so.exact_matmul = c.exact_matmul;
  so.kv_policy = policy;
  std::unique_ptr<Session> session;
  try {
    session = std::make_unique<Session>(source, so);
  } catch (const Error& e) {
    fail("{} (bench sizes the context from -d + max(-p, -n): lower those)", e.what());
  }
  // One variant per attention method of --attn, all timed on the same filled depths.
  std::vector<BenchAttention> variants;
  for (const std::string& method : bench_attention_methods(c.attn.method))
    variants.emplace_back(c.attn, method, *source);
  o.n_variants = static_cast<int>(variants.size());
  auto test_name = [&](const BenchTest& t) {
    return variants.size() > 1
               ? fmt::format("{} [{}]", t.name(), variants[static_cast<size_t>(t.variant)].method())
               : t.name();
  };

  const ModelSummary model = summarize_model(*source);
  const uint64_t per_token = kv_bytes_per_token(source->config, kv_type);
  size_t test_width = 0;
  for (const BenchTest& t : bench_plan(o)) test_width = std::max(test_width, test_name(t).size());
  const MarkdownTable table(model.description.size(), test_width);
  if (!c.json) table.header();

  ProgressLine progress(!c.json);
  nlohmann::json records = nlohmann::json::array();
  uint64_t kv_held = 0;
  std::vector<BenchResult> done;
  auto on_result = [&](const BenchResult& r) {
    kv_held = std::max(kv_held, r.kv_bytes);
    done.push_back(r);
    BenchAttention& attention = variants[static_cast<size_t>(r.test.variant)];
    const nlohmann::json attn = attention.take(r.test.n_gen);
    if (!c.json) {
      progress.clear();
      table.row({model.description, format_size(model.weight_bytes), format_params(model.n_params),
                 std::to_string(o.n_threads), test_name(r.test),
                 fmt::format("{:.2f} ± {:.2f}", r.rate.mean, r.rate.stddev)});
      return;
    }
    std::vector<double> ns(r.samples_ns.begin(), r.samples_ns.end());
    const SampleStats ns_stats = sample_stats(ns);
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, count] : model.type_counts)
      types[type] = {{"tensors", count}, {"bytes", model.type_bytes.at(type)}};
    nlohmann::json j;
    j["model_filename"] = c.model;
    j["model_type"] = model.description;
    j["architecture"] = model.architecture;
    j["model_size"] = model.weight_bytes;
    j["model_n_params"] = model.n_params;
    j["weight_types"] = std::move(types);
    j["n_threads"] = o.n_threads;
    j["n_batch"] = o.n_batch;
    j["n_ctx"] = session->n_ctx();
    j["test"] = r.test.name();
    j["attn"] = attention.method();
    j["n_prompt"] = r.test.n_prompt;
    j["n_gen"] = r.test.n_gen;
    j["n_depth"] = r.test.n_depth;
    j["repetitions"] = r.samples_ns.size();
    j["warmup"] = o.warmup;
    j["test_time"] = utc_now();
    j["samples_ns"] = r.samples_ns;
    j["samples_ts"] = tokens_per_second(r.samples_ns, r.test.n_tokens());
    j["avg_ns"] = ns_stats.mean;
    j["stddev_ns"] = ns_stats.stddev;
    j["avg_ts"] = r.rate.mean;
    j["stddev_ts"] = r.rate.stddev;
    j["median_ts"] = r.rate.median;
    j["kv_bytes"] = r.kv_bytes;
    j["kv_bytes_per_token"] = per_token;
    j["kv_policy"] = kv_config.name;
    j["kv_policy_description"] = kv_description;
    if (kv_config.name != "full") j["kv_budget"] = kv_config.budget;  // full has none
    j["kv_budget_entries"] = r.kv_budget;
    j["kv_compressions"] = r.kv_compressions;
    j["kv_compress_seconds"] = r.kv_compress_seconds;
    double timed_seconds = 0;
    for (const uint64_t ns : r.samples_ns) timed_seconds += static_cast<double>(ns) * 1e-9;
    j["kv_compress_share"] = timed_seconds > 0 ? r.kv_compress_seconds / timed_seconds : 0.0;
    j["peak_rss_bytes"] = r.peak_rss_bytes;
    j["baseline_rss_bytes"] = baseline_rss;
    j["predicted_bytes"] = {{"weights", predicted.weights},
                            {"kv", predicted.kv},
                            {"activations", predicted.activations},
                            {"total", predicted.total()}};
    if (attention.active()) j["attention"] = attn;
    records.push_back(std::move(j));
  };
  auto on_progress = [&](const BenchProgress& p) { progress.show(p, o.repetitions); };
  run_bench(*session, o, on_result, on_progress,
            [&](int v) { variants[static_cast<size_t>(v)].install(*session); });
  progress.clear();

  if (c.json) {
    std::printf("%s\n", records.dump(2).c_str());
    return 0;
  }
  std::printf("\nKV cache: %llu bytes per token (%s K and V), at most %.2f MiB held (context %lld tokens)\n",
              static_cast<unsigned long long>(per_token), std::string(dtype_name(kv_type)).c_str(),
              kv_held / 1048576.0, static_cast<long long>(n_ctx));
  std::printf(
      "memory: predicted %.2f MiB (weights %.2f + KV %.2f + activations %.2f), peak resident %.2f MiB "
      "(%.2f MiB before loading the model)\n",
      predicted.total() / 1048576.0, predicted.weights / 1048576.0, predicted.kv / 1048576.0,
      predicted.activations / 1048576.0, peak_resident_bytes() / 1048576.0, baseline_rss / 1048576.0);
  for (const BenchAttention& a : variants) a.print_summary();
  if (policy != nullptr) {
    // What the policy did in each test's timed runs: the cache it left, its compressions, their share.
    std::printf("\nKV policy: %s\n\n", kv_description.c_str());
    std::printf(
        "| test | KV held MiB | budget (entries/head) | compressions | compress s | share of time |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (const BenchResult& r : done) {
      double seconds = 0;
      for (const uint64_t ns : r.samples_ns) seconds += static_cast<double>(ns) * 1e-9;
      std::printf("| %s | %.2f | %lld | %lld | %.4f | %.1f%% |\n", r.test.name().c_str(),
                  r.kv_bytes / 1048576.0, static_cast<long long>(r.kv_budget),
                  static_cast<long long>(r.kv_compressions), r.kv_compress_seconds,
                  seconds > 0 ? 100.0 * r.kv_compress_seconds / seconds : 0.0);
    }
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<BenchCliOptions>();
  CLI::App* cmd =
      app.add_subcommand("bench", "Measure prompt-processing and generation speed (like llama-bench)");
  cmd->add_option("-m,--model", o->model, "Model: GGUF file, Hugging Face folder or llama2.c .bin");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt lengths to time (comma list; 0 skips)")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens to time (comma list; 0 skips)")
      ->capture_default_str();
  cmd->add_option("-d,--n-depth", o->n_depth, "Tokens already in the KV cache (comma list)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)");
  cmd->add_option("-r,--repetitions", o->repetitions, "Timed runs per test")->capture_default_str();
  cmd->add_option("-b,--batch-size", o->batch, "Tokens per forward call when prefilling")
      ->capture_default_str();
  cmd->add_option("--cache-type", o->cache_type,
                  "KV cache type: f32, f16, bf16, q8_0 (llama-bench: -ctk/-ctv)")
      ->capture_default_str();
  cmd->add_flag("--exact-matmul", o->exact_matmul, "Quantized weights with f32 activations (slower, exact)");
  cmd->add_flag("--no-warmup", o->no_warmup, "Skip the untimed warmup run of each test");
  cmd->add_flag("--json", o->json, "Print one JSON array with a record per test");
  add_kv_policy_flags(cmd, o->kv);
  add_attention_flags(cmd, o->attn);
  cmd->get_option("--attn")->description(
      "Decode attention: dense or one of the top-k methods; a comma list (dense,hata) times each on the same "
      "filled depth; hash-random@BITS is the random hash at that code length");
  cmd->add_flag(
      "--attn-only", o->attn_only,
      "Time one layer's decode attention alone at each depth (-d), dense against --attn, split into "
      "encode / score / select / attend");
  cmd->callback([o, &action] { action = [o] { return run_bench_command(*o); }; });
}

}  // namespace ariadne::cli
