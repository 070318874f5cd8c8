// HATA's hash weights (../shared/specs/hata.md): one projection W per (hashed layer, KV head), the sidecar
// file that carries them (§2.4), the base model's fingerprint they belong to, and the random Gaussian
// weights of the `hash-random` baseline (§5). Training is in hata_train.h, the decode-time selection in
// sparse_attention.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_source.h"

namespace ariadne {

class GgufFile;

// How a key's score is formed from the Hamming distances of its group's query codes (§2.2).
enum class HataScore {
  Norm,     // (G - 2 * sum_h ham / r) * |k|: larger is better (the paper-era default)
  Hamming,  // sum_h ham: smaller is better
};
std::string_view hata_score_name(HataScore s);                 // "norm", "hamming"
bool parse_hata_score(std::string_view name, HataScore* out);  // false for any other name

// What `calibrate` used (§2.3), recorded in the sidecar as hata.train.*.
struct HataTrainInfo {
  double sigma = 0.1;
  double eps = 0.01;
  double lambda = 1.0;
  double eta = 2.0;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 1e-6;
  int64_t epochs = 15;
  int64_t iters = 20;     // full-batch steps per epoch
  int64_t items = 98304;  // N, items drawn per epoch
  int64_t m = 8;          // query positions per document
  int64_t n_doc = 16;     // documents
  int64_t doc_len = 0;    // tokens per document
  uint64_t seed = 42;
  std::string corpus;  // what the text was (file name and a hash of its bytes)
  double seconds = 0;  // wall time of collection and training
};

struct HataWeights {
  int64_t rbits = 128;  // r, a multiple of 64
  int64_t head_dim = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_layer = 0;
  std::vector<int32_t> layers;        // the hashed layers, ascending
  std::vector<std::vector<float>> w;  // [layers.size()] -> [n_head_kv][head_dim][rbits] (W of §2: D x r)
  HataScore score = HataScore::Norm;
  std::string fingerprint;  // hata_fingerprint() of the base model
  HataTrainInfo train;

  // W of `layer` ([n_head_kv][head_dim][rbits]), or null when the layer is not hashed.
  const float* layer(int64_t layer) const;
  float* layer(int64_t layer);
};

// SHA-256 (hex) of the base model's K-projection tensors in layer order: for each layer the bytes of
// attn_k.weight, then attn_k.bias and attn_k_norm.weight where the family has them (what a key depends on
// before RoPE).
std::string hata_fingerprint(const ModelSource& source);

// `<model>.hata.gguf` beside the model: the file's name without its extension, or the folder's name.
std::string hata_sidecar_path(const std::string& model_path);

// Every layer except the dense ones, ascending.
std::vector<int32_t> hata_hashed_layers(int64_t n_layer, std::span<const int32_t> dense_layers);

// W ~ N(0, 1) i.i.d. for every hashed layer (the initialisation of §2.3 and the hash-random baseline):
// layer l's values come from the generator seeded with (seed, l), so they do not depend on which other
// layers are hashed.
HataWeights random_hata_weights(const ModelConfig& config, std::vector<int32_t> layers, int64_t rbits,
                                uint64_t seed);

// n standard normal draws (Box-Muller over mt19937_64), the same on every platform.
void fill_gaussian(uint64_t seed, float* out, size_t n);

// GGUF v3 sidecar (§2.4). F32 tensors; reading also takes F16.
void write_hata_sidecar(const std::string& path, const HataWeights& weights);
// Throws Error naming the file and the field on anything malformed or inconsistent.
HataWeights read_hata_sidecar(const std::string& path);
// The same over a parsed GGUF (a file, or a buffer: the fuzz target); errors name f.path().
HataWeights read_hata_sidecar(const GgufFile& f);

// Refuses (Error naming the sidecar, the field and both values) weights made for another model: head
// counts, head_dim, layer count, hashed layers out of range, or another fingerprint.
void check_hata_weights(const HataWeights& weights, const ModelSource& source, const std::string& path);

}  // namespace ariadne
