#include "runtime/chelsea_sidecar.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/gguf.h"

namespace ariadne {

namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void fnv(uint64_t* h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= kFnvPrime;
  }
}

void fnv_u64(uint64_t* h, uint64_t v) {
  fnv(h, &v, sizeof(v));
}

}  // namespace

std::string chelsea_sidecar_path(const std::string& model_path) {
  std::filesystem::path p(model_path);
  if (p.filename() == "config.json") p = p.parent_path();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s + ".chelsea.gguf";
}

std::string model_fingerprint(const ModelSource& source) {
  const ModelConfig& c = source.config;
  uint64_t h = kFnvOffset;
  const std::string_view arch = arch_name(c.arch);
  fnv(&h, arch.data(), arch.size());
  for (const int64_t v : {c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff})
    fnv_u64(&h, static_cast<uint64_t>(v));
  constexpr size_t kSample = 64 * 1024;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const TensorView& k = source.get("blk." + std::to_string(il) + ".attn_k.weight");
    const std::string_view type = dtype_name(k.type);
    fnv(&h, type.data(), type.size());
    for (const int64_t dim : k.shape) fnv_u64(&h, static_cast<uint64_t>(dim));
    const auto* bytes = static_cast<const uint8_t*>(k.data);
    if (k.nbytes <= 3 * kSample) {
      fnv(&h, bytes, k.nbytes);
    } else {
      fnv(&h, bytes, kSample);
      fnv(&h, bytes + (k.nbytes - kSample) / 2, kSample);
      fnv(&h, bytes + k.nbytes - kSample, kSample);
    }
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

void write_chelsea_sidecar(const std::string& path, const ChelseaSidecar& s) {
  GgufWriter w;
  w.set_string("general.architecture", "chelsea");
  w.set_string("general.type", "sidecar");
  w.set_u32("chelsea.version", 1);
  std::vector<uint32_t> ids(s.outliers.begin(), s.outliers.end());
  GgufValue arr;
  arr.type = GgufType::Array;
  arr.elem_type = GgufType::U32;
  arr.count = ids.size();
  arr.elems = reinterpret_cast<const uint8_t*>(ids.data());  // little-endian hosts only, as the whole format
  w.set_value("chelsea.outliers", arr);
  w.set_f32("chelsea.calib_ratio", static_cast<float>(s.calib_ratio));
  w.set_f32("chelsea.outlier_fraction", static_cast<float>(s.outlier_fraction));
  w.set_u32("chelsea.n_layer", static_cast<uint32_t>(s.n_layer));
  w.set_u32("chelsea.n_head_kv", static_cast<uint32_t>(s.n_head_kv));
  w.set_u32("chelsea.head_dim", static_cast<uint32_t>(s.head_dim));
  w.set_string("chelsea.base.fingerprint", s.fingerprint);
  w.set_u32("chelsea.calib.windows", static_cast<uint32_t>(s.windows));
  w.set_u32("chelsea.calib.ctx", static_cast<uint32_t>(s.ctx));
  w.set_u32("chelsea.calib.steps", static_cast<uint32_t>(s.steps));
  w.set_u32("chelsea.calib.sink", static_cast<uint32_t>(s.sink));
  w.set_u32("chelsea.calib.recent", static_cast<uint32_t>(s.recent));
  w.set_u32("chelsea.calib.chunk", static_cast<uint32_t>(s.chunk));
  w.set_u32("chelsea.calib.interval", static_cast<uint32_t>(s.interval));
  w.set_string("chelsea.calib.text", s.text);
  w.set_f32_array("chelsea.head_errors", s.head_errors);
  w.begin(path);
  w.finish();
}

ChelseaSidecar read_chelsea_sidecar(const std::string& path) {
  return read_chelsea_sidecar(GgufFile(path));
}

ChelseaSidecar read_chelsea_sidecar(const GgufFile& f) {
  const std::string& path = f.path();
  if (f.get_string("general.architecture", "") != "chelsea" || f.get_string("general.type", "") != "sidecar")
    fail("{}: not a Chelsea sidecar (general.architecture must be \"chelsea\" and general.type \"sidecar\")",
         path);
  if (f.get_int("chelsea.version") != 1)
    fail("{}: chelsea.version {} is not supported (expected 1)", path, f.get_int("chelsea.version"));
  ChelseaSidecar s;
  s.outliers = f.get_i32_array("chelsea.outliers");
  s.calib_ratio = f.get_float("chelsea.calib_ratio");
  s.outlier_fraction = f.get_float("chelsea.outlier_fraction", 0.0);
  s.n_layer = f.get_int("chelsea.n_layer");
  s.n_head_kv = f.get_int("chelsea.n_head_kv");
  s.head_dim = f.get_int("chelsea.head_dim", 0);
  s.fingerprint = f.get_string("chelsea.base.fingerprint");
  s.windows = f.get_int("chelsea.calib.windows", 0);
  s.ctx = f.get_int("chelsea.calib.ctx", 0);
  s.steps = f.get_int("chelsea.calib.steps", 0);
  s.sink = f.get_int("chelsea.calib.sink", 0);
  s.recent = f.get_int("chelsea.calib.recent", 0);
  s.chunk = f.get_int("chelsea.calib.chunk", 0);
  s.interval = f.get_int("chelsea.calib.interval", 0);
  s.text = f.get_string("chelsea.calib.text", "");
  if (f.has("chelsea.head_errors")) s.head_errors = f.get_f32_array("chelsea.head_errors");
  // Bounds before the product: a model has far fewer layers and heads, and n_layer x n_head_kv must stay a
  // head id (int32), as the outliers store it.
  if (s.n_layer <= 0 || s.n_layer > 100000 || s.n_head_kv <= 0 || s.n_head_kv > 4096)
    fail("{}: chelsea.n_layer {} and chelsea.n_head_kv {} must be in [1, 100000] and [1, 4096]", path,
         s.n_layer, s.n_head_kv);
  const int64_t n_heads = s.n_layer * s.n_head_kv;
  if (!s.head_errors.empty() && static_cast<int64_t>(s.head_errors.size()) != n_heads)
    fail("{}: chelsea.head_errors has {} values, expected one per head (n_layer x n_head_kv = {})", path,
         s.head_errors.size(), n_heads);
  if (!(s.calib_ratio > 0 && s.calib_ratio <= INT32_MAX))
    fail("{}: chelsea.calib_ratio {} is not a budget", path, s.calib_ratio);
  for (size_t i = 0; i < s.outliers.size(); ++i)
    if (s.outliers[i] < 0 || s.outliers[i] >= n_heads || (i > 0 && s.outliers[i] <= s.outliers[i - 1]))
      fail("{}: chelsea.outliers must be ascending head ids below {} (n_layer x n_head_kv); entry {} is {}",
           path, n_heads, i, s.outliers[i]);
  return s;
}

ChelseaOutliers load_chelsea_outliers(const ModelSource& source, double budget, const std::string& path) {
  ChelseaOutliers r;
  const std::string file = path.empty() ? chelsea_sidecar_path(source.path) : path;
  if (!std::filesystem::exists(file)) {
    if (!path.empty()) fail("{}: the Chelsea sidecar does not exist", path);
    r.note = "no outlier sidecar (" + file +
             "; `ariadne calibrate --method chelsea` writes one): every head compressed";
    return r;
  }
  const ChelseaSidecar s = read_chelsea_sidecar(file);
  const ModelConfig& c = source.config;
  if (s.n_layer != c.n_layer || s.n_head_kv != c.n_head_kv)
    fail(
        "{}: the sidecar is for {} layers x {} KV heads, the model {} has {} x {} (recalibrate or remove it)",
        file, s.n_layer, s.n_head_kv, source.path, c.n_layer, c.n_head_kv);
  const std::string fp = model_fingerprint(source);
  if (s.fingerprint != fp)
    fail(
        "{}: the sidecar belongs to another checkpoint (fingerprint {}, the model's is {}); recalibrate with "
        "`ariadne calibrate --method chelsea` or remove it",
        file, s.fingerprint, fp);
  if (std::fabs(s.calib_ratio - budget) > 1e-6 * std::max(1.0, budget)) {
    r.note = fmt::format(
        "outlier sidecar {} was calibrated at budget {}, not {}: not used (every head compressed)", file,
        s.calib_ratio, budget);
    return r;
  }
  r.outliers = s.outliers;
  r.path = file;
  r.note = fmt::format("{} outlier heads kept full, from {}", s.outliers.size(), file);
  return r;
}

}  // namespace ariadne
