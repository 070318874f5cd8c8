#include "formats/gguf.h"

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace ariadne {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kWriteVersion = 3;
constexpr uint32_t kMaxDims = 4;   // ggml's GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are not plausible metadata
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
constexpr std::string_view kAlignmentKey = "general.alignment";

// Smallest encoding of one item, used to reject counts that cannot fit in the bytes that remain before
// allocating anything for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims = 0, type, offset
constexpr uint64_t kMinArrayBytes = 4 + 8;               // element type, count (empty array)

bool is_valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::F64);
}

// Names of ggml type ids (ggml.h's enum ggml_type), so an error says what the file holds even for types
// Ariadne cannot load.
std::string_view ggml_type_label(uint32_t id) {
  // clang-format off
  static constexpr std::array<std::string_view, 43> kNames = {
      "f32", "f16", "q4_0", "q4_1", "q4_2(removed)", "q4_3(removed)", "q5_0", "q5_1", "q8_0", "q8_1",
      "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
      "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
      "bf16", "q4_0_4_4(removed)", "q4_0_4_8(removed)", "q4_0_8_8(removed)", "tq1_0", "tq2_0",
      "iq4_nl_4_4(removed)", "iq4_nl_4_8(removed)", "iq4_nl_8_8(removed)", "mxfp4", "nvfp4", "q1_0", "q2_0"};
  // clang-format on
  return id < kNames.size() ? kNames[id] : std::string_view("unknown");
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

// Rounds x up to a multiple of the power of two a; false on overflow.
bool align_up(uint64_t x, uint64_t a, uint64_t* out) {
  uint64_t t;
  if (add_overflows(x, a - 1, &t)) return false;
  *out = t & ~(a - 1);
  return true;
}

// Bounds-checked little-endian reads over the file bytes. context_ names what is being read so that a
// truncation error says where (e.g. "metadata key 'tokenizer.ggml.tokens'").
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  void need(uint64_t n) const {
    if (n > remaining())
      fail("{}: truncated file: {} needs {} bytes at offset {}, but the file ends at {}", path_, context_, n,
           pos_, size_);
  }

  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  const uint8_t* take(uint64_t n) {
    need(n);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  std::string_view read_string() {
    const uint64_t len = read<uint64_t>();
    if (len > remaining())
      fail("{}: {}: string length {} at offset {} exceeds the {} bytes left in the file", path_, context_,
           len, pos_ - 8, remaining());
    return {reinterpret_cast<const char*>(take(len)), static_cast<size_t>(len)};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  std::string context_;
};

void read_value(Cursor& c, const std::string& path, GgufType type, GgufValue* out, int depth);

void read_array(Cursor& c, const std::string& path, GgufValue* out, int depth) {
  const uint32_t et = c.read<uint32_t>();
  if (!is_valid_type(et))
    fail("{}: {}: unknown array element type {} (expected 0..12)", path, c.context(), et);
  out->elem_type = static_cast<GgufType>(et);
  out->count = c.read<uint64_t>();
  if (out->elem_type == GgufType::Array && depth + 1 >= kMaxArrayDepth)
    fail("{}: {}: arrays nested deeper than {} levels", path, c.context(), kMaxArrayDepth);

  const uint64_t fixed = gguf_type_size(out->elem_type);
  const uint64_t min_elem = fixed != 0 ? fixed : out->elem_type == GgufType::String ? 8 : kMinArrayBytes;
  if (out->count > c.remaining() / min_elem)
    fail("{}: {}: array of {} {} elements cannot fit in the {} bytes left in the file", path, c.context(),
         out->count, gguf_type_name(out->elem_type), c.remaining());

  if (fixed != 0) {
    out->elems = c.take(out->count * fixed);
    if (out->elem_type == GgufType::Bool) {
      for (uint64_t k = 0; k < out->count; ++k)
        if (out->elems[k] > 1)
          fail("{}: {}: bool array element {} is {} (expected 0 or 1)", path, c.context(), k, out->elems[k]);
    }
  } else if (out->elem_type == GgufType::String) {
    out->strings.reserve(out->count);
    for (uint64_t k = 0; k < out->count; ++k) out->strings.push_back(c.read_string());
  } else {
    out->arrays.resize(out->count);
    for (uint64_t k = 0; k < out->count; ++k)
      read_value(c, path, GgufType::Array, &out->arrays[k], depth + 1);
  }
}

void read_value(Cursor& c, const std::string& path, GgufType type, GgufValue* out, int depth) {
  out->type = type;
  switch (type) {
    case GgufType::U8:
      out->u = c.read<uint8_t>();
      break;
    case GgufType::I8:
      out->i = c.read<int8_t>();
      break;
    case GgufType::U16:
      out->u = c.read<uint16_t>();
      break;
    case GgufType::I16:
      out->i = c.read<int16_t>();
      break;
    case GgufType::U32:
      out->u = c.read<uint32_t>();
      break;
    case GgufType::I32:
      out->i = c.read<int32_t>();
      break;
    case GgufType::U64:
      out->u = c.read<uint64_t>();
      break;
    case GgufType::I64:
      out->i = c.read<int64_t>();
      break;
    case GgufType::F32:
      out->f = c.read<float>();
      break;
    case GgufType::F64:
      out->f = c.read<double>();
      break;
    case GgufType::Bool: {
      const uint8_t b = c.read<uint8_t>();
      if (b > 1) fail("{}: {}: bool value is {} (expected 0 or 1)", path, c.context(), b);
      out->u = b;
      break;
    }
    case GgufType::String:
      out->str = c.read_string();
      break;
    case GgufType::Array:
      read_array(c, path, out, depth);
      break;
  }
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element k of a fixed-size-element array as int64 (integer types) — false when it does not fit.
bool array_int_at(const GgufValue& v, uint64_t k, int64_t* out) {
  const uint8_t* p = v.elems + k * gguf_type_size(v.elem_type);
  switch (v.elem_type) {
    case GgufType::U8:
      *out = load_le<uint8_t>(p);
      return true;
    case GgufType::I8:
      *out = load_le<int8_t>(p);
      return true;
    case GgufType::U16:
      *out = load_le<uint16_t>(p);
      return true;
    case GgufType::I16:
      *out = load_le<int16_t>(p);
      return true;
    case GgufType::U32:
      *out = load_le<uint32_t>(p);
      return true;
    case GgufType::I32:
      *out = load_le<int32_t>(p);
      return true;
    case GgufType::I64:
      *out = load_le<int64_t>(p);
      return true;
    case GgufType::U64: {
      const uint64_t u = load_le<uint64_t>(p);
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
      *out = static_cast<int64_t>(u);
      return true;
    }
    default:
      return false;
  }
}

void append_escaped(std::string* out, std::string_view s, size_t max_chars) {
  out->push_back('"');
  const size_t n = std::min(s.size(), max_chars);
  for (size_t k = 0; k < n; ++k) {
    const unsigned char ch = static_cast<unsigned char>(s[k]);
    switch (ch) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\r':
        *out += "\\r";
        break;
      default:
        if (ch < 0x20 || ch == 0x7f)
          *out += fmt::format("\\x{:02x}", ch);
        else
          out->push_back(static_cast<char>(ch));
    }
  }
  out->push_back('"');
  if (s.size() > max_chars) *out += fmt::format("...({} bytes)", s.size());
}

std::string array_element_to_string(const GgufValue& v, uint64_t k, size_t max_elems, size_t max_chars) {
  switch (v.elem_type) {
    case GgufType::String: {
      std::string s;
      append_escaped(&s, v.strings[k], max_chars);
      return s;
    }
    case GgufType::Array:
      return gguf_value_to_string(v.arrays[k], max_elems, max_chars);
    case GgufType::Bool:
      return v.elems[k] ? "true" : "false";
    case GgufType::F32:
      return fmt::format("{}", load_le<float>(v.elems + 4 * k));
    case GgufType::F64:
      return fmt::format("{}", load_le<double>(v.elems + 8 * k));
    default: {
      if (v.elem_type == GgufType::U64) return fmt::format("{}", load_le<uint64_t>(v.elems + 8 * k));
      int64_t x = 0;
      array_int_at(v, k, &x);
      return fmt::format("{}", x);
    }
  }
}

void put_u32(std::vector<uint8_t>* b, uint32_t v) {
  const size_t at = b->size();
  b->resize(at + 4);
  std::memcpy(b->data() + at, &v, 4);
}
void put_u64(std::vector<uint8_t>* b, uint64_t v) {
  const size_t at = b->size();
  b->resize(at + 8);
  std::memcpy(b->data() + at, &v, 8);
}
void put_bytes(std::vector<uint8_t>* b, const void* p, size_t n) {
  const auto* s = static_cast<const uint8_t*>(p);
  b->insert(b->end(), s, s + n);
}
void put_string(std::vector<uint8_t>* b, std::string_view s) {
  put_u64(b, s.size());
  put_bytes(b, s.data(), s.size());
}

// Serializes v's payload (not its type id).
void put_value(std::vector<uint8_t>* b, const GgufValue& v, int depth) {
  ARIADNE_CHECK(depth < kMaxArrayDepth, "GGUF value nested too deeply");
  switch (v.type) {
    case GgufType::U8:
    case GgufType::Bool: {
      const uint8_t x = static_cast<uint8_t>(v.u);
      put_bytes(b, &x, 1);
      break;
    }
    case GgufType::I8: {
      const int8_t x = static_cast<int8_t>(v.i);
      put_bytes(b, &x, 1);
      break;
    }
    case GgufType::U16: {
      const uint16_t x = static_cast<uint16_t>(v.u);
      put_bytes(b, &x, 2);
      break;
    }
    case GgufType::I16: {
      const int16_t x = static_cast<int16_t>(v.i);
      put_bytes(b, &x, 2);
      break;
    }
    case GgufType::U32:
      put_u32(b, static_cast<uint32_t>(v.u));
      break;
    case GgufType::I32:
      put_u32(b, static_cast<uint32_t>(static_cast<int32_t>(v.i)));
      break;
    case GgufType::U64:
      put_u64(b, v.u);
      break;
    case GgufType::I64:
      put_u64(b, static_cast<uint64_t>(v.i));
      break;
    case GgufType::F32: {
      const float x = static_cast<float>(v.f);
      put_bytes(b, &x, 4);
      break;
    }
    case GgufType::F64:
      put_bytes(b, &v.f, 8);
      break;
    case GgufType::String:
      put_string(b, v.str);
      break;
    case GgufType::Array: {
      put_u32(b, static_cast<uint32_t>(v.elem_type));
      put_u64(b, v.count);
      const size_t fixed = gguf_type_size(v.elem_type);
      if (fixed != 0) {
        ARIADNE_CHECK(v.count == 0 || v.elems != nullptr, "GGUF array value without elements");
        put_bytes(b, v.elems, v.count * fixed);
      } else if (v.elem_type == GgufType::String) {
        ARIADNE_CHECK(v.strings.size() == v.count, "GGUF string array count mismatch");
        for (std::string_view s : v.strings) put_string(b, s);
      } else {
        ARIADNE_CHECK(v.arrays.size() == v.count, "GGUF nested array count mismatch");
        for (const GgufValue& a : v.arrays) {
          ARIADNE_CHECK(a.type == GgufType::Array, "GGUF nested array element is not an array");
          put_value(b, a, depth + 1);
        }
      }
      break;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Types and values

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "u8";
    case GgufType::I8:
      return "i8";
    case GgufType::U16:
      return "u16";
    case GgufType::I16:
      return "i16";
    case GgufType::U32:
      return "u32";
    case GgufType::I32:
      return "i32";
    case GgufType::F32:
      return "f32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "string";
    case GgufType::Array:
      return "array";
    case GgufType::U64:
      return "u64";
    case GgufType::I64:
      return "i64";
    case GgufType::F64:
      return "f64";
  }
  return "unknown";
}

bool gguf_type_is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

size_t gguf_type_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    case GgufType::String:
    case GgufType::Array:
      return 0;
  }
  return 0;
}

std::string GgufValue::type_string() const {
  if (type != GgufType::Array) return std::string(gguf_type_name(type));
  return fmt::format("array of {}", gguf_type_name(elem_type));
}

std::string gguf_value_to_string(const GgufValue& v, size_t max_elems, size_t max_chars) {
  switch (v.type) {
    case GgufType::U8:
    case GgufType::U16:
    case GgufType::U32:
    case GgufType::U64:
      return fmt::format("{}", v.u);
    case GgufType::I8:
    case GgufType::I16:
    case GgufType::I32:
    case GgufType::I64:
      return fmt::format("{}", v.i);
    // f32 printed as a float so that 1e-5f reads "1e-05", not its double expansion.
    case GgufType::F32:
      return fmt::format("{}", static_cast<float>(v.f));
    case GgufType::F64:
      return fmt::format("{}", v.f);
    case GgufType::Bool:
      return v.u ? "true" : "false";
    case GgufType::String: {
      std::string s;
      append_escaped(&s, v.str, max_chars);
      return s;
    }
    case GgufType::Array: {
      std::string s = "[";
      const uint64_t shown = std::min<uint64_t>(v.count, max_elems);
      for (uint64_t k = 0; k < shown; ++k) {
        if (k > 0) s += ", ";
        s += array_element_to_string(v, k, max_elems, max_chars);
      }
      if (shown < v.count)
        s += shown > 0 ? ", ...]" : "...]";
      else
        s += "]";
      if (shown < v.count) s += fmt::format(" ({} x {})", v.count, gguf_type_name(v.elem_type));
      return s;
    }
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(const std::string& path) : path_(path) {
  mapping_ = std::make_shared<MappedFile>(path);
  data_ = mapping_->data();
  size_ = mapping_->size();
  parse();
}

GgufFile::GgufFile(const uint8_t* data, size_t size, std::string name)
    : path_(std::move(name)), data_(data), size_(size) {
  parse();
}

void GgufFile::parse() {
  Cursor c(data_, size_, path_);
  c.set_context("header");
  if (size_ < 4 || load_le<uint32_t>(data_) != kMagic) {
    const std::string_view got(reinterpret_cast<const char*>(data_), std::min<size_t>(size_, 4));
    std::string shown;
    append_escaped(&shown, got, 4);
    fail("{}: not a GGUF file: starts with {}, expected \"GGUF\"", path_, shown);
  }
  c.take(4);
  version_ = c.read<uint32_t>();
  if (version_ == 1)
    fail(
        "{}: GGUF version 1 is not supported (its counts are 32-bit); convert the model with a newer "
        "llama.cpp",
        path_);
  if (version_ != 2 && version_ != 3) {
    // A big-endian file stores 3 as 0x03000000.
    if ((version_ & 0xffffu) == 0 && (version_ >> 24) <= 3)
      fail("{}: big-endian GGUF files are not supported (version field {:#010x})", path_, version_);
    fail("{}: unsupported GGUF version {} (supported: 2, 3)", path_, version_);
  }
  const uint64_t n_tensors = c.read<uint64_t>();
  const uint64_t n_kv = c.read<uint64_t>();
  // Cap both counts by the bytes that remain, so a corrupt count cannot make us allocate gigabytes.
  if (n_kv > c.remaining() / kMinKvBytes)
    fail("{}: implausible metadata count {} for a file of {} bytes", path_, n_kv, size_);
  if (n_tensors > c.remaining() / kMinTensorInfoBytes ||
      n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > c.remaining())
    fail("{}: implausible tensor count {} (with {} metadata entries) for a file of {} bytes", path_,
         n_tensors, n_kv, size_);

  kvs_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    c.set_context(fmt::format("metadata entry {} (key)", k));
    const std::string_view key = c.read_string();
    if (key_index_.count(key) != 0) fail("{}: duplicate metadata key '{}'", path_, key);
    c.set_context(fmt::format("metadata key '{}'", key));
    const uint32_t type = c.read<uint32_t>();
    if (!is_valid_type(type))
      fail("{}: metadata key '{}': unknown value type {} (expected 0..12)", path_, key, type);
    GgufKeyValue kv;
    kv.key = std::string(key);
    read_value(c, path_, static_cast<GgufType>(type), &kv.value, 0);
    key_index_.emplace(kv.key, kvs_.size());
    kvs_.push_back(std::move(kv));
  }

  if (const GgufValue* a = find(kAlignmentKey)) {
    const int64_t align = get_int(kAlignmentKey);
    if (align <= 0 || static_cast<uint64_t>(align) > kMaxAlignment || (align & (align - 1)) != 0)
      fail("{}: metadata key '{}': alignment {} is not a power of two between 1 and {}", path_, kAlignmentKey,
           gguf_value_to_string(*a), kMaxAlignment);
    alignment_ = static_cast<uint64_t>(align);
  }

  tensors_.reserve(n_tensors);
  ggml_types_.reserve(n_tensors);
  std::vector<uint64_t> offsets;  // [n_tensors] relative to the data section, known before its start is
  offsets.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    c.set_context(fmt::format("tensor info {} (name)", k));
    const std::string_view name = c.read_string();
    if (tensor_index_.count(name) != 0) fail("{}: duplicate tensor name '{}'", path_, name);
    c.set_context(fmt::format("tensor '{}'", name));
    const uint32_t n_dims = c.read<uint32_t>();
    if (n_dims > kMaxDims)
      fail("{}: tensor '{}': {} dimensions (at most {} supported)", path_, name, n_dims, kMaxDims);
    std::array<uint64_t, kMaxDims> ne{};
    for (uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = c.read<uint64_t>();
      if (ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor '{}': dimension {} has invalid size {}", path_, name, d, ne[d]);
    }
    const uint32_t ggml_type = c.read<uint32_t>();
    const uint64_t offset = c.read<uint64_t>();

    const std::optional<DType> dtype = dtype_from_ggml(ggml_type);
    if (!dtype)
      fail(
          "{}: tensor '{}': ggml type {} ({}) is not supported (supported: f32, f16, bf16, q8_0, q4_0, q4_K, "
          "q6_K, i32)",
          path_, name, ggml_type, ggml_type_label(ggml_type));
    const auto& tr = traits(*dtype);
    const uint64_t ne0 = n_dims > 0 ? ne[0] : 1;
    if (ne0 % static_cast<uint64_t>(tr.block_size) != 0)
      fail("{}: tensor '{}': innermost dimension {} is not a multiple of the {} block size {}", path_, name,
           ne0, tr.name, tr.block_size);
    // nbytes = (ne0 / block) * block_bytes * ne1 * ne2 * ne3, and numel must fit int64 as well.
    uint64_t numel = ne0;
    uint64_t nbytes = (ne0 / static_cast<uint64_t>(tr.block_size)) * tr.block_bytes;
    bool overflow = false;
    for (uint32_t d = 1; d < n_dims; ++d)
      overflow = overflow || mul_overflows(numel, ne[d], &numel) || mul_overflows(nbytes, ne[d], &nbytes);
    if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        nbytes > std::numeric_limits<size_t>::max())
      fail("{}: tensor '{}': size overflows", path_, name);
    if (offset % alignment_ != 0)
      fail("{}: tensor '{}': data offset {} is not a multiple of the alignment {}", path_, name, offset,
           alignment_);

    TensorView t;
    t.name = std::string(name);
    t.type = *dtype;
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne[d]);
    t.nbytes = static_cast<size_t>(nbytes);

    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
    ggml_types_.push_back(ggml_type);
    offsets.push_back(offset);
  }

  if (!align_up(c.pos(), alignment_, &data_offset_)) fail("{}: data section offset overflows", path_);
  for (size_t k = 0; k < tensors_.size(); ++k) {
    TensorView& t = tensors_[k];
    uint64_t begin, end;
    if (add_overflows(data_offset_, offsets[k], &begin) || add_overflows(begin, t.nbytes, &end) ||
        end > size_)
      fail(
          "{}: tensor '{}': data (offset {} + {} bytes after the data section at {}) lies past the end of "
          "the file ({} bytes)",
          path_, t.name, offsets[k], t.nbytes, data_offset_, size_);
    t.data = data_ + begin;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &kvs_[it->second].value;
}

const TensorView* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void GgufFile::key_error(std::string_view key, std::string_view expected, const GgufValue* found) const {
  if (found == nullptr) fail("{}: metadata key '{}': expected {}, missing", path_, key, expected);
  fail("{}: metadata key '{}': expected {}, found {}", path_, key, expected, found->type_string());
}

const GgufValue& GgufFile::require(std::string_view key, std::string_view expected,
                                   const GgufValue* v) const {
  if (v == nullptr) key_error(key, expected, v);
  return *v;
}

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(key, "string", find(key));
  if (v.type != GgufType::String) key_error(key, "string", &v);
  return std::string(v.str);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = require(key, "integer", find(key));
  if (!v.is_integer()) key_error(key, "integer", &v);
  if (v.type == GgufType::U8 || v.type == GgufType::U16 || v.type == GgufType::U32 ||
      v.type == GgufType::U64) {
    if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail("{}: metadata key '{}': value {} is out of range", path_, key, v.u);
    return static_cast<int64_t>(v.u);
  }
  return v.i;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = require(key, "float", find(key));
  if (v.type != GgufType::F32 && v.type != GgufType::F64) key_error(key, "float", &v);
  return v.f;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(key, "bool", find(key));
  if (v.type != GgufType::Bool) key_error(key, "bool", &v);
  return v.u != 0;
}

std::string GgufFile::get_string(std::string_view key, std::string_view fallback) const {
  return has(key) ? get_string(key) : std::string(fallback);
}
int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(std::string_view key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

const std::vector<std::string_view>& GgufFile::get_string_array_view(std::string_view key) const {
  const GgufValue& v = require(key, "array of string", find(key));
  if (v.type != GgufType::Array || v.elem_type != GgufType::String) key_error(key, "array of string", &v);
  return v.strings;
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const auto& views = get_string_array_view(key);
  return std::vector<std::string>(views.begin(), views.end());
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue& v = require(key, "array of f32", find(key));
  if (v.type != GgufType::Array || v.elem_type != GgufType::F32) key_error(key, "array of f32", &v);
  std::vector<float> out(v.count);
  if (v.count != 0) std::memcpy(out.data(), v.elems, v.count * sizeof(float));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue& v = require(key, "array of integers", find(key));
  if (v.type != GgufType::Array || !gguf_type_is_integer(v.elem_type))
    key_error(key, "array of integers", &v);
  std::vector<int32_t> out(v.count);
  for (uint64_t k = 0; k < v.count; ++k) {
    int64_t x = 0;
    if (!array_int_at(v, k, &x) || x < std::numeric_limits<int32_t>::min() ||
        x > std::numeric_limits<int32_t>::max())
      fail("{}: metadata key '{}': element {} ({}) does not fit in int32", path_, key, k,
           array_element_to_string(v, k, 1, 1));
    out[k] = static_cast<int32_t>(x);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// GgufWriter

GgufWriter::~GgufWriter() {
  if (file_ != nullptr && !finished_) close_and_remove();
}

void GgufWriter::close_and_remove() noexcept {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  if (!tmp_path_.empty()) std::remove(tmp_path_.c_str());
}

bool GgufWriter::has(std::string_view key) const {
  for (const Entry& e : entries_)
    if (e.key == key) return true;
  return false;
}

std::vector<uint8_t>& GgufWriter::entry(std::string_view key, GgufType type) {
  ARIADNE_CHECK(file_ == nullptr, "GgufWriter: metadata must be set before begin()");
  Entry* e = nullptr;
  for (Entry& x : entries_)
    if (x.key == key) e = &x;
  if (e == nullptr) {
    entries_.push_back(Entry{std::string(key), {}});
    e = &entries_.back();
  }
  e->bytes.clear();
  put_string(&e->bytes, key);
  put_u32(&e->bytes, static_cast<uint32_t>(type));
  return e->bytes;
}

void GgufWriter::set_u8(std::string_view key, uint8_t v) {
  put_bytes(&entry(key, GgufType::U8), &v, 1);
}
void GgufWriter::set_i8(std::string_view key, int8_t v) {
  put_bytes(&entry(key, GgufType::I8), &v, 1);
}
void GgufWriter::set_u16(std::string_view key, uint16_t v) {
  put_bytes(&entry(key, GgufType::U16), &v, 2);
}
void GgufWriter::set_i16(std::string_view key, int16_t v) {
  put_bytes(&entry(key, GgufType::I16), &v, 2);
}
void GgufWriter::set_u32(std::string_view key, uint32_t v) {
  if (key == kAlignmentKey) return set_alignment(v);
  put_u32(&entry(key, GgufType::U32), v);
}
void GgufWriter::set_i32(std::string_view key, int32_t v) {
  put_bytes(&entry(key, GgufType::I32), &v, 4);
}
void GgufWriter::set_u64(std::string_view key, uint64_t v) {
  put_u64(&entry(key, GgufType::U64), v);
}
void GgufWriter::set_i64(std::string_view key, int64_t v) {
  put_bytes(&entry(key, GgufType::I64), &v, 8);
}
void GgufWriter::set_f32(std::string_view key, float v) {
  put_bytes(&entry(key, GgufType::F32), &v, 4);
}
void GgufWriter::set_f64(std::string_view key, double v) {
  put_bytes(&entry(key, GgufType::F64), &v, 8);
}
void GgufWriter::set_bool(std::string_view key, bool v) {
  const uint8_t b = v ? 1 : 0;
  put_bytes(&entry(key, GgufType::Bool), &b, 1);
}
void GgufWriter::set_string(std::string_view key, std::string_view v) {
  put_string(&entry(key, GgufType::String), v);
}

void GgufWriter::set_string_array(std::string_view key, std::span<const std::string> v) {
  auto& b = entry(key, GgufType::Array);
  put_u32(&b, static_cast<uint32_t>(GgufType::String));
  put_u64(&b, v.size());
  for (const std::string& s : v) put_string(&b, s);
}

void GgufWriter::set_f32_array(std::string_view key, std::span<const float> v) {
  auto& b = entry(key, GgufType::Array);
  put_u32(&b, static_cast<uint32_t>(GgufType::F32));
  put_u64(&b, v.size());
  put_bytes(&b, v.data(), v.size_bytes());
}

void GgufWriter::set_i32_array(std::string_view key, std::span<const int32_t> v) {
  auto& b = entry(key, GgufType::Array);
  put_u32(&b, static_cast<uint32_t>(GgufType::I32));
  put_u64(&b, v.size());
  put_bytes(&b, v.data(), v.size_bytes());
}

void GgufWriter::set_value(std::string_view key, const GgufValue& v) {
  if (key == kAlignmentKey) {
    ARIADNE_CHECK(v.is_integer(), "general.alignment must be an integer");
    const uint64_t a = (v.type == GgufType::U8 || v.type == GgufType::U16 || v.type == GgufType::U32 ||
                        v.type == GgufType::U64)
                           ? v.u
                           : static_cast<uint64_t>(v.i);
    ARIADNE_CHECK(a <= std::numeric_limits<uint32_t>::max(), "general.alignment out of range");
    return set_alignment(static_cast<uint32_t>(a));
  }
  put_value(&entry(key, v.type), v, 0);
}

void GgufWriter::set_alignment(uint32_t alignment) {
  ARIADNE_CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0 && alignment <= kMaxAlignment,
                "GGUF alignment must be a power of two");
  ARIADNE_CHECK(tensors_.empty(), "GgufWriter: set the alignment before adding tensors");
  alignment_ = alignment;
  put_u32(&entry(kAlignmentKey, GgufType::U32), alignment);
}

void GgufWriter::add_tensor(std::string_view name, DType type, std::span<const int64_t> shape) {
  ARIADNE_CHECK(file_ == nullptr, "GgufWriter: tensors must be added before begin()");
  ARIADNE_CHECK(shape.size() <= kMaxDims, fmt::format("tensor '{}': more than 4 dimensions", name));
  // llama.cpp stores names in a 64-byte buffer (GGML_MAX_NAME) including the terminator.
  ARIADNE_CHECK(name.size() < 64, fmt::format("tensor name '{}' longer than 63 bytes", name));
  for (const TensorInfo& t : tensors_)
    ARIADNE_CHECK(t.name != name, fmt::format("duplicate tensor '{}'", name));
  const int64_t cols = shape.empty() ? 1 : shape.back();
  ARIADNE_CHECK(cols % block_size(type) == 0,
                fmt::format("tensor '{}': {} columns not a multiple of the block size", name, cols));
  ARIADNE_CHECK(cols >= 0, fmt::format("tensor '{}': negative dimension", name));
  uint64_t nbytes = row_bytes(type, cols);
  for (size_t d = 0; d + 1 < shape.size(); ++d) {
    ARIADNE_CHECK(shape[d] >= 0, fmt::format("tensor '{}': negative dimension", name));
    ARIADNE_CHECK(!mul_overflows(nbytes, static_cast<uint64_t>(shape[d]), &nbytes),
                  fmt::format("tensor '{}': size overflows", name));
  }
  TensorInfo t{std::string(name), type, std::vector<int64_t>(shape.begin(), shape.end()), data_size_, nbytes};
  uint64_t end = 0;
  ARIADNE_CHECK(!add_overflows(data_size_, nbytes, &end) && align_up(end, alignment_, &end),
                "GGUF data size overflows");
  data_size_ = end;
  tensors_.push_back(std::move(t));
}

void GgufWriter::write_raw(const void* p, size_t n) {
  if (n != 0 && std::fwrite(p, 1, n, file_) != n) {
    const int err = errno;
    close_and_remove();
    fail("{}: write failed: {}", tmp_path_, std::strerror(err));
  }
}

void GgufWriter::write_padding(uint64_t n) {
  static constexpr std::array<uint8_t, 64> kZeros{};
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, kZeros.size()));
    write_raw(kZeros.data(), k);
    n -= k;
  }
}

void GgufWriter::begin(const std::string& path) {
  ARIADNE_CHECK(file_ == nullptr && !finished_, "GgufWriter::begin called twice");
  path_ = path;
  tmp_path_ = path + ".tmp";
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) fail("{}: cannot create: {}", tmp_path_, std::strerror(errno));

  std::vector<uint8_t> header;
  put_u32(&header, kMagic);
  put_u32(&header, kWriteVersion);
  put_u64(&header, tensors_.size());
  put_u64(&header, entries_.size());
  for (const Entry& e : entries_) put_bytes(&header, e.bytes.data(), e.bytes.size());
  for (const TensorInfo& t : tensors_) {
    put_string(&header, t.name);
    put_u32(&header, static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;)
      put_u64(&header, static_cast<uint64_t>(t.shape[d]));  // ne order
    put_u32(&header, traits(t.type).ggml_type);
    put_u64(&header, t.offset);
  }
  uint64_t data_start = 0;
  align_up(header.size(), alignment_, &data_start);
  header.resize(data_start, 0);
  write_raw(header.data(), header.size());

  current_ = 0;
  current_written_ = 0;
  while (current_ < tensors_.size() && tensors_[current_].nbytes == 0) ++current_;  // nothing to write
}

void GgufWriter::write_tensor_data(const void* bytes, size_t n) {
  ARIADNE_CHECK(file_ != nullptr, "GgufWriter::write_tensor_data before begin()");
  ARIADNE_CHECK(current_ < tensors_.size() || n == 0, "GgufWriter: more tensor data than tensors added");
  if (n == 0) return;
  const TensorInfo& t = tensors_[current_];
  ARIADNE_CHECK(n <= t.nbytes - current_written_,
                fmt::format("GgufWriter: {} bytes for tensor '{}', which has {} of {} bytes left", n, t.name,
                            t.nbytes - current_written_, t.nbytes));
  write_raw(bytes, n);
  current_written_ += n;
  if (current_written_ == t.nbytes) {
    uint64_t padded = 0;
    align_up(t.nbytes, alignment_, &padded);
    write_padding(padded - t.nbytes);
    ++current_;
    current_written_ = 0;
    while (current_ < tensors_.size() && tensors_[current_].nbytes == 0) ++current_;
  }
}

void GgufWriter::finish() {
  ARIADNE_CHECK(file_ != nullptr, "GgufWriter::finish before begin()");
  ARIADNE_CHECK(current_ == tensors_.size(),
                fmt::format("GgufWriter::finish: tensor '{}' and later have no data written",
                            current_ < tensors_.size() ? tensors_[current_].name : ""));
  const bool flush_failed = std::fflush(file_) != 0 || std::ferror(file_) != 0;
  const int err = errno;
  const bool close_failed = std::fclose(file_) != 0;
  file_ = nullptr;
  if (flush_failed || close_failed) {
    std::remove(tmp_path_.c_str());
    fail("{}: write failed: {}", tmp_path_, std::strerror(err));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp_path_.c_str());
    fail("{}: cannot rename {} to it: {}", path_, tmp_path_, std::strerror(e));
  }
  finished_ = true;
}

}  // namespace ariadne
