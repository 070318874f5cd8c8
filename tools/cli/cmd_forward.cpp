// ariadne forward: logits for a list of token ids, fed exactly as given (no BOS added). Test harnesses
// rely on its JSON shape: {"logits": [[...], ...]} — one row per position with --all-positions, else one.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "runtime/session.h"

namespace ariadne::cli {

namespace {

struct ForwardOptions {
  std::string model;
  std::string ids;
  std::string tokenizer;
  bool all_positions = false;
  bool exact_matmul = false;
  bool json = false;
  int threads = 0;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < INT32_MIN || v > INT32_MAX)
      fail("--ids: '{}' is not an integer token id (expected a comma-separated list such as 1,2,3)", item);
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) fail("--ids: no token ids given");
  return ids;
}

int run_forward(const ForwardOptions& o) {
  const std::vector<int32_t> ids = parse_ids(o.ids);
  if (!o.tokenizer.empty() && !std::ifstream(o.tokenizer))
    fail("{}: cannot open tokenizer file (--tokenizer)", o.tokenizer);
  std::shared_ptr<const ModelSource> source = open_model(o.model);
  SessionOptions so;
  so.n_ctx = static_cast<int64_t>(ids.size());
  so.exact_matmul = o.exact_matmul;
  so.n_threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Session session(source, so);
  const std::vector<float> logits = session.eval(ids, o.all_positions);
  const int64_t n_vocab = session.model().config().n_vocab;
  const int64_t rows = static_cast<int64_t>(logits.size()) / n_vocab;
  if (o.json) {
    nlohmann::json rows_json = nlohmann::json::array();
    for (int64_t r = 0; r < rows; ++r)
      rows_json.push_back(
          std::vector<float>(logits.begin() + r * n_vocab, logits.begin() + (r + 1) * n_vocab));
    nlohmann::json out;
    out["logits"] = std::move(rows_json);
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * n_vocab;
    int64_t best = 0;
    for (int64_t i = 1; i < n_vocab; ++i)
      if (row[i] > row[best]) best = i;
    const int64_t pos = o.all_positions ? r : static_cast<int64_t>(ids.size()) - 1;
    std::printf("position %lld: argmax %lld (logit %.6f)\n", static_cast<long long>(pos),
                static_cast<long long>(best), row[best]);
  }
  return 0;
}

}  // namespace

void add_forward_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<ForwardOptions>();
  CLI::App* cmd = app.add_subcommand("forward", "Print the logits the model computes for token ids");
  cmd->add_option("-m,--model", o->model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  cmd->add_option("--ids", o->ids, "Comma-separated token ids, fed exactly as given (no BOS added)")
      ->required();
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints (tokenizer.bin)");
  cmd->add_flag("--all-positions", o->all_positions, "Logits at every position, not only the last");
  cmd->add_flag("--exact-matmul", o->exact_matmul, "Quantized weights with f32 activations (slower, exact)");
  cmd->add_flag("--json", o->json, "Print {\"logits\": [[...], ...]} as JSON");
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->callback([o, &action] { action = [o] { return run_forward(*o); }; });
}

}  // namespace ariadne::cli
