#include "formats/model_source.h"

#include "core/error.h"

namespace ariadne {

std::string_view arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Mistral: return "mistral";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
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

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
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
