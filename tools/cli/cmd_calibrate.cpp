// ariadne calibrate --method METHOD -m MODEL --text FILE: fits what a long-context method needs from plain
// text and writes it to a sidecar file beside the model (or -o). Methods: hata (hash weights,
// calibrate_hata.cpp), chelsea (outlier heads, calibrate_chelsea.cpp). Each method adds its own flags (in its
// own help group) and its runner; a flag of another method is refused.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "calibrate_chelsea.h"
#include "calibrate_hata.h"
#include "commands.h"
#include "core/error.h"

namespace ariadne::cli {

namespace {

struct CalibrateOptions {
  CalibrateCommon common;
  HataCalibrateFlags hata;
  ChelseaCalibrateFlags chelsea;
};

struct CalibrateMethod {
  std::string name;
  std::function<int(const CalibrateOptions&)> run;
  std::function<const std::vector<CLI::Option*>&(const CalibrateOptions&)> flags;
};

const std::vector<CalibrateMethod>& calibrate_methods() {
  static const std::vector<CalibrateMethod> methods{
      {"hata", [](const CalibrateOptions& o) { return run_hata_calibration(o.common, o.hata); },
       [](const CalibrateOptions& o) -> const std::vector<CLI::Option*>& { return o.hata.options; }},
      {"chelsea", [](const CalibrateOptions& o) { return run_chelsea_calibration(o.common, o.chelsea); },
       [](const CalibrateOptions& o) -> const std::vector<CLI::Option*>& { return o.chelsea.options; }},
  };
  return methods;
}

int run_calibrate(const CalibrateOptions& o) {
  std::vector<std::string> names;
  for (const CalibrateMethod& m : calibrate_methods()) names.push_back(m.name);
  const CalibrateMethod* chosen = nullptr;
  for (const CalibrateMethod& m : calibrate_methods())
    if (m.name == o.common.method) chosen = &m;
  if (chosen == nullptr)
    fail("--method: unknown calibration '{}' (expected {})", o.common.method, fmt::join(names, ", "));
  for (const CalibrateMethod& m : calibrate_methods()) {
    if (&m == chosen) continue;
    for (const CLI::Option* opt : m.flags(o))
      if (opt->count() > 0)
        fail("{} is a {} flag; it does not apply to --method {}", opt->get_name(), m.name, chosen->name);
  }
  return chosen->run(o);
}

}  // namespace

void add_calibrate_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "calibrate", "Fit a long-context method to a model from plain text and write its sidecar file");
  cmd->add_option(
         "--method", o->common.method,
         "What to calibrate: hata (learned hash for top-k attention), chelsea (outlier heads kept full)")
      ->required();
  cmd->add_option("-m,--model", o->common.model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  cmd->add_option("--text", o->common.text, "Plain calibration text, held out from every evaluation set")
      ->required();
  cmd->add_option("--tokenizer", o->common.tokenizer, "Tokenizer file (llama2.c checkpoints: tokenizer.bin)");
  cmd->add_option("-o,--output", o->common.output,
                  "Sidecar file (default: <model>.<method>.gguf beside the model)");
  cmd->add_option("-t,--threads", o->common.threads, "CPU threads (default: all cores)");
  cmd->add_option("--seed", o->common.seed, "Seed of every random choice (reproducible)")
      ->capture_default_str();
  cmd->add_flag("--json", o->common.json, "No progress bar; the summary (loss curves included) as JSON");
  cmd->add_flag("-q,--quiet", o->common.quiet, "No progress bar, no summary");
  add_hata_calibrate_flags(cmd, o->hata);
  add_chelsea_calibrate_flags(cmd, o->chelsea);
  cmd->callback([o, &action] { action = [o] { return run_calibrate(*o); }; });
}

}  // namespace ariadne::cli
