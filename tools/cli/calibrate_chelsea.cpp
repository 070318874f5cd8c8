#include "calibrate_chelsea.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/model_source.h"
#include "progress.h"
#include "runtime/chelsea_calibrate.h"
#include "runtime/chelsea_sidecar.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::cli {

void add_chelsea_calibrate_flags(CLI::App* cmd, ChelseaCalibrateFlags& f) {
  const std::string group = "chelsea (--method chelsea)";
  auto add = [&](CLI::Option* o) { f.options.push_back(o->group(group)); };
  add(cmd->add_option("--kv-budget", f.budget, "Budget R the heads are measured at (a fraction)")
          ->capture_default_str());
  add(cmd->add_option("--outlier-fraction", f.outlier_fraction, "Fraction of KV heads kept full (ρ_out)")
          ->capture_default_str());
  add(cmd->add_option("--windows", f.windows, "Text windows measured")->capture_default_str());
  add(cmd->add_option("--ctx", f.ctx, "Tokens per window (default: min(8192, the trained context))"));
  add(cmd->add_option("--steps", f.steps, "Teacher-forced decode steps measured at the end of each window")
          ->capture_default_str());
  add(cmd->add_option("--kv-sink", f.sink, "Protected first entries (S)")->capture_default_str());
  add(cmd->add_option("--kv-recent", f.recent, "Protected last entries (W)")->capture_default_str());
  add(cmd->add_option("--chelsea-chunk", f.chunk, "Chunk size of the matching (c)")->capture_default_str());
  add(cmd->add_option("--chelsea-interval", f.interval, "Decode steps between compressions (g)")
          ->capture_default_str());
  add(cmd->add_option("-b,--batch-size", f.n_batch, "Prompt tokens per forward call")->capture_default_str());
}

int run_chelsea_calibration(const CalibrateCommon& c, const ChelseaCalibrateFlags& f) {
  if (f.sink < 0 || f.recent < 0) fail("--kv-sink and --kv-recent must be >= 0");
  if (f.chunk < 2) fail("--chelsea-chunk: expected a chunk size >= 2, got {}", f.chunk);
  if (f.interval < 1) fail("--chelsea-interval: expected >= 1, got {}", f.interval);
  if (f.n_batch < 1) fail("-b: expected a batch size >= 1, got {}", f.n_batch);
  std::ifstream in(c.text, std::ios::binary);
  if (!in) fail("{}: cannot open the calibration text (--text)", c.text);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::shared_ptr<const ModelSource> source = open_model(c.model);
  const auto tokenizer = Tokenizer::create(load_model_vocab(c.model, c.tokenizer));
  const std::vector<int32_t> tokens = tokenizer->encode(text, false, false);
  const ModelConfig& config = source->config;

  ChelseaCalibrationOptions o;
  o.ratio = f.budget;
  o.outlier_fraction = f.outlier_fraction;
  o.windows = f.windows;
  o.ctx = f.ctx > 0 ? f.ctx : std::min<int64_t>(8192, config.n_ctx_train > 0 ? config.n_ctx_train : 8192);
  o.steps = f.steps;
  o.chelsea = ChelseaOptions{f.sink, f.recent, f.chunk};
  o.interval = f.interval;
  if (tokenizer->vocab().add_bos) o.bos_id = tokenizer->vocab().bos_id;
  o.n_threads =
      c.threads > 0 ? c.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.n_batch = f.n_batch;
  const bool show = !c.json && !c.quiet;
  ProgressBar bar("calibrate", "win", show);
  const ChelseaCalibration r = calibrate_chelsea(source, tokens, o, [&](int64_t done, int64_t total) {
    bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
  });
  bar.finish();

  ChelseaSidecar sc;
  sc.outliers = r.outliers;
  sc.calib_ratio = o.ratio;
  sc.outlier_fraction = o.outlier_fraction;
  sc.n_layer = config.n_layer;
  sc.n_head_kv = config.n_head_kv;
  sc.head_dim = config.head_dim;
  sc.fingerprint = model_fingerprint(*source);
  sc.windows = r.n_windows;
  sc.ctx = o.ctx;
  sc.steps = o.steps;
  sc.sink = f.sink;
  sc.recent = f.recent;
  sc.chunk = f.chunk;
  sc.interval = f.interval;
  sc.text = std::filesystem::path(c.text).filename().string();
  sc.head_errors.assign(r.head_error.begin(), r.head_error.end());
  const std::string output = c.output.empty() ? chelsea_sidecar_path(c.model) : c.output;
  write_chelsea_sidecar(output, sc);

  if (c.quiet) return 0;
  if (c.json) {
    nlohmann::json j;
    j["sidecar"] = output;
    j["outliers"] = r.outliers;
    j["calib_ratio"] = o.ratio;
    j["windows"] = r.n_windows;
    j["ctx"] = o.ctx;
    j["steps"] = o.steps;
    j["head_error"] = r.head_error;
    j["layer_error"] = r.layer_error;
    j["edge_cosine"] = r.edge_cosine;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "%lld windows of %lld tokens (%lld decode steps measured each), budget %g: relative "
      "attention-output error per layer, and the median cosine of the edges a first round merges\n\n| layer "
      "| "
      "mean error | worst head | its error | median edge cosine |\n| ---: | ---: | ---: | ---: | ---: |\n",
      static_cast<long long>(r.n_windows), static_cast<long long>(o.ctx), static_cast<long long>(o.steps),
      o.ratio);
  for (int64_t l = 0; l < config.n_layer; ++l) {
    int64_t worst = 0;
    for (int64_t h = 1; h < config.n_head_kv; ++h)
      if (r.head_error[static_cast<size_t>(l * config.n_head_kv + h)] >
          r.head_error[static_cast<size_t>(l * config.n_head_kv + worst)])
        worst = h;
    double cosine = 0;
    for (int64_t h = 0; h < config.n_head_kv; ++h)
      cosine += r.edge_cosine[static_cast<size_t>(l * config.n_head_kv + h)] /
                static_cast<double>(config.n_head_kv);
    std::printf("| %lld | %.4f | %lld | %.4f | %.3f |\n", static_cast<long long>(l),
                r.layer_error[static_cast<size_t>(l)], static_cast<long long>(worst),
                r.head_error[static_cast<size_t>(l * config.n_head_kv + worst)], cosine);
  }
  std::string list;
  for (const int32_t id : r.outliers)
    list += (list.empty() ? "" : ", ") + std::to_string(id / config.n_head_kv) + "." +
            std::to_string(id % config.n_head_kv);
  std::printf("\n%zu outlier heads (layer.head): %s\nwrote %s\n", r.outliers.size(),
              list.empty() ? "none" : list.c_str(), output.c_str());
  return 0;
}

}  // namespace ariadne::cli
