#include "formats/hf_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"

namespace ariadne {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Sizes are kept within int32 so that products of two of them (a weight's element count) fit int64
// everywhere downstream; no real checkpoint comes close.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

// A short description of a JSON value for error messages; containers are named, never dumped.
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::null:
      return "null";
    case json::value_t::string: {
      std::string s = v.get_ref<const std::string&>();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    default:
      return v.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

// Reads typed fields of one JSON object; `prefix` names the object in messages ("rope_scaling.").
class FieldReader {
 public:
  FieldReader(const json& obj, const std::string& path, std::string prefix)
      : obj_(obj), path_(path), prefix_(std::move(prefix)) {}

  // The field's value, or nullptr when it is absent or null (both mean "use the default").
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::string field(const char* key) const { return prefix_ + key; }

  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    const json* v = find(key);
    if (v == nullptr)
      fail("{}: missing field '{}' (expected an integer in [{}, {}])", path_, field(key), lo, hi);
    return as_integer(*v, key, lo, hi);
  }
  int64_t integer_or(const char* key, int64_t lo, int64_t hi, int64_t fallback) const {
    const json* v = find(key);
    return v == nullptr ? fallback : as_integer(*v, key, lo, hi);
  }

  // A finite number in (lo, hi].
  double number(const char* key, double lo, double hi) const {
    const json* v = find(key);
    if (v == nullptr)
      fail("{}: missing field '{}' (expected a number in ({}, {}])", path_, field(key), lo, hi);
    return as_number(*v, key, lo, hi);
  }
  double number_or(const char* key, double lo, double hi, double fallback) const {
    const json* v = find(key);
    return v == nullptr ? fallback : as_number(*v, key, lo, hi);
  }

  bool boolean_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean())
      fail("{}: field '{}': expected true or false, got {}", path_, field(key), describe(*v));
    return v->get<bool>();
  }

  // A token id: an integer, null (none: -1) or a list whose first element is used.
  int32_t token_id(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) return -1;
    const json* id = v;
    if (v->is_array()) {
      if (v->empty()) return -1;
      id = &(*v)[0];
      if (id->is_null()) return -1;
    }
    return static_cast<int32_t>(as_integer(*id, key, 0, std::numeric_limits<int32_t>::max()));
  }

 private:
  int64_t as_integer(const json& v, const char* key, int64_t lo, int64_t hi) const {
    int64_t x = 0;
    bool ok = false;
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      x = v.get<int64_t>();
      ok = true;
    } else if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      ok = u <= static_cast<uint64_t>(hi);
      x = ok ? static_cast<int64_t>(u) : hi;
    } else if (v.is_number_float()) {
      // Some exporters write sizes as 8192.0; accept integral values only.
      const double d = v.get<double>();
      ok = std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) &&
           d <= static_cast<double>(hi);
      if (ok) x = static_cast<int64_t>(d);
    }
    if (!ok || x < lo || x > hi) {
      fail("{}: field '{}': expected an integer in [{}, {}], got {}", path_, field(key), lo, hi, describe(v));
    }
    return x;
  }

  double as_number(const json& v, const char* key, double lo, double hi) const {
    if (!v.is_number()) fail("{}: field '{}': expected a number, got {}", path_, field(key), describe(v));
    const double d = v.get<double>();
    // Every number read here is stored as float32: a value in range that rounds to the excluded bound
    // (rms_norm_eps = 1e-85 becomes 0) is out of range too.
    if (!std::isfinite(d) || !(d > lo) || !(d <= hi) || !(static_cast<float>(d) > static_cast<float>(lo))) {
      fail("{}: field '{}': expected a number in ({}, {}] (as float32), got {}", path_, field(key), lo, hi,
           describe(v));
    }
    return d;
  }

  const json& obj_;
  const std::string& path_;
  std::string prefix_;
};

struct ArchEntry {
  const char* class_name;
  const char* model_type;
  Arch arch;
};
constexpr ArchEntry kArchs[] = {
    {"LlamaForCausalLM", "llama", Arch::Llama},
    {"MistralForCausalLM", "mistral", Arch::Mistral},
    {"Qwen2ForCausalLM", "qwen2", Arch::Qwen2},
    {"Qwen3ForCausalLM", "qwen3", Arch::Qwen3},
};

Arch parse_arch(const json& root, const std::string& path) {
  std::string name;
  std::string field;
  auto arch_it = root.find("architectures");
  if (arch_it != root.end() && !arch_it->is_null()) {
    if (!arch_it->is_array()) {
      fail("{}: field 'architectures': expected a list of class names, got {}", path, describe(*arch_it));
    }
    if (!arch_it->empty()) {
      const json& first = (*arch_it)[0];
      if (!first.is_string()) {
        fail("{}: field 'architectures[0]': expected a class name string, got {}", path, describe(first));
      }
      name = first.get<std::string>();
      field = "architectures[0]";
    }
  }
  if (field.empty()) {
    auto type_it = root.find("model_type");
    if (type_it == root.end() || type_it->is_null()) {
      fail("{}: missing fields 'architectures' and 'model_type': cannot tell the architecture", path);
    }
    if (!type_it->is_string()) {
      fail("{}: field 'model_type': expected a string, got {}", path, describe(*type_it));
    }
    name = type_it->get<std::string>();
    field = "model_type";
  }
  for (const ArchEntry& e : kArchs) {
    if (name == e.class_name || name == e.model_type) return e.arch;
  }
  fail(
      "{}: field '{}': unsupported architecture {} (supported: LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM, Qwen3ForCausalLM)",
      path, field, describe(json(name)));
}

// Two spellings exist: classic configs have top-level rope_theta and an optional rope_scaling object;
// newer ones (transformers >= 4.56 style) put everything in rope_parameters.
RopeConfig parse_rope(const json& root, const std::string& path) {
  RopeConfig rope;
  rope.style = RopeStyle::NeoX;  // Hugging Face checkpoints keep the rotate_half layout
  const FieldReader top(root, path, "");
  const json* scaling = nullptr;
  std::string prefix;
  if (const json* params = top.find("rope_parameters")) {
    if (!params->is_object()) {
      fail("{}: field 'rope_parameters': expected an object, got {}", path, describe(*params));
    }
    prefix = "rope_parameters.";
    const FieldReader p(*params, path, prefix);
    rope.theta =
        static_cast<float>(p.find("rope_theta") != nullptr ? p.number("rope_theta", 0.0, 1e30)
                                                           : top.number_or("rope_theta", 0.0, 1e30, 10000.0));
    scaling = params;
  } else {
    rope.theta = static_cast<float>(top.number_or("rope_theta", 0.0, 1e30, 10000.0));
    if (const json* s = top.find("rope_scaling")) {
      if (!s->is_object())
        fail("{}: field 'rope_scaling': expected an object or null, got {}", path, describe(*s));
      prefix = "rope_scaling.";
      scaling = s;
    }
  }
  if (scaling == nullptr) return rope;

  const FieldReader s(*scaling, path, prefix);
  const char* type_key = s.find("rope_type") != nullptr ? "rope_type" : "type";
  const json* type = s.find(type_key);
  std::string type_name = "default";
  if (type == nullptr) {
    // rope_parameters without a type is plain RoPE; a rope_scaling object without one is ambiguous.
    if (prefix == "rope_scaling.") fail("{}: missing field 'rope_scaling.rope_type'", path);
  } else {
    if (!type->is_string()) {
      fail("{}: field '{}': expected a string, got {}", path, s.field(type_key), describe(*type));
    }
    type_name = type->get<std::string>();
  }
  if (type_name == "default") return rope;
  if (type_name == "linear") {
    rope.scaling = RopeScaling::Linear;
    rope.factor = static_cast<float>(s.number("factor", 0.0, 1e9));
    return rope;
  }
  if (type_name == "llama3") {
    rope.scaling = RopeScaling::Llama3;
    rope.factor = static_cast<float>(s.number("factor", 0.0, 1e9));
    rope.low_freq_factor = static_cast<float>(s.number("low_freq_factor", 0.0, 1e9));
    rope.high_freq_factor = static_cast<float>(s.number("high_freq_factor", 0.0, 1e9));
    rope.original_context = s.integer("original_max_position_embeddings", 1, kMaxSize);
    // The llama3 smoothing interpolates over (high - low); equal factors would divide by zero.
    if (!(rope.high_freq_factor > rope.low_freq_factor)) {
      fail("{}: field '{}': expected high_freq_factor ({}) > low_freq_factor ({})", path,
           s.field("high_freq_factor"), rope.high_freq_factor, rope.low_freq_factor);
    }
    return rope;
  }
  fail("{}: field '{}': unsupported RoPE type {} (supported: default, linear, llama3)", path,
       s.field(type_key), describe(*type));
}

ModelConfig parse_config_json(const json& root, const std::string& path) {
  if (!root.is_object()) fail("{}: expected a JSON object at the top level, got {}", path, describe(root));
  ModelConfig c;
  c.arch = parse_arch(root, path);
  const FieldReader r(root, path, "");
  c.n_vocab = r.integer("vocab_size", 1, kMaxSize);
  c.n_embd = r.integer("hidden_size", 1, kMaxSize);
  c.n_layer = r.integer("num_hidden_layers", 1, kMaxSize);
  c.n_head = r.integer("num_attention_heads", 1, kMaxSize);
  c.n_head_kv = r.integer_or("num_key_value_heads", 1, kMaxSize, c.n_head);
  if (c.n_head % c.n_head_kv != 0) {
    fail("{}: field 'num_key_value_heads': {} does not divide num_attention_heads ({})", path, c.n_head_kv,
         c.n_head);
  }
  if (r.find("head_dim") != nullptr) {
    c.head_dim = r.integer("head_dim", 1, kMaxSize);
  } else {
    if (c.n_embd % c.n_head != 0) {
      fail(
          "{}: field 'hidden_size': {} is not divisible by num_attention_heads ({}) and head_dim is not "
          "given",
          path, c.n_embd, c.n_head);
    }
    c.head_dim = c.n_embd / c.n_head;
  }
  // RoPE rotates pairs of dimensions.
  if (c.head_dim % 2 != 0) fail("{}: field 'head_dim': {} must be even for RoPE", path, c.head_dim);
  c.n_ff = r.integer("intermediate_size", 1, kMaxSize);
  // transformers' LlamaConfig default; every real config sets it.
  c.n_ctx_train = r.integer_or("max_position_embeddings", 1, kMaxSize, 2048);
  c.rms_eps = static_cast<float>(r.number_or("rms_norm_eps", 0.0, 1.0, 1e-6));
  c.tied_output = r.boolean_or("tie_word_embeddings", false);
  c.bos_id = r.token_id("bos_token_id");
  c.eos_id = r.token_id("eos_token_id");
  c.rope = parse_rope(root, path);
  // "dtype" (new) / "torch_dtype" (old) only say how the weights were saved; the safetensors header is
  // authoritative, so they are not read.
  return c;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

json parse_json_file(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}", path, e.byte, e.what());
  } catch (const json::exception& e) {
    // e.g. out_of_range for a number literal beyond double ("1e999")
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

bool parse_layer_index(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return false;
  int64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  *out = v;
  return true;
}

struct Shard {
  std::string path;
  std::shared_ptr<MappedFile> file;
  std::vector<SafetensorsTensor> tensors;
};

Shard open_shard(const fs::path& p) {
  Shard s;
  s.path = p.string();
  SafetensorsFile f = open_safetensors(s.path);
  s.file = std::move(f.file);
  s.tensors = std::move(f.tensors);
  return s;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Adds one tensor under its canonical name, viewing the mapping in place when aligned for its type.
void add_tensor(ModelSource& src, const std::string& canonical, const SafetensorsTensor& t,
                const std::string& shard_path, std::map<std::string, std::string>& origin) {
  auto [it, inserted] = origin.emplace(canonical, t.name + "' in " + shard_path);
  if (!inserted) {
    fail("{}: tensor '{}' in {} maps to '{}', which was already loaded from '{}", src.path, t.name,
         shard_path, canonical, it->second);
  }
  TensorView v;
  v.name = canonical;
  v.type = t.type;
  v.shape = t.shape;
  v.nbytes = t.nbytes;
  const size_t align = t.type == DType::F32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(t.data) % align == 0) {
    v.data = t.data;
  } else {
    // safetensors does not promise aligned offsets; kernels read whole elements, so copy.
    v.data = src.keep(std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  src.tensors[canonical] = std::move(v);
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& path_for_errors) {
  try {
    return parse_config_json(parse_json_file(json_text, path_for_errors), path_for_errors);
  } catch (const json::exception& e) {
    // Every field access is type-checked first; this is a safety net so nlohmann never escapes.
    fail("{}: {}", path_for_errors, e.what());
  }
}

std::optional<std::string> hf_to_gguf_name(std::string_view n) {
  if (n == "model.embed_tokens.weight") return "token_embd.weight";
  if (n == "model.norm.weight") return "output_norm.weight";
  if (n == "lm_head.weight") return "output.weight";
  constexpr std::string_view kLayers = "model.layers.";
  if (n.substr(0, kLayers.size()) != kLayers) return std::nullopt;
  n.remove_prefix(kLayers.size());
  const size_t dot = n.find('.');
  int64_t layer = 0;
  if (dot == std::string_view::npos || !parse_layer_index(n.substr(0, dot), &layer)) return std::nullopt;
  const std::string_view rest = n.substr(dot + 1);
  static const std::pair<std::string_view, std::string_view> kLayerNames[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (const auto& [hf, gguf] : kLayerNames) {
    if (rest == hf) return fmt::format("blk.{}.{}", layer, gguf);
  }
  return std::nullopt;  // rotary_emb.inv_freq and anything the engine does not use
}

std::unique_ptr<ModelSource> load_hf_model(const std::string& path) {
  std::error_code ec;
  const fs::path input(path);
  fs::path dir;
  if (fs::is_directory(input, ec)) {
    dir = input;
  } else if (fs::is_regular_file(input, ec)) {
    const std::string file = input.filename().string();
    if (file != "config.json" && !ends_with(file, ".safetensors")) {
      fail("{}: expected a Hugging Face model folder, its config.json or a .safetensors file", path);
    }
    dir = input.parent_path();
    if (dir.empty()) dir = ".";
  } else {
    fail("{}: no such file or folder", path);
  }

  auto src = std::make_unique<ModelSource>();
  src->path = dir.string();
  src->format = "hf";

  const fs::path config_path = dir / "config.json";
  if (!fs::is_regular_file(config_path, ec)) {
    fail("{}: missing config.json (a Hugging Face model folder holds config.json and the weights)",
         dir.string());
  }
  src->config = parse_hf_config(read_text_file(config_path.string()), config_path.string());

  // Each shard is mapped once; `wanted` lists, per shard, the tensor names to take from it (empty: all).
  std::vector<Shard> shards;
  std::vector<std::vector<std::string>> wanted;
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::is_regular_file(single, ec)) {
    shards.push_back(open_shard(single));
    wanted.emplace_back();
  } else if (fs::is_regular_file(index_path, ec)) {
    const std::string ipath = index_path.string();
    const json index = parse_json_file(read_text_file(ipath), ipath);
    if (!index.is_object()) fail("{}: expected a JSON object, got {}", ipath, describe(index));
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      fail("{}: field 'weight_map': expected an object of tensor name -> file name", ipath);
    }
    std::map<std::string, size_t> shard_of_file;
    for (const auto& [name, file] : map_it->items()) {
      if (!file.is_string()) {
        fail("{}: field 'weight_map.{}': expected a file name, got {}", ipath, name, describe(file));
      }
      const std::string fname = file.get<std::string>();
      // Shards must sit in the folder itself: an index must not reach outside it.
      if (fname.empty() || fname.find('/') != std::string::npos || fname.find('\\') != std::string::npos ||
          fname == "." || fname == "..") {
        fail("{}: field 'weight_map.{}': '{}' is not a file name in the model folder", ipath, name, fname);
      }
      auto [it, inserted] = shard_of_file.emplace(fname, shards.size());
      if (inserted) {
        const fs::path shard_path = dir / fname;
        if (!fs::is_regular_file(shard_path, ec)) {
          fail("{}: shard '{}' (listed for tensor '{}') is missing: {}", ipath, fname, name,
               shard_path.string());
        }
        shards.push_back(open_shard(shard_path));
        wanted.emplace_back();
      }
      wanted[it->second].push_back(name);
    }
    if (shards.empty()) fail("{}: field 'weight_map' is empty", ipath);
  } else {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_regular_file(ec) && ends_with(entry.path().filename().string(), ".safetensors")) {
        files.push_back(entry.path());
      }
    }
    if (files.empty()) {
      fail("{}: no weights found (expected model.safetensors, model.safetensors.index.json or *.safetensors)",
           dir.string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      shards.push_back(open_shard(f));
      wanted.emplace_back();
    }
  }

  std::map<std::string, std::string> origin;  // canonical name -> where it came from, to report duplicates
  bool has_lm_head = false;
  for (size_t i = 0; i < shards.size(); ++i) {
    const Shard& shard = shards[i];
    src->storage.push_back(shard.file);
    auto take = [&](const SafetensorsTensor& t) {
      const std::optional<std::string> canonical = hf_to_gguf_name(t.name);
      if (!canonical) return;
      if (*canonical == "output.weight") has_lm_head = true;
      add_tensor(*src, *canonical, t, shard.path, origin);
    };
    if (wanted[i].empty()) {
      for (const auto& t : shard.tensors) take(t);
    } else {
      std::unordered_map<std::string_view, const SafetensorsTensor*> by_name;
      for (const auto& t : shard.tensors) by_name.emplace(t.name, &t);
      for (const auto& name : wanted[i]) {
        auto found = by_name.find(name);
        const SafetensorsTensor* t = found == by_name.end() ? nullptr : found->second;
        if (t == nullptr) {
          fail("{}: tensor '{}' is listed in model.safetensors.index.json but {} does not contain it",
               src->path, name, shard.path);
        }
        take(*t);
      }
    }
  }
  // With tied embeddings transformers overwrites lm_head with embed_tokens, so a stored copy is ignored.
  src->config.tied_output = src->config.tied_output || !has_lm_head;
  if (src->config.tied_output) src->tensors.erase("output.weight");
  return src;
}

}  // namespace ariadne
