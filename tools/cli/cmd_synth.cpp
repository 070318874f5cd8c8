// ariadne synth: a GGUF with random weights in the shape of a real checkpoint (for benchmarks).
#include <sys/statvfs.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/synth.h"
#include "progress.h"
#include "tokenizer/load.h"
#include "tokenizer/vocab_io.h"

namespace ariadne::cli {

namespace {

struct SynthCliOptions {
  std::string shape;
  std::string type = "f16";
  std::string output;
  uint64_t seed = 1;
  int threads = 0;
  bool quiet = false;
  bool list = false;
  std::string tokenizer;
  std::string pre;
};

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

int run_synth(const SynthCliOptions& o) {
  if (o.list) {
    for (const SynthShape& s : synth_shapes()) std::printf("%-14s %s\n", s.name.c_str(), s.hf_name.c_str());
    return 0;
  }
  if (o.shape.empty() || o.output.empty()) fail("synth needs --shape and --output (or --list)");
  const auto type = dtype_from_name(o.type);
  if (!type || *type == DType::I32)
    fail("--type: unknown type '{}' (expected f32, f16, bf16, q8_0, q4_0, q4_k or q6_k)", o.type);
  const SynthShape& shape = find_synth_shape(o.shape);
  // Refuse before writing when the disk cannot hold the file.
  const uint64_t need = synth_weight_bytes(shape, *type);
  struct statvfs fs {};
  if (::statvfs(parent_dir(o.output).c_str(), &fs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (need > free_bytes)
      fail("{}: needs {:.2f} GiB but only {:.2f} GiB are free there", o.output, need / 1073741824.0,
           free_bytes / 1073741824.0);
  }
  ThreadPool pool(o.threads > 0 ? o.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ProgressBar bar("synth", "tensors", !o.quiet);
  SynthOptions options;
  options.type = *type;
  options.seed = o.seed;
  options.progress = [&](size_t done, size_t total) { bar.update(done, total); };
  std::optional<Vocab> vocab;
  if (!o.tokenizer.empty()) {
    vocab = load_vocab_file(o.tokenizer, o.pre);
    if (vocab->size() > shape.config.n_vocab)
      fail("--tokenizer: {} has {} tokens, more than the {} rows of {}'s embedding", o.tokenizer,
           vocab->size(), shape.config.n_vocab, shape.name);
    options.extra_metadata = [&](GgufWriter& w) { write_vocab_gguf(w, *vocab); };
  }
  write_synth_model(shape, o.output, options, pool);
  bar.finish();
  if (!o.quiet)
    std::fprintf(stderr, "wrote %s (%s, %s, %.2f GiB of weights)\n", o.output.c_str(), shape.name.c_str(),
                 o.type.c_str(), need / 1073741824.0);
  return 0;
}

}  // namespace

void add_synth_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<SynthCliOptions>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight GGUF with a real model's shape");
  cmd->add_option("--shape", o->shape, "Shape name (see --list), e.g. llama-3.2-1b, qwen3-8b");
  cmd->add_option("--type", o->type, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k")
      ->capture_default_str();
  cmd->add_option("-o,--output", o->output, "Output .gguf path");
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "No progress output");
  cmd->add_flag("--list", o->list, "List the known shapes");
  cmd->add_option(
      "--tokenizer", o->tokenizer,
      "Tokenizer to write into the file (tokenizer.json, encoder.json, tokenizer.model, GGUF, ...)");
  cmd->add_option("--pre", o->pre, "BPE pre-tokenizer for vocab.json / encoder.json (e.g. llama-bpe)");
  cmd->callback([o, &action] { action = [o] { return run_synth(*o); }; });
}

}  // namespace ariadne::cli
