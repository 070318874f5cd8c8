// `ariadne demo`: the README's main job. Builds long documents of noise sentences with facts hidden at
// several depths (the evaluation suite's generators), asks the model for each fact with every method given,
// and prints the answers next to the expected ones with the time and KV-cache memory each method took: first
// documents that fit the model's trained window (full attention next to the KV-cache methods), then
// documents several times longer (XL3M next to plain attention).
// Runs on Ariadne's own default model (models/ariadne-default.gguf) unless -m names another.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "eval/methods.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "formats/model_source.h"
#include "runtime/hata.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::cli {

namespace {

constexpr const char* kDefaultModel = "models/ariadne-default.gguf";
constexpr const char* kDefaultMethods = "full,chelsea:0.2,streaming:0.2,snapkv:0.2";

struct DemoOptions {
  std::string model;
  std::string tasks = "passkey,niah_single_noise,kv";
  std::string methods;  // empty: kDefaultMethods, and hata:1/16 when the model has hash weights
  int64_t length = 0;   // 0: the model's trained context, at most 4096
  int count = 3;
  int64_t beyond = 8;  // documents this many times the trained window (0: none)
  std::string beyond_tasks = "passkey,niah_single_noise";
  std::string beyond_methods = "xl3m,full";
  int beyond_count = 1;
  uint64_t seed = 20261128;
  int threads = 0;
  bool json = false;
  std::string hata;  // hata's weights (default: <model>.hata.gguf)
};

// The default model: in the working directory's models/, else in the source tree above the binary
// (build/bin/ariadne -> models/).
std::string find_default_model() {
  std::vector<std::filesystem::path> tried = {std::filesystem::path(kDefaultModel)};
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back(exe.parent_path().parent_path().parent_path() / kDefaultModel);
  for (const auto& p : tried)
    if (std::filesystem::exists(p)) return p.string();
  std::string list;
  for (const auto& p : tried) list += (list.empty() ? "" : ", ") + p.string();
  fail("the default model is not here (looked for {}); pass one with -m MODEL", list);
}

std::string shorten(std::string s, size_t width) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  if (s.size() > width) s = s.substr(0, width - 3) + "...";
  return s;
}

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

// One part of the demo: documents of one length, every method on each.
struct Section {
  std::string title;
  int64_t length = 0;
  std::vector<eval::TaskSample> samples;
  std::vector<eval::MethodSpec> methods;
};

std::vector<eval::TaskSample> make_samples(const eval::TaskGenerator& generator,
                                           const std::vector<std::string>& tasks, int64_t length, int count) {
  std::vector<eval::TaskSample> samples;
  for (const std::string& task : tasks) {
    for (int i = 0; i < count; ++i) {
      // Facts spread over the document: depths 1/(2n), 3/(2n), ... of the way in.
      const double depth = eval::task_takes_depth(task) ? 100.0 * (2 * i + 1) / (2.0 * count) : -1.0;
      samples.push_back(generator.generate(task, length, i, depth));
    }
  }
  return samples;
}

// Runs every method on every sample of the section, printing a row per document and a summary per method
// (unless json); the results are appended to `json`.
void run_section(const Section& section, eval::Runner& runner, bool quiet, nlohmann::json& json) {
  const bool live = !quiet && isatty(STDERR_FILENO);
  if (!quiet) {
    std::printf("%s\n", section.title.c_str());
    std::printf("%-3s %-18s %6s  %-24s", "#", "task", "depth", "expected");
    for (const auto& m : section.methods) std::printf("  %-26s", m.text.c_str());
    std::printf("\n");
  }
  std::vector<eval::SampleResult> results;
  for (size_t i = 0; i < section.samples.size(); ++i) {
    const eval::TaskSample& s = section.samples[i];
    const double depth = s.needles.empty() ? 0.0 : s.needles.front().depth;
    if (!quiet) {
      std::printf("%-3zu %-18s %5.0f%%  %-24s", i + 1, s.task.c_str(), depth,
                  shorten(fmt::format("{}", fmt::join(s.references, ", ")), 24).c_str());
      std::fflush(stdout);
    }
    for (const eval::MethodSpec& m : section.methods) {
      if (live)
        std::fprintf(stderr, "\r(%s: reading %lld tokens...)", m.text.c_str(),
                     static_cast<long long>(s.n_tokens));
      const eval::SampleResult r = runner.run(s, m);
      if (live) std::fprintf(stderr, "\r%*s\r", 48, "");
      results.push_back(r);
      json.push_back(eval::to_json(r));
      if (!quiet) {
        std::printf("  %s %-24s", r.score >= 1.0 ? "ok" : (r.score > 0 ? "~ " : "x "),
                    shorten(r.prediction, 24).c_str());
        std::fflush(stdout);
      }
    }
    if (!quiet) std::printf("\n");
  }
  if (quiet) return;
  std::printf("\n%-16s %9s %12s %12s %16s %12s\n", "method", "correct", "s/document", "decode t/s",
              "KV cache peak", "tokens read");
  for (const eval::MethodSpec& m : section.methods) {
    double correct = 0, seconds = 0, decode_s = 0;
    int64_t generated = 0, read = 0;
    uint64_t kv_peak = 0;
    int n = 0;
    for (const eval::SampleResult& r : results) {
      if (r.method != m.text) continue;
      ++n;
      correct += r.score;
      // Selecting a context (XL3M's scoring passes) is part of answering.
      const double selecting = r.selection.is_object() ? r.selection.value("seconds", 0.0) : 0.0;
      seconds += selecting + r.prefill_seconds + r.decode_seconds;
      decode_s += r.decode_seconds;
      generated += r.n_generated;
      kv_peak = std::max(kv_peak, r.kv_peak_bytes);
      read += r.n_fed;  // what the model attended to: the key context a selecting method built, else all
    }
    std::printf("%-16s %6.1f/%-2d %12.1f %12.1f %12.2f MiB %12lld\n", m.text.c_str(), correct, n,
                n > 0 ? seconds / n : 0.0, decode_s > 0 ? generated / decode_s : 0.0, mib(kv_peak),
                n > 0 ? static_cast<long long>(read / n) : 0LL);
  }
  std::printf("\n");
}

int run_demo(const DemoOptions& o) {
  const std::string model = o.model.empty() ? find_default_model() : o.model;
  if (o.count < 1) fail("--count: expected at least 1 fact per task, got {}", o.count);
  if (o.length < 0) fail("--length: expected a token count >= 0 (0: the model's window), got {}", o.length);
  if (o.beyond < 0) fail("--beyond: expected a multiple of the window >= 0 (0: none), got {}", o.beyond);
  if (o.beyond_count < 1) fail("--beyond-count: expected at least 1 fact per task, got {}", o.beyond_count);
  const eval::MethodRegistry registry = eval::builtin_methods({o.hata});

  std::shared_ptr<const ModelSource> source = open_model(model);
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::create(load_model_vocab(model, ""));
  const int64_t window = source->config.n_ctx_train > 0 ? source->config.n_ctx_train : 4096;
  const int64_t length = o.length > 0 ? o.length : std::min<int64_t>(window, 4096);

  eval::GeneratorOptions go;
  go.seed = o.seed;
  go.tokenizer_name = std::filesystem::path(model).filename().string();
  const eval::TaskGenerator generator(*tokenizer, go);
  std::vector<Section> sections;
  Section within;
  within.length = length;
  std::string method_list = o.methods;
  if (method_list.empty()) {
    method_list = kDefaultMethods;
    // HATA needs the hash weights `ariadne calibrate --method hata` wrote for this model.
    if (std::filesystem::exists(o.hata.empty() ? hata_sidecar_path(model) : o.hata))
      method_list += ",hata:1/16";
  }
  within.methods = registry.parse_list(method_list);
  within.samples = make_samples(generator, eval::parse_task_list(o.tasks), length, o.count);
  within.title = fmt::format(
      "{} documents of {} tokens (noise sentences, one fact hidden in each at the depth shown); the model "
      "is\n"
      "asked for the fact and answers greedily.",
      within.samples.size(), length);
  sections.push_back(std::move(within));
  if (o.beyond > 0) {
    Section beyond;
    beyond.length = o.beyond * window;
    beyond.methods = registry.parse_list(o.beyond_methods);
    beyond.samples =
        make_samples(generator, eval::parse_task_list(o.beyond_tasks), beyond.length, o.beyond_count);
    beyond.title = fmt::format(
        "Beyond the window: {} documents of {} tokens, {}x the {} tokens the model was trained on. Plain\n"
        "attention (full) reads them whole; xl3m scores segments against the question and answers from the\n"
        "ones it keeps, which fit the window.",
        beyond.samples.size(), beyond.length, o.beyond, window);
    sections.push_back(std::move(beyond));
  }

  eval::RunnerOptions ro;
  ro.n_threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ro.model_name = go.tokenizer_name;
  eval::Runner runner(source, *tokenizer, registry, ro);
  int64_t need = 0;
  for (const Section& section : sections)
    for (const eval::TaskSample& s : section.samples)
      need = std::max<int64_t>(need, static_cast<int64_t>(runner.prompt_tokens(s).size()) + s.max_new_tokens);
  runner.reserve(need);  // refuses up front when the longest document cannot fit in memory

  if (!o.json) std::printf("Ariadne demo: %s, %d threads\n\n", model.c_str(), ro.n_threads);
  nlohmann::json json = nlohmann::json::array();
  for (const Section& section : sections) run_section(section, runner, o.json, json);
  if (o.json) std::printf("%s\n", json.dump().c_str());
  return 0;
}

}  // namespace

void add_demo_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Hide facts in long documents, ask the model for them, and compare the long-context methods");
  cmd->add_option("-m,--model", o->model, fmt::format("Model (default: {})", kDefaultModel));
  cmd->add_option("--tasks", o->tasks, "Task ids of `ariadne eval tasks`")->capture_default_str();
  cmd->add_option(
      "--method", o->methods,
      fmt::format("Methods to compare (comma list, as `ariadne eval run`; default: {}, and hata:1/16 "
                  "when the model's hash weights <model>.hata.gguf are there)",
                  kDefaultMethods));
  cmd->add_option("--length", o->length, "Tokens per document (default: the model's window, at most 4096)");
  cmd->add_option("--count", o->count, "Documents per task")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the documents and facts")->capture_default_str();
  cmd->add_option("--beyond", o->beyond,
                  "Also documents this many times the model's trained window (0: none)")
      ->capture_default_str();
  cmd->add_option("--beyond-tasks", o->beyond_tasks, "Task ids of the documents beyond the window")
      ->capture_default_str();
  cmd->add_option("--beyond-method", o->beyond_methods, "Methods for the documents beyond the window")
      ->capture_default_str();
  cmd->add_option("--beyond-count", o->beyond_count, "Documents per task beyond the window")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)");
  cmd->add_flag("--json", o->json, "Print the results as one JSON array");
  cmd->add_option("--hata", o->hata, "Weights of the hata method (default: <model>.hata.gguf)");
  cmd->callback([o, &action] { action = [o] { return run_demo(*o); }; });
}

}  // namespace ariadne::cli
