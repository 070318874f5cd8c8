// GGUF (llama.cpp's model container), versions 2 and 3: a reader over a memory mapping and a streaming
// writer.
//
// File layout (all integers little-endian):
//   "GGUF" u32 version, u64 n_tensors, u64 n_kv
//   n_kv x      { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
//   padding to general.alignment (default 32)
//   data section: each tensor at data_start + offset (offset a multiple of the alignment)
// A string is u64 length + bytes (no terminator). An array is u32 element type, u64 count, elements.
// ne[] is ggml order (ne[0] innermost); TensorView shapes are row-major, so the reader reverses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace ariadne {

// Metadata value types; the numbers are the GGUF type ids.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_type_name(GgufType t);  // "u8", "string", "array", ...
bool gguf_type_is_integer(GgufType t);
// Bytes of one element of a fixed-size type (0 for string and array).
size_t gguf_type_size(GgufType t);

// One metadata value. Strings and numeric array elements are views into the file's bytes, so a value
// lives only as long as the GgufFile (or the buffer) it came from. To build one by hand (for
// GgufWriter::set_value), fill the fields that belong to its type.
struct GgufValue {
  GgufType type = GgufType::U8;

  // Scalars, by type: unsigned integers and bool in u, signed integers in i, f32/f64 in f.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0.0;
  std::string_view str;  // String

  // Array: element type and count; the elements live in exactly one of the three places below.
  GgufType elem_type = GgufType::U8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;         // fixed-size elements: [count][gguf_type_size(elem_type)], LE
  std::vector<std::string_view> strings;  // elem_type String: [count]
  std::vector<GgufValue> arrays;          // elem_type Array: [count] nested arrays

  bool is_integer() const { return gguf_type_is_integer(type); }
  // "u32", "array of string", ... for error messages.
  std::string type_string() const;
};

// Renders a value for display (`ariadne info`): strings quoted with control characters escaped and cut
// after max_chars, arrays cut after max_elems elements with the total count appended.
std::string gguf_value_to_string(const GgufValue& v, size_t max_elems = 8, size_t max_chars = 120);

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

class GgufFile {
 public:
  // Maps and parses the file. Throws Error naming the path on any malformed or unsupported content.
  explicit GgufFile(const std::string& path);
  // Parses bytes in memory (the fuzzer's entry point). The buffer is not copied and must outlive this
  // object; name stands for the path in error messages.
  GgufFile(const uint8_t* data, size_t size, std::string name);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const uint8_t* data() const { return data_; }  // the whole file
  size_t size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section within the file
  // The mapping that tensor data points into; null when parsed from a caller's buffer.
  std::shared_ptr<MappedFile> mapping() const { return mapping_; }

  // Metadata in file order.
  const std::vector<GgufKeyValue>& metadata() const { return kvs_; }
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const GgufValue* find(std::string_view key) const;

  // Typed getters. A missing key or a value of another type throws
  // Error "<path>: metadata key '<key>': expected <type>, found <type>" (or "..., missing").
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;   // any integer type (a u64 above INT64_MAX is an error)
  double get_float(std::string_view key) const;  // f32 or f64
  bool get_bool(std::string_view key) const;
  // The same, returning fallback when the key is absent (a present key of the wrong type still throws).
  std::string get_string(std::string_view key, std::string_view fallback) const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  std::vector<std::string> get_string_array(std::string_view key) const;
  // Views into the file, for large vocabularies (valid while this object lives).
  const std::vector<std::string_view>& get_string_array_view(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  // Any integer element type, each value must fit in int32.
  std::vector<int32_t> get_i32_array(std::string_view key) const;

  // Tensors in file order: name, dtype, row-major shape, data pointer into the file, nbytes.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(std::string_view name) const;
  // ggml type id of tensor i as stored in the file.
  uint32_t ggml_type(size_t i) const { return ggml_types_[i]; }

 private:
  void parse();
  [[noreturn]] void key_error(std::string_view key, std::string_view expected, const GgufValue* found) const;
  const GgufValue& require(std::string_view key, std::string_view expected, const GgufValue* v) const;

  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> kvs_;
  std::map<std::string, size_t, std::less<>> key_index_;  // key -> index in kvs_
  std::vector<TensorView> tensors_;
  std::vector<uint32_t> ggml_types_;                         // [n_tensors]
  std::map<std::string, size_t, std::less<>> tensor_index_;  // name -> index in tensors_
};

// Writes a GGUF v3 file without holding tensor data in memory:
//   GgufWriter w;  w.set_string(...); ...  w.add_tensor(...); ...
//   w.begin(path);                     // header, metadata and tensor infos
//   w.write_tensor_data(p, n); ...     // each tensor's bytes in the order added, whole or in chunks
//   w.finish();                        // pads, closes, renames path + ".tmp" to path
// An object destroyed before finish() removes its ".tmp" file, so an interrupted write never leaves a
// truncated file under the final name. Misuse (wrong order, too many bytes) is a programmer bug
// (ARIADNE_CHECK); I/O failures throw Error naming the file.
class GgufWriter {
 public:
  GgufWriter() = default;
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata. Setting a key again replaces its value in place (keeps its position).
  void set_u8(std::string_view key, uint8_t v);
  void set_i8(std::string_view key, int8_t v);
  void set_u16(std::string_view key, uint16_t v);
  void set_i16(std::string_view key, int16_t v);
  void set_u32(std::string_view key, uint32_t v);
  void set_i32(std::string_view key, int32_t v);
  void set_u64(std::string_view key, uint64_t v);
  void set_i64(std::string_view key, int64_t v);
  void set_f32(std::string_view key, float v);
  void set_f64(std::string_view key, double v);
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string_view v);
  void set_string_array(std::string_view key, std::span<const std::string> v);
  void set_f32_array(std::string_view key, std::span<const float> v);
  void set_i32_array(std::string_view key, std::span<const int32_t> v);
  // Any value, e.g. one read from another GgufFile (copying metadata), including nested arrays.
  void set_value(std::string_view key, const GgufValue& v);
  // Writes general.alignment (u32); must be a non-zero power of two. The default (32) writes no key.
  void set_alignment(uint32_t alignment);

  bool has(std::string_view key) const;

  // Tensor infos, in the order their data will be written. shape is row-major (outermost first).
  void add_tensor(std::string_view name, DType type, std::span<const int64_t> shape);
  void add_tensor(std::string_view name, DType type, std::initializer_list<int64_t> shape) {
    add_tensor(name, type, std::span<const int64_t>(shape.begin(), shape.size()));
  }
  size_t tensor_count() const { return tensors_.size(); }
  size_t tensor_nbytes(size_t i) const { return tensors_[i].nbytes; }

  void begin(const std::string& path);
  void write_tensor_data(const void* bytes, size_t n);
  void finish();

 private:
  struct Entry {
    std::string key;
    std::vector<uint8_t> bytes;  // serialized: key string, u32 type, value
  };
  struct TensorInfo {
    std::string name;
    DType type;
    std::vector<int64_t> shape;  // row-major
    uint64_t offset;             // relative to the data section
    size_t nbytes;
  };
  std::vector<uint8_t>& entry(std::string_view key, GgufType type);
  void write_raw(const void* p, size_t n);
  void write_padding(uint64_t n);
  void close_and_remove() noexcept;

  std::vector<Entry> entries_;
  uint64_t alignment_ = 32;
  std::vector<TensorInfo> tensors_;
  uint64_t data_size_ = 0;  // data section bytes so far (each tensor padded to the alignment)

  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  size_t current_ = 0;          // tensor being written
  size_t current_written_ = 0;  // bytes of it written so far
  bool finished_ = false;
};

}  // namespace ariadne
