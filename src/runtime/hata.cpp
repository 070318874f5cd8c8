#include "runtime/hata.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numbers>
#include <random>

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/half.h"
#include "core/sha256.h"
#include "formats/gguf.h"

namespace ariadne {

namespace {

constexpr uint32_t kVersion = 1;

// One generator per (seed, stream): splitmix64 of both, so neighbouring seeds give unrelated streams.
uint64_t mix(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

std::string_view hata_score_name(HataScore s) {
  return s == HataScore::Norm ? "norm" : "hamming";
}

bool parse_hata_score(std::string_view name, HataScore* out) {
  if (name == "norm") {
    *out = HataScore::Norm;
  } else if (name == "hamming") {
    *out = HataScore::Hamming;
  } else {
    return false;
  }
  return true;
}

const float* HataWeights::layer(int64_t l) const {
  const auto it = std::lower_bound(layers.begin(), layers.end(), l);
  if (it == layers.end() || *it != l) return nullptr;
  return w[static_cast<size_t>(it - layers.begin())].data();
}

float* HataWeights::layer(int64_t l) {
  return const_cast<float*>(static_cast<const HataWeights*>(this)->layer(l));
}

std::string hata_fingerprint(const ModelSource& source) {
  Sha256 sha;
  for (int64_t l = 0; l < source.config.n_layer; ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const char* name : {"attn_k.weight", "attn_k.bias", "attn_k_norm.weight"}) {
      const TensorView* t = source.find(prefix + name);
      if (t != nullptr) sha.update(t->data, t->nbytes);
    }
  }
  return sha.finish_hex();
}

std::string hata_sidecar_path(const std::string& model_path) {
  std::filesystem::path p(model_path);
  if (!p.has_filename()) p = p.parent_path();  // "folder/"
  if (std::filesystem::is_directory(p)) return p.string() + ".hata.gguf";
  if (p.filename() == "config.json") return p.parent_path().string() + ".hata.gguf";
  return (p.parent_path() / p.stem()).string() + ".hata.gguf";
}

std::vector<int32_t> hata_hashed_layers(int64_t n_layer, std::span<const int32_t> dense_layers) {
  std::vector<int32_t> out;
  for (int32_t l = 0; l < n_layer; ++l)
    if (std::find(dense_layers.begin(), dense_layers.end(), l) == dense_layers.end()) out.push_back(l);
  return out;
}

void fill_gaussian(uint64_t seed, float* out, size_t n) {
  std::mt19937_64 gen(seed);
  // Uniform in (0, 1]: 53 random bits, never 0 (log stays finite).
  auto uniform = [&] { return (static_cast<double>(gen() >> 11) + 1.0) * 0x1.0p-53; };
  for (size_t i = 0; i < n; i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 2.0 * std::numbers::pi * uniform();
    out[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < n) out[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
}

HataWeights random_hata_weights(const ModelConfig& c, std::vector<int32_t> layers, int64_t rbits,
                                uint64_t seed) {
  if (rbits <= 0 || rbits % 64 != 0)
    fail("hash bits: expected a positive multiple of 64 (e.g. 128), got {}", rbits);
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  HataWeights w;
  w.rbits = rbits;
  w.head_dim = c.head_dim;
  w.n_head = c.n_head;
  w.n_head_kv = c.n_head_kv;
  w.n_layer = c.n_layer;
  w.layers = std::move(layers);
  for (const int32_t l : w.layers) {
    if (l < 0 || l >= c.n_layer) fail("hashed layer {} is outside the model's {} layers", l, c.n_layer);
    std::vector<float> v(static_cast<size_t>(c.n_head_kv * c.head_dim * rbits));
    fill_gaussian(mix(seed, static_cast<uint64_t>(l)), v.data(), v.size());
    w.w.push_back(std::move(v));
  }
  w.train.seed = seed;
  return w;
}

void write_hata_sidecar(const std::string& path, const HataWeights& w) {
  ARIADNE_CHECK(w.w.size() == w.layers.size(), "hata weights: one tensor per hashed layer");
  GgufWriter out;
  out.set_string("general.architecture", "hata");
  out.set_string("general.type", "sidecar");
  out.set_u32("hata.version", kVersion);
  out.set_u32("hata.rbits", static_cast<uint32_t>(w.rbits));
  out.set_u32("hata.head_dim", static_cast<uint32_t>(w.head_dim));
  out.set_u32("hata.n_head", static_cast<uint32_t>(w.n_head));
  out.set_u32("hata.n_head_kv", static_cast<uint32_t>(w.n_head_kv));
  out.set_u32("hata.n_layer", static_cast<uint32_t>(w.n_layer));
  std::vector<uint32_t> layers(w.layers.begin(), w.layers.end());
  GgufValue layer_array;
  layer_array.type = GgufType::Array;
  layer_array.elem_type = GgufType::U32;
  layer_array.count = layers.size();
  layer_array.elems = reinterpret_cast<const uint8_t*>(layers.data());  // little-endian hosts only (x86, arm)
  out.set_value("hata.layers", layer_array);
  out.set_string("hata.score_mode", hata_score_name(w.score));
  out.set_bool("hata.post_rope", true);
  out.set_string("hata.base.fingerprint", w.fingerprint);
  const HataTrainInfo& t = w.train;
  out.set_f32("hata.train.sigma", static_cast<float>(t.sigma));
  out.set_f32("hata.train.eps", static_cast<float>(t.eps));
  out.set_f32("hata.train.lambda", static_cast<float>(t.lambda));
  out.set_f32("hata.train.eta", static_cast<float>(t.eta));
  out.set_f32("hata.train.lr", static_cast<float>(t.lr));
  out.set_f32("hata.train.momentum", static_cast<float>(t.momentum));
  out.set_f32("hata.train.wd", static_cast<float>(t.weight_decay));
  out.set_u32("hata.train.epochs", static_cast<uint32_t>(t.epochs));
  out.set_u32("hata.train.iters", static_cast<uint32_t>(t.iters));
  out.set_u32("hata.train.items", static_cast<uint32_t>(t.items));
  out.set_u32("hata.train.m", static_cast<uint32_t>(t.m));
  out.set_u32("hata.train.n_doc", static_cast<uint32_t>(t.n_doc));
  out.set_u32("hata.train.doc_len", static_cast<uint32_t>(t.doc_len));
  out.set_u64("hata.train.seed", t.seed);
  out.set_string("hata.train.corpus", t.corpus);
  out.set_f64("hata.train.seconds", t.seconds);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    ARIADNE_CHECK(static_cast<int64_t>(w.w[i].size()) == w.n_head_kv * w.head_dim * w.rbits,
                  "hata weights: tensor size");
    out.add_tensor("hata.blk." + std::to_string(w.layers[i]) + ".w", DType::F32,
                   {w.n_head_kv, w.head_dim, w.rbits});
  }
  out.begin(path);
  for (const auto& v : w.w) out.write_tensor_data(v.data(), v.size() * sizeof(float));
  out.finish();
}

HataWeights read_hata_sidecar(const std::string& path) {
  return read_hata_sidecar(GgufFile(path));
}

HataWeights read_hata_sidecar(const GgufFile& f) {
  const std::string& path = f.path();
  const std::string arch = f.get_string("general.architecture");
  if (arch != "hata")
    fail(
        "{}: general.architecture is '{}', expected 'hata' (a HATA sidecar from `ariadne calibrate --method "
        "hata`)",
        path, arch);
  const int64_t version = f.get_int("hata.version");
  if (version != kVersion)
    fail("{}: hata.version {} is not supported (expected {})", path, version, kVersion);
  HataWeights w;
  w.rbits = f.get_int("hata.rbits");
  w.head_dim = f.get_int("hata.head_dim");
  w.n_head = f.get_int("hata.n_head");
  w.n_head_kv = f.get_int("hata.n_head_kv");
  w.n_layer = f.get_int("hata.n_layer");
  if (w.rbits <= 0 || w.rbits % 64 != 0 || w.rbits > 4096)
    fail("{}: hata.rbits is {}, expected a multiple of 64 in [64, 4096]", path, w.rbits);
  if (w.head_dim <= 0 || w.head_dim > 1024 || w.n_head_kv <= 0 || w.n_head <= 0 ||
      w.n_head % w.n_head_kv != 0 || w.n_layer <= 0 || w.n_layer > 100000)
    fail("{}: head_dim {}, n_head {}, n_head_kv {}, n_layer {} are out of range", path, w.head_dim, w.n_head,
         w.n_head_kv, w.n_layer);
  w.layers = f.get_i32_array("hata.layers");
  for (size_t i = 0; i < w.layers.size(); ++i)
    if (w.layers[i] < 0 || w.layers[i] >= w.n_layer || (i > 0 && w.layers[i] <= w.layers[i - 1]))
      fail("{}: hata.layers must be ascending layers below n_layer {} (entry {} is {})", path, w.n_layer, i,
           w.layers[i]);
  const std::string mode = f.get_string("hata.score_mode", "norm");
  if (!parse_hata_score(mode, &w.score))
    fail("{}: hata.score_mode is '{}', expected norm or hamming", path, mode);
  if (!f.get_bool("hata.post_rope", true))
    fail("{}: hata.post_rope is false; only weights trained on post-RoPE queries and keys are supported",
         path);
  w.fingerprint = f.get_string("hata.base.fingerprint", "");
  HataTrainInfo& t = w.train;
  t.sigma = f.get_float("hata.train.sigma", t.sigma);
  t.eps = f.get_float("hata.train.eps", t.eps);
  t.lambda = f.get_float("hata.train.lambda", t.lambda);
  t.eta = f.get_float("hata.train.eta", t.eta);
  t.lr = f.get_float("hata.train.lr", t.lr);
  t.momentum = f.get_float("hata.train.momentum", t.momentum);
  t.weight_decay = f.get_float("hata.train.wd", t.weight_decay);
  t.epochs = f.get_int("hata.train.epochs", t.epochs);
  t.iters = f.get_int("hata.train.iters", t.iters);
  t.items = f.get_int("hata.train.items", t.items);
  t.m = f.get_int("hata.train.m", t.m);
  t.n_doc = f.get_int("hata.train.n_doc", t.n_doc);
  t.doc_len = f.get_int("hata.train.doc_len", t.doc_len);
  t.seed = static_cast<uint64_t>(f.get_int("hata.train.seed", 42));
  t.corpus = f.get_string("hata.train.corpus", "");
  t.seconds = f.get_float("hata.train.seconds", 0.0);
  const std::vector<int64_t> shape{w.n_head_kv, w.head_dim, w.rbits};
  for (const int32_t l : w.layers) {
    const std::string name = "hata.blk." + std::to_string(l) + ".w";
    const TensorView* t = f.find_tensor(name);
    if (t == nullptr) fail("{}: missing tensor '{}' (hata.layers lists layer {})", path, name, l);
    if (t->shape != shape)
      fail("{}: tensor '{}' has shape [{}], expected [{}, {}, {}] (n_head_kv, head_dim, rbits)", path, name,
           fmt::join(t->shape, ", "), w.n_head_kv, w.head_dim, w.rbits);
    std::vector<float> v(static_cast<size_t>(t->numel()));
    if (t->type == DType::F32) {
      std::memcpy(v.data(), t->data, v.size() * sizeof(float));
    } else if (t->type == DType::F16) {
      for (size_t i = 0; i < v.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        v[i] = f16_to_f32(h);
      }
    } else {
      fail("{}: tensor '{}' is {}, expected f32 or f16", path, name, dtype_name(t->type));
    }
    w.w.push_back(std::move(v));
  }
  return w;
}

void check_hata_weights(const HataWeights& w, const ModelSource& source, const std::string& path) {
  const ModelConfig& c = source.config;
  auto mismatch = [&](const char* field, int64_t have, int64_t want) {
    if (have != want)
      fail(
          "{}: {} is {} but the model {} has {}: these hash weights belong to another model (run ariadne "
          "calibrate --method hata)",
          path, field, have, source.path, want);
  };
  mismatch("hata.head_dim", w.head_dim, c.head_dim);
  mismatch("hata.n_head", w.n_head, c.n_head);
  mismatch("hata.n_head_kv", w.n_head_kv, c.n_head_kv);
  mismatch("hata.n_layer", w.n_layer, c.n_layer);
  const std::string fingerprint = hata_fingerprint(source);
  if (w.fingerprint != fingerprint)
    fail(
        "{}: hata.base.fingerprint {} does not match the model {} ({}): the weights were trained for another "
        "checkpoint (run ariadne calibrate --method hata)",
        path, w.fingerprint.empty() ? "(none)" : w.fingerprint, source.path, fingerprint);
}

}  // namespace ariadne
