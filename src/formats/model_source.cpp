#include "formats/model_source.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace ariadne {

std::string_view arch_name(Arch a) {
  switch (a) {
    case Arch::Llama:
      return "llama";
    case Arch::Mistral:
      return "mistral";
    case Arch::Qwen2:
      return "qwen2";
    case Arch::Qwen3:
      return "qwen3";
  }
  return "unknown";
}

bool arch_from_name(std::string_view name, Arch* out) {
  for (Arch a : {Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3}) {
    if (arch_name(a) == name) {
      *out = a;
      return true;
    }
  }
  return false;
}

std::vector<float> rope_freq_divisors(const RopeConfig& r, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  if (!r.freq_factors.empty()) return r.freq_factors;
  std::vector<float> divisors(static_cast<size_t>(half), 1.0f);
  if (r.scaling != RopeScaling::Llama3) return divisors;
  const double low_freq_wavelen = static_cast<double>(r.original_context) / r.low_freq_factor;
  const double high_freq_wavelen = static_cast<double>(r.original_context) / r.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    const double inv = 1.0 / std::pow(static_cast<double>(r.theta), static_cast<double>(2 * i) / head_dim);
    const double wavelen = 2.0 * std::numbers::pi / inv;
    double divisor = 1.0;
    if (wavelen > low_freq_wavelen) {
      divisor = r.factor;
    } else if (wavelen >= high_freq_wavelen) {
      // inv' = (1 - smooth) * inv / factor + smooth * inv  (HF _compute_llama3_parameters)
      const double smooth = (static_cast<double>(r.original_context) / wavelen - r.low_freq_factor) /
                            (r.high_freq_factor - r.low_freq_factor);
      divisor = 1.0 / ((1.0 - smooth) / r.factor + smooth);
    }
    divisors[static_cast<size_t>(i)] = static_cast<float>(divisor);
  }
  return divisors;
}

const TensorView* ModelSource::find(std::string_view name) const {
  auto it = tensors.find(std::string(name));
  return it == tensors.end() ? nullptr : &it->second;
}

const TensorView& ModelSource::get(std::string_view name) const {
  const TensorView* t = find(name);
  if (t == nullptr) fail("{}: missing tensor '{}'", path, name);
  return *t;
}

const uint8_t* ModelSource::keep(std::vector<uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  const uint8_t* p = owned->data();
  storage.push_back(std::shared_ptr<const void>(owned, owned.get()));
  return p;
}

}  // namespace ariadne
