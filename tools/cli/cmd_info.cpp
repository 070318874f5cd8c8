// ariadne info: what a model file holds and what it needs in memory.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "formats/model_source.h"

namespace ariadne::cli {

namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

int run_info(const InfoOptions& o) {
  std::unique_ptr<ModelSource> s = open_model(o.model);
  validate_model(*s);
  const ModelConfig& c = s->config;
  int64_t n_params = 0;
  uint64_t weight_bytes = 0;
  std::map<std::string, int64_t> type_counts;
  for (const auto& [name, t] : s->tensors) {
    n_params += t.numel();
    weight_bytes += t.nbytes;
    ++type_counts[std::string(dtype_name(t.type))];
  }
  // K and V, every layer, every kv head: bytes per cached token at f32 and f16.
  const int64_t kv_elems = 2 * c.n_layer * c.n_head_kv * c.head_dim;
  const char* scaling = c.rope.scaling == RopeScaling::Linear   ? "linear"
                        : c.rope.scaling == RopeScaling::Llama3 ? "llama3"
                        : c.rope.freq_factors.empty()           ? "none"
                                                                : "freq_factors";
  nlohmann::json j;
  j["path"] = s->path;
  j["format"] = s->format;
  j["architecture"] = std::string(arch_name(c.arch));
  j["n_vocab"] = c.n_vocab;
  j["n_embd"] = c.n_embd;
  j["n_layer"] = c.n_layer;
  j["n_head"] = c.n_head;
  j["n_head_kv"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["n_ff"] = c.n_ff;
  j["n_ctx_train"] = c.n_ctx_train;
  j["rms_eps"] = c.rms_eps;
  j["rope"] = {{"theta", c.rope.theta},
               {"layout", c.rope.style == RopeStyle::NeoX ? "neox" : "interleaved"},
               {"scaling", scaling},
               {"factor", c.rope.factor}};
  j["tied_output"] = c.tied_output;
  j["bos_id"] = c.bos_id;
  j["eos_id"] = c.eos_id;
  j["n_tensors"] = s->tensors.size();
  j["tensor_types"] = type_counts;
  j["n_params"] = n_params;
  j["weight_bytes"] = weight_bytes;
  j["kv_bytes_per_token_f32"] = kv_elems * 4;
  j["kv_bytes_per_token_f16"] = kv_elems * 2;
  j["packed"] = {{"tensors", s->packed_tensors}, {"bytes", s->packed_bytes}, {"seconds", s->pack_seconds}};
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model         %s (%s)\n", s->path.c_str(), s->format.c_str());
  std::printf("architecture  %s\n", std::string(arch_name(c.arch)).c_str());
  std::printf("vocab         %lld\n", static_cast<long long>(c.n_vocab));
  std::printf("layers        %lld, hidden %lld, ffn %lld\n", static_cast<long long>(c.n_layer),
              static_cast<long long>(c.n_embd), static_cast<long long>(c.n_ff));
  std::printf("heads         %lld query, %lld kv, head_dim %lld\n", static_cast<long long>(c.n_head),
              static_cast<long long>(c.n_head_kv), static_cast<long long>(c.head_dim));
  std::printf("context       %lld trained\n", static_cast<long long>(c.n_ctx_train));
  std::printf("rope          theta %g, %s layout, scaling %s (factor %g)\n", c.rope.theta,
              c.rope.style == RopeStyle::NeoX ? "neox" : "interleaved", scaling, c.rope.factor);
  std::printf("output head   %s\n", c.tied_output ? "tied to token embeddings" : "separate");
  std::string types;
  for (const auto& [t, n] : type_counts) types += (types.empty() ? "" : ", ") + t + " x" + std::to_string(n);
  std::printf("tensors       %zu (%s)\n", s->tensors.size(), types.c_str());
  std::printf("parameters    %lld (%.2f M)\n", static_cast<long long>(n_params), n_params / 1e6);
  std::printf("weights       %.2f MiB\n", weight_bytes / 1048576.0);
  if (s->packed_tensors > 0)
    std::printf("packed q4_0   %lld matrices, %.2f MiB, repacked at load in %.3f s\n",
                static_cast<long long>(s->packed_tensors), s->packed_bytes / 1048576.0, s->pack_seconds);
  std::printf("KV per token  %lld bytes f32, %lld bytes f16\n", static_cast<long long>(kv_elems * 4),
              static_cast<long long>(kv_elems * 2));
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Show a model's architecture, tensors and memory needs");
  cmd->add_option("-m,--model", o->model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  cmd->add_flag("--json", o->json, "Print as JSON");
  cmd->callback([o, &action] { action = [o] { return run_info(*o); }; });
}

}  // namespace ariadne::cli
