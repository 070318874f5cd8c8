#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace ariadne {

namespace {

using json = nlohmann::json;

// A short description of a JSON value for error messages. Never dumps containers: a fuzzed header can
// nest thousands of levels deep and the message should stay one line anyway.
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

// Arrays of a few scalars are shown in full ("[1, -2]"), anything else only by kind.
std::string describe_small_array(const json& v) {
  if (!v.is_array() || v.size() > 4) return describe(v);
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ", ";
    out += v[i].is_primitive() ? describe(v[i]) : (v[i].is_array() ? "[...]" : "{...}");
  }
  return out + "]";
}

// Element size of the accepted dtypes; 0 when the dtype is not one we compute with.
size_t element_bytes(std::string_view dtype, DType* type) {
  if (dtype == "F32") {
    *type = DType::F32;
    return 4;
  }
  if (dtype == "F16") {
    *type = DType::F16;
    return 2;
  }
  if (dtype == "BF16") {
    *type = DType::BF16;
    return 2;
  }
  return 0;
}

bool to_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  return false;
}

SafetensorsTensor parse_entry(const std::string& path, const std::string& name, const json& entry,
                              uint64_t data_start, uint64_t data_size, const uint8_t* base) {
  if (!entry.is_object()) fail("{}: tensor '{}': expected an object, got {}", path, name, describe(entry));
  SafetensorsTensor t;
  t.name = name;

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) fail("{}: tensor '{}': missing field 'dtype'", path, name);
  if (!dtype_it->is_string()) {
    fail("{}: tensor '{}': field 'dtype': expected a string, got {}", path, name, describe(*dtype_it));
  }
  const std::string& dtype = dtype_it->get_ref<const std::string&>();
  const size_t esize = element_bytes(dtype, &t.type);
  if (esize == 0) {
    fail("{}: tensor '{}': unsupported dtype {} (supported: F32, F16, BF16)", path, name,
         describe(*dtype_it));
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) fail("{}: tensor '{}': missing field 'shape'", path, name);
  if (!shape_it->is_array()) {
    fail("{}: tensor '{}': field 'shape': expected an array, got {}", path, name, describe(*shape_it));
  }
  // numel is kept in uint64 with overflow checks; every dimension also has to fit int64 for TensorView.
  uint64_t numel = 1;
  for (const json& d : *shape_it) {
    uint64_t dim = 0;
    if (!to_u64(d, &dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("{}: tensor '{}': field 'shape': expected non-negative integers, got {}", path, name, describe(d));
    }
    if (__builtin_mul_overflow(numel, dim, &numel)) {
      fail("{}: tensor '{}': field 'shape': element count overflows", path, name);
    }
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(esize), &expected_bytes)) {
    fail("{}: tensor '{}': field 'shape': byte size overflows", path, name);
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) fail("{}: tensor '{}': missing field 'data_offsets'", path, name);
  uint64_t begin = 0, end = 0;
  if (!off_it->is_array() || off_it->size() != 2 || !to_u64((*off_it)[0], &begin) ||
      !to_u64((*off_it)[1], &end)) {
    fail("{}: tensor '{}': field 'data_offsets': expected [begin, end] non-negative integers, got {}", path,
         name, describe_small_array(*off_it));
  }
  if (end < begin) fail("{}: tensor '{}': data_offsets [{}, {}]: end before begin", path, name, begin, end);
  if (end > data_size) {
    fail("{}: tensor '{}': data_offsets [{}, {}] run past the data area ({} bytes)", path, name, begin, end,
         data_size);
  }
  if (end - begin != expected_bytes) {
    fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but shape and dtype {} need {}", path, name,
         begin, end, end - begin, dtype, expected_bytes);
  }
  t.offset = data_start + begin;  // cannot overflow: data_start + data_size == buffer size
  t.nbytes = expected_bytes;
  t.data = base + t.offset;
  return t;
}

}  // namespace

std::vector<SafetensorsTensor> parse_safetensors(const uint8_t* data, size_t size, const std::string& path) {
  if (size < 8) fail("{}: not a safetensors file: {} bytes is too short for the header length", path, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8) {
    fail("{}: safetensors header length {} exceeds the file size ({} bytes)", path, header_len, size);
  }
  if (header_len > kSafetensorsMaxHeaderBytes) {
    fail("{}: safetensors header length {} exceeds the {}-byte limit", path, header_len,
         kSafetensorsMaxHeaderBytes);
  }
  const char* text = reinterpret_cast<const char*>(data + 8);
  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::parse_error& e) {
    fail("{}: safetensors header is not valid JSON (byte {} of the header): {}", path, e.byte, e.what());
  } catch (const json::exception& e) {
    // e.g. out_of_range for a number literal beyond double ("8E888")
    fail("{}: safetensors header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object())
    fail("{}: safetensors header: expected a JSON object, got {}", path, describe(header));

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<SafetensorsTensor> tensors;
  tensors.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    tensors.push_back(parse_entry(path, name, entry, data_start, data_size, data));
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.offset < b.offset; });
  return tensors;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

SafetensorsFile open_safetensors(const std::string& path) {
  SafetensorsFile f;
  f.file = std::make_shared<MappedFile>(path);
  f.tensors = parse_safetensors(f.file->data(), f.file->size(), path);
  return f;
}

std::vector<uint8_t> pack_safetensors(const std::string& header_json, const std::vector<uint8_t>& data_area) {
  std::string header = header_json;
  while (header.size() % 8 != 0) header.push_back(' ');
  const uint64_t n = header.size();
  std::vector<uint8_t> out(8 + header.size() + data_area.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::copy(header.begin(), header.end(), out.begin() + 8);
  std::copy(data_area.begin(), data_area.end(), out.begin() + 8 + static_cast<ptrdiff_t>(header.size()));
  return out;
}

std::vector<uint8_t> write_safetensors(const std::vector<SafetensorsWriteTensor>& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<uint8_t> data_area;
  for (const auto& t : tensors) {
    const uint64_t begin = data_area.size();
    data_area.insert(data_area.end(), t.bytes.begin(), t.bytes.end());
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data_area.size()}}};
  }
  return pack_safetensors(header.dump(), data_area);
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) fail("{}: cannot open for writing: {}", path, std::strerror(errno));
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (written != bytes.size() || !closed) fail("{}: cannot write {} bytes", path, bytes.size());
}

}  // namespace ariadne
