// ariadne convert: a Hugging Face folder, llama2.c checkpoint or GGUF file -> GGUF that llama.cpp loads.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "commands.h"
#include "core/error.h"
#include "formats/convert.h"
#include "formats/gguf.h"
#include "formats/model_source.h"
#include "progress.h"
#include "tokenizer/load.h"
#include "tokenizer/vocab_io.h"

namespace ariadne::cli {

namespace {

struct ConvertCliOptions {
  std::string input;
  std::string output;
  std::string type = "f16";
  std::string name;
  std::string tokenizer;
  int threads = 0;
  bool quiet = false;
};

int run_convert(const ConvertCliOptions& o) {
  const auto type = dtype_from_name(o.type);
  if (!type || *type == DType::I32)
    fail("--type: unknown type '{}' (expected f32, f16, bf16, q8_0, q4_0, q4_k or q6_k)", o.type);
  std::unique_ptr<ModelSource> source = open_model(o.input);
  ThreadPool pool(o.threads > 0 ? o.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ProgressBar bar("convert", "tensors", !o.quiet);
  ConvertOptions options;
  options.type = *type;
  options.name = o.name;
  options.progress = [&](size_t done, size_t total) { bar.update(done, total); };
  // The tokenizer travels with the weights when the input has one (or --tokenizer names one).
  std::optional<Vocab> vocab;
  try {
    vocab = load_model_vocab(o.input, o.tokenizer);
  } catch (const Error& e) {
    if (!o.tokenizer.empty()) throw;
    std::fprintf(stderr, "ariadne: warning: no tokenizer written: %s\n", e.what());
  }
  if (vocab) {
    if (vocab->size() != source->config.n_vocab)
      std::fprintf(stderr, "ariadne: warning: the tokenizer has %d tokens, the model %lld\n", vocab->size(),
                   static_cast<long long>(source->config.n_vocab));
    options.extra_metadata = [&](GgufWriter& w) { write_vocab_gguf(w, *vocab); };
  }
  convert_to_gguf(*source, o.output, options, pool);
  bar.finish();
  if (!o.quiet)
    std::fprintf(stderr, "wrote %s (%s, %zu tensors)\n", o.output.c_str(), o.type.c_str(),
                 source->tensors.size());
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a model to GGUF (llama.cpp-compatible)");
  cmd->add_option("-i,--input", o->input, "Hugging Face folder, llama2.c .bin or GGUF file")->required();
  cmd->add_option("-o,--output", o->output, "Output .gguf path")->required();
  cmd->add_option("--type", o->type, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k")
      ->capture_default_str();
  cmd->add_option("--name", o->name, "general.name (default: the input's name)");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer to carry over (llama2.c: its tokenizer.bin)");
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "No progress output");
  cmd->callback([o, &action] { action = [o] { return run_convert(*o); }; });
}

}  // namespace ariadne::cli
