#include "calibrate_hata.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "formats/model_source.h"
#include "progress.h"
#include "runtime/hata_train.h"
#include "runtime/sparse_attention.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::cli {

void add_hata_calibrate_flags(CLI::App* cmd, HataCalibrateFlags& f) {
  const std::string group = "hata (hata.md §2.3)";
  auto add = [&](CLI::Option* o) { f.options.push_back(o->group(group)); };
  add(cmd->add_option("--bits", f.bits, "Bits per code r (a multiple of 64)")->capture_default_str());
  add(cmd->add_option("--docs", f.docs, "Training documents (fewer when the text is short)")
          ->capture_default_str());
  add(cmd->add_option("--doc-len", f.doc_len, "Tokens per document (default: min(trained context, 32768))"));
  add(cmd->add_option("--items", f.items, "Items N drawn per epoch")->capture_default_str());
  add(cmd->add_option("--epochs", f.epochs, "Epochs")->capture_default_str());
  add(cmd->add_option("--iters", f.iters, "Full-batch steps per epoch")->capture_default_str());
  add(cmd->add_option("--queries", f.queries, "Query positions m per document")->capture_default_str());
  add(cmd->add_option("--dense-layers", f.dense_layers,
                      "Layers left dense (not hashed): a comma list or none")
          ->capture_default_str());
  add(cmd->add_option("--score", f.score, "Score mode stored in the sidecar: norm or hamming")
          ->capture_default_str());
  add(cmd->add_option(
             "--heldout", f.heldout,
             "Documents after the training ones on which recall@k (k = 1.56%) is measured against the "
             "random Gaussian W (0: none)")
          ->capture_default_str());
  add(cmd->add_option("--memory", f.memory_mib,
                      "MiB the collected keys may take (layers are then collected in groups; 0: half the "
                      "available memory)"));
}

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the calibration text (--text)", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int run_hata_calibration(const CalibrateCommon& c, const HataCalibrateFlags& f) {
  HataCalibrateOptions o;
  o.train.rbits = f.bits;
  if (f.bits < 64 || f.bits > 4096 || f.bits % 64 != 0)
    fail("--bits: expected a multiple of 64 in [64, 4096], got {}", f.bits);
  if (!parse_hata_score(f.score, &o.train.score)) fail("--score: '{}' is not norm or hamming", f.score);
  if (f.items < 1 || f.epochs < 1 || f.iters < 1 || f.queries < 1)
    fail("--items, --epochs, --iters and --queries must be >= 1 (got {}, {}, {}, {})", f.items, f.epochs,
         f.iters, f.queries);
  if (f.docs < 1) fail("--docs: expected at least 1 document, got {}", f.docs);
  if (f.doc_len < 0) fail("--doc-len: expected a length >= 16 (or 0 for the default), got {}", f.doc_len);
  if (f.heldout < 0) fail("--heldout: expected a count >= 0, got {}", f.heldout);
  if (f.memory_mib < 0) fail("--memory: expected MiB >= 0, got {}", f.memory_mib);
  o.train.hyper.items = f.items;
  o.train.hyper.epochs = f.epochs;
  o.train.hyper.iters = f.iters;
  o.train.hyper.m = f.queries;
  o.train.hyper.seed = c.seed;
  o.dense_layers = parse_layer_list(f.dense_layers, "--dense-layers");
  o.n_doc = f.docs;
  o.doc_len = f.doc_len;
  o.heldout_docs = f.heldout;
  o.memory_limit = static_cast<uint64_t>(f.memory_mib) << 20;
  o.n_threads =
      c.threads > 0 ? c.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  std::shared_ptr<const ModelSource> source = open_model(c.model);
  const std::string output = c.output.empty() ? hata_sidecar_path(c.model) : c.output;
  const auto tokenizer = Tokenizer::create(load_model_vocab(c.model, c.tokenizer));
  o.bos_id = tokenizer->vocab().bos_id;
  const std::string text = read_all(c.text);
  Sha256 sha;
  sha.update(text.data(), text.size());
  o.train.hyper.corpus = fmt::format("{} sha256:{}", std::filesystem::path(c.text).filename().string(),
                                     sha.finish_hex().substr(0, 16));
  const std::vector<int32_t> tokens = tokenizer->encode(text, false, false);

  const bool bars = !c.json && !c.quiet;
  std::unique_ptr<ProgressBar> bar;
  HataCalibrateProgress::Phase phase = HataCalibrateProgress::Phase::Recall;
  int64_t group = -1;
  const HataCalibration cal = calibrate_hata(source, tokens, o, [&](const HataCalibrateProgress& p) {
    if (p.phase != phase || p.group != group) {
      bar.reset();
      phase = p.phase;
      group = p.group;
      const std::string where =
          p.groups > 1 ? fmt::format(" (layer group {}/{})", p.group + 1, p.groups) : "";
      if (p.phase == HataCalibrateProgress::Phase::Collect) {
        bar = std::make_unique<ProgressBar>("prefill" + where, "doc", bars);
      } else if (p.phase == HataCalibrateProgress::Phase::Train) {
        bar = std::make_unique<ProgressBar>("train" + where, "step", bars);
      }
    }
    if (bar) bar->update(static_cast<uint64_t>(p.done), static_cast<uint64_t>(p.total));
  });
  bar.reset();
  write_hata_sidecar(output, cal.weights);

  if (c.json) {
    nlohmann::json layers = nlohmann::json::array();
    for (size_t i = 0; i < cal.weights.layers.size(); ++i) {
      nlohmann::json curve = nlohmann::json::array();
      for (const HataLossParts& l : cal.curve[i]) curve.push_back({l.total(), l.sim, l.bal, l.dec});
      layers.push_back({{"layer", cal.weights.layers[i]}, {"loss", curve}});
    }
    auto number = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
    const nlohmann::json j = {{"method", "hata"},
                              {"model", c.model},
                              {"output", output},
                              {"fingerprint", cal.weights.fingerprint},
                              {"rbits", cal.weights.rbits},
                              {"score_mode", std::string(hata_score_name(cal.weights.score))},
                              {"hashed_layers", cal.weights.layers},
                              {"n_doc", cal.n_doc},
                              {"doc_len", cal.doc_len},
                              {"layer_groups", cal.groups},
                              {"items", f.items},
                              {"epochs", f.epochs},
                              {"iters", f.iters},
                              {"seed", c.seed},
                              {"corpus", o.train.hyper.corpus},
                              {"threads", o.n_threads},
                              {"collect_seconds", cal.collect_seconds},
                              {"train_seconds", cal.train_seconds},
                              {"recall_learned", number(cal.recall_learned)},
                              {"recall_random", number(cal.recall_random)},
                              {"recall_fraction", o.recall_fraction},
                              {"loss_columns", {"total", "sim", "bal", "dec"}},
                              {"layers", layers}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  if (!c.quiet) {
    std::printf(
        "hata: %zu hashed layers (%s), r = %lld, %s scores; %lld documents of %lld tokens, %lld x %lld "
        "steps of %lld items per layer\n",
        cal.weights.layers.size(), fmt::format("{}", fmt::join(cal.weights.layers, ",")).c_str(),
        static_cast<long long>(cal.weights.rbits), std::string(hata_score_name(cal.weights.score)).c_str(),
        static_cast<long long>(cal.n_doc), static_cast<long long>(cal.doc_len),
        static_cast<long long>(f.epochs), static_cast<long long>(f.iters), static_cast<long long>(f.items));
    for (size_t i = 0; i < cal.weights.layers.size(); ++i) {
      const auto& curve = cal.curve[i];
      if (curve.empty()) continue;
      std::printf("  layer %d: loss %.4f -> %.4f (sim %.4f, bal %.5f, dec %.4f)\n", cal.weights.layers[i],
                  curve.front().total(), curve.back().total(), curve.back().sim, curve.back().bal,
                  curve.back().dec);
    }
    std::printf("time: collect %.1f s, train %.1f s (%d threads)\n", cal.collect_seconds, cal.train_seconds,
                o.n_threads);
    if (!std::isnan(cal.recall_learned))
      std::printf("held-out recall@k (k = %.2f%% of the keys): learned %.4f, random Gaussian %.4f\n",
                  100 * o.recall_fraction, cal.recall_learned, cal.recall_random);
    std::printf("wrote %s\n", output.c_str());
  }
  return 0;
}

}  // namespace ariadne::cli
