#include "formats/llama2c.h"

#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"

namespace ariadne {

namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);

// Header values and the derived sizes, in elements (floats) unless noted.
struct Layout {
  int64_t dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, seq_len = 0;
  bool shared_classifier = true;
  int64_t head_size = 0, kv_dim = 0;
  uint64_t total_bytes = 0;  // header + every array, exactly
};

// Overflow-checked a * b + c.
bool mul_add(uint64_t a, uint64_t b, uint64_t c, uint64_t* out) {
  uint64_t p = 0;
  return !__builtin_mul_overflow(a, b, &p) && !__builtin_add_overflow(p, c, out);
}

// Validates the header and computes the layout. On failure returns false with `why` naming the field.
bool compute_layout(const uint8_t* data, size_t size, Layout* l, std::string* why) {
  if (size < kHeaderBytes) {
    *why = fmt::format("{} bytes is too short for the 28-byte header", size);
    return false;
  }
  int32_t h[7];
  std::memcpy(h, data, kHeaderBytes);  // the format is little-endian, like every host we build for
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    // vocab_size may be negative (unshared classifier); every other value must be positive.
    const int64_t v = i == 5 ? (h[i] < 0 ? -static_cast<int64_t>(h[i]) : h[i]) : h[i];
    if (v <= 0) {
      *why = fmt::format("header field '{}' is {}, expected a positive value", names[i], h[i]);
      return false;
    }
  }
  l->dim = h[0];
  l->hidden = h[1];
  l->n_layers = h[2];
  l->n_heads = h[3];
  l->n_kv_heads = h[4];
  l->shared_classifier = h[5] > 0;
  l->vocab = h[5] > 0 ? h[5] : -static_cast<int64_t>(h[5]);
  l->seq_len = h[6];
  if (l->dim % l->n_heads != 0) {
    *why = fmt::format("header field 'dim' ({}) is not divisible by n_heads ({})", l->dim, l->n_heads);
    return false;
  }
  if (l->n_kv_heads > l->n_heads || l->n_heads % l->n_kv_heads != 0) {
    *why =
        fmt::format("header field 'n_kv_heads' ({}) does not divide n_heads ({})", l->n_kv_heads, l->n_heads);
    return false;
  }
  l->head_size = l->dim / l->n_heads;
  if (l->head_size % 2 != 0) {
    // run.c rotates pairs (2i, 2i + 1) inside a head, and freq_cis has head_size / 2 columns.
    *why = fmt::format("head size dim / n_heads = {} is odd, expected even", l->head_size);
    return false;
  }
  l->kv_dim = l->dim / l->n_heads * l->n_kv_heads;

  // All values fit int32, so each single product of two fits uint64; sums and the products with
  // n_layers are checked.
  const uint64_t dim = l->dim, hidden = l->hidden, kv_dim = l->kv_dim, vocab = l->vocab;
  uint64_t per_layer = 0;  // rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3
  bool ok = mul_add(dim, 2 * dim + 2 * kv_dim + 2 + 3 * hidden, 0, &per_layer);
  uint64_t floats = 0;
  ok = ok && mul_add(per_layer, static_cast<uint64_t>(l->n_layers), 0, &floats);
  ok = ok && mul_add(vocab, dim, floats, &floats);           // token_embedding
  ok = ok && !__builtin_add_overflow(floats, dim, &floats);  // rms_final
  ok = ok && mul_add(static_cast<uint64_t>(l->seq_len), static_cast<uint64_t>(l->head_size), floats,
                     &floats);                                                 // freq_cis real+imag
  if (!l->shared_classifier) ok = ok && mul_add(vocab, dim, floats, &floats);  // wcls
  ok = ok && mul_add(floats, 4, kHeaderBytes, &l->total_bytes);
  if (!ok) {
    *why = "header values imply a size that overflows 64 bits";
    return false;
  }
  // Exact match, not "at least": export.py writes nothing after the last array, and a size that differs
  // means a wrong header or a different format (e.g. a versioned export) rather than harmless padding.
  if (l->total_bytes != size) {
    *why = fmt::format(
        "file size {} bytes does not match the {} bytes implied by the header (dim {}, hidden_dim {}, "
        "n_layers {}, n_heads {}, n_kv_heads {}, vocab_size {}, seq_len {})",
        size, l->total_bytes, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    return false;
  }
  return true;
}

}  // namespace

bool looks_like_llama2c(const uint8_t* data, size_t size) {
  Layout l;
  std::string why;
  return compute_layout(data, size, &l, &why);
}

std::unique_ptr<ModelSource> load_llama2c_model(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  auto src = parse_llama2c_model(file->data(), file->size(), path);
  src->storage.push_back(file);
  return src;
}

std::unique_ptr<ModelSource> parse_llama2c_model(const uint8_t* data, size_t size, const std::string& path) {
  ARIADNE_CHECK(reinterpret_cast<uintptr_t>(data) % alignof(float) == 0,
                "llama2.c bytes must be 4-byte aligned (the weights are viewed as floats in place)");
  Layout l;
  std::string why;
  if (!compute_layout(data, size, &l, &why)) {
    if (size >= 4 && std::memcmp(data, "24ka", 4) == 0) {
      // export.py version >= 1 writes magic 0x616b3432 ("ak42" as a little-endian uint32) first.
      fail("{}: a versioned llama2.c export (magic 'ak42'); only the legacy (version 0) format is supported",
           path);
    }
    fail("{}: not a valid llama2.c checkpoint: {}", path, why);
  }

  auto src = std::make_unique<ModelSource>();
  src->path = path;
  src->format = "llama2c";
  ModelConfig& c = src->config;
  c.arch = Arch::Llama;
  c.n_vocab = l.vocab;
  c.n_embd = l.dim;
  c.n_layer = l.n_layers;
  c.n_head = l.n_heads;
  c.n_head_kv = l.n_kv_heads;
  c.head_dim = l.head_size;
  c.n_ff = l.hidden;
  c.n_ctx_train = l.seq_len;
  c.rms_eps = 1e-5f;  // run.c rmsnorm
  c.rope.theta = 10000.0f;
  c.rope.style = RopeStyle::Interleaved;  // run.c rotates pairs (i, i + 1)
  c.rope.scaling = RopeScaling::None;
  c.tied_output = l.shared_classifier;
  c.bos_id = 1;  // llama2.c's sentencepiece vocabulary: <s> = 1, </s> = 2
  c.eos_id = 2;

  // Offsets fit: their sum is total_bytes, which was computed with overflow checks and equals the file size.
  // Every array starts at 28 + 4k, so f32 views in place are 4-byte aligned.
  const float* cursor = reinterpret_cast<const float*>(data + kHeaderBytes);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const float* data) {
    TensorView v;
    v.name = name;
    v.type = DType::F32;
    v.shape = std::move(shape);
    v.data = reinterpret_cast<const uint8_t*>(data);
    v.nbytes = static_cast<size_t>(v.numel()) * sizeof(float);
    src->tensors[name] = std::move(v);
  };
  // Views one per-layer array [n_layers][rows][cols] as blk.{i}.<name> and advances past it.
  auto add_layers = [&](const char* name, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < l.n_layers; ++i) {
      std::vector<int64_t> shape = rows == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
      add(fmt::format("blk.{}.{}", i, name), std::move(shape), cursor + i * rows * cols);
    }
    cursor += l.n_layers * rows * cols;
  };

  add("token_embd.weight", {l.vocab, l.dim}, cursor);
  cursor += l.vocab * l.dim;
  add_layers("attn_norm.weight", 1, l.dim);
  add_layers("attn_q.weight", l.dim, l.dim);
  add_layers("attn_k.weight", l.kv_dim, l.dim);
  add_layers("attn_v.weight", l.kv_dim, l.dim);
  add_layers("attn_output.weight", l.dim, l.dim);
  add_layers("ffn_norm.weight", 1, l.dim);
  add_layers("ffn_gate.weight", l.hidden, l.dim);  // w1
  add_layers("ffn_down.weight", l.dim, l.hidden);  // w2
  add_layers("ffn_up.weight", l.hidden, l.dim);    // w3
  add("output_norm.weight", {l.dim}, cursor);
  cursor += l.dim;
  cursor += l.seq_len * l.head_size;  // freq_cis_real + freq_cis_imag, each [seq_len][head_size / 2]
  if (!l.shared_classifier) {
    add("output.weight", {l.vocab, l.dim}, cursor);
    cursor += l.vocab * l.dim;
  }
  ARIADNE_CHECK(reinterpret_cast<const uint8_t*>(cursor) == data + l.total_bytes,
                "llama2.c layout walk disagrees with the computed size");
  return src;
}

}  // namespace ariadne
