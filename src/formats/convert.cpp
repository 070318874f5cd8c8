#include "formats/convert.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_model.h"
#include "kernels/cpu/quants.h"

namespace ariadne {

DType output_type(const TensorView& t, DType requested) {
  if (t.shape.size() < 2) return DType::F32;
  if (t.cols() % block_size(requested) == 0) return requested;
  return requested == DType::F32 ? DType::F32 : DType::F16;
}

int64_t interleave_source_row(int64_t r, int64_t head_dim) {
  // Output row h*d + 2i + j holds input row h*d + j*d/2 + i (j = 0, 1): llama.cpp's `permute`.
  const int64_t h = r / head_dim;
  const int64_t within = r % head_dim;
  const int64_t i = within / 2;
  const int64_t j = within % 2;
  return h * head_dim + j * (head_dim / 2) + i;
}

namespace {

std::string default_name(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Which Q/K tensors need their rows interleaved for this source (see interleave_source_row).
bool needs_interleave(const ModelSource& s, const std::string& name) {
  if (s.config.rope.style != RopeStyle::NeoX) return false;
  if (s.config.arch != Arch::Llama && s.config.arch != Arch::Mistral) return false;
  const auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends("attn_q.weight") || ends("attn_k.weight") || ends("attn_q.bias") || ends("attn_k.bias");
}

// Re-encodes one tensor into `type`, interleaving rows if asked, streaming row chunks into the writer.
void write_tensor(GgufWriter& w, const TensorView& t, DType type, bool interleave, int64_t head_dim,
                  ThreadPool& pool) {
  const int64_t cols = t.cols();
  const int64_t rows = t.shape.size() < 2 ? 1 : t.rows();
  // A bias is a single row whose elements are the rows of the projection; permute it element-wise.
  const bool vector_permute = interleave && t.shape.size() == 1;
  const size_t in_row = row_bytes(t.type, cols);
  const size_t out_row = row_bytes(type, cols);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(1, cols * 4));
  std::vector<uint8_t> out;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    out.assign(static_cast<size_t>(n) * out_row, 0);
    pool.parallel_for(n, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(cols));
      std::vector<float> permuted;
      for (int64_t i = begin; i < end; ++i) {
        int64_t src = r0 + i;
        if (interleave && !vector_permute) src = interleave_source_row(src, head_dim);
        cpu::dequantize_row(t.type, t.data + static_cast<size_t>(src) * in_row, row.data(), cols);
        if (vector_permute) {
          permuted.resize(row.size());
          for (int64_t c = 0; c < cols; ++c) permuted[c] = row[interleave_source_row(c, head_dim)];
          row.swap(permuted);
        }
        cpu::quantize_row(type, row.data(), out.data() + static_cast<size_t>(i) * out_row, cols);
      }
    });
    w.write_tensor_data(out.data(), out.size());
  }
}

}  // namespace

void convert_to_gguf(const ModelSource& source, const std::string& out_path, const ConvertOptions& options,
                     ThreadPool& pool) {
  validate_model(source);
  const DType type = options.type;
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::Q8_0 &&
      type != DType::Q4_0 && type != DType::Q4_K && type != DType::Q6_K)
    fail("convert: unsupported output type '{}'", dtype_name(type));
  const ModelConfig& c = source.config;
  if (c.rope.style == RopeStyle::Interleaved && (c.arch == Arch::Qwen2 || c.arch == Arch::Qwen3))
    fail("{}: {} weights with interleaved RoPE rows cannot be written as GGUF", source.path,
         arch_name(c.arch));

  ModelConfig out_config = c;
  // llama.cpp reads Q/K of llama and mistral in the interleaved layout.
  if (c.arch == Arch::Llama || c.arch == Arch::Mistral) out_config.rope.style = RopeStyle::Interleaved;

  GgufWriter w;
  write_gguf_metadata(w, out_config, options.name.empty() ? default_name(source.path) : options.name);
  // llama.cpp's LLAMA_FTYPE: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, Q4_K_M 15, Q6_K 18, BF16
  // 32
  uint32_t file_type = 1;
  switch (type) {
    case DType::F32:
      file_type = 0;
      break;
    case DType::F16:
      file_type = 1;
      break;
    case DType::Q4_0:
      file_type = 2;
      break;
    case DType::Q8_0:
      file_type = 7;
      break;
    case DType::Q4_K:
      file_type = 15;
      break;
    case DType::Q6_K:
      file_type = 18;
      break;
    case DType::BF16:
      file_type = 32;
      break;
    default:
      break;
  }
  w.set_u32("general.file_type", file_type);
  if (options.extra_metadata) options.extra_metadata(w);

  // Tensors in llama.cpp's order: embeddings, (rope factors), per layer, then output norm and head.
  std::vector<const TensorView*> order;
  std::vector<std::string> names;
  for (const auto& [name, t] : source.tensors) names.push_back(name);
  auto layer_of = [](const std::string& n) -> int64_t {
    if (n.rfind("blk.", 0) != 0) return -1;
    return std::stoll(n.substr(4, n.find('.', 4) - 4));
  };
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    auto rank = [&](const std::string& n) -> int64_t {
      if (n == "token_embd.weight") return -2;
      const int64_t l = layer_of(n);
      return l >= 0 ? l : (int64_t{1} << 40);
    };
    return rank(a) < rank(b);
  });
  for (const std::string& n : names) order.push_back(&source.tensors.at(n));

  const std::vector<float> divisors = rope_freq_divisors(c.rope, c.head_dim);
  const bool write_rope_freqs = c.rope.scaling == RopeScaling::Llama3 || !c.rope.freq_factors.empty();
  if (write_rope_freqs) w.add_tensor("rope_freqs.weight", DType::F32, {c.head_dim / 2});
  for (const TensorView* t : order) w.add_tensor(t->name, output_type(*t, type), t->shape);

  w.begin(out_path);
  if (write_rope_freqs) w.write_tensor_data(divisors.data(), divisors.size() * sizeof(float));
  size_t done = 0;
  for (const TensorView* t : order) {
    write_tensor(w, *t, output_type(*t, type), needs_interleave(source, t->name), c.head_dim, pool);
    if (options.progress) options.progress(++done, order.size());
  }
  w.finish();
}

}  // namespace ariadne
