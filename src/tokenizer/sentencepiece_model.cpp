#include "tokenizer/sentencepiece_model.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace ariadne {

namespace {

// Protobuf wire types (encoding guide: https://protobuf.dev/programming-guides/encoding/).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

const char* wire_type_name(uint32_t t) {
  switch (t) {
    case kVarint:
      return "varint";
    case kFixed64:
      return "64-bit";
    case kLengthDelimited:
      return "length-delimited";
    case kFixed32:
      return "32-bit";
    case 3:
    case 4:
      return "group (deprecated)";
  }
  return "invalid";
}

// Reads the fields of one message from bytes [begin, end) of the file. Every read is checked against the
// message's end, so a corrupt length can never reach past the buffer. `where` names the message in errors
// ("ModelProto.pieces[3]").
class WireReader {
 public:
  WireReader(std::span<const uint8_t> bytes, size_t base, const std::string& file, std::string where)
      : bytes_(bytes), base_(base), file_(file), where_(std::move(where)) {}

  bool done() const { return pos_ == bytes_.size(); }

  // The next field's number and wire type.
  void next(uint32_t& field, uint32_t& wire) {
    const size_t at = pos_;
    const uint64_t tag = varint("field tag");
    field = static_cast<uint32_t>(tag >> 3);
    wire = static_cast<uint32_t>(tag & 7);
    if (tag > 0xffffffffu || field == 0)
      fail("{}: {}: invalid field tag {} at byte {}", file_, where_, tag, base_ + at);
  }

  uint64_t varint(const char* what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= bytes_.size())
        fail("{}: {}: truncated {} (varint) at byte {}", file_, where_, what, base_ + pos_);
      const uint8_t b = bytes_[pos_++];
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("{}: {}: {} is a varint longer than 10 bytes (at byte {})", file_, where_, what, base_ + pos_);
  }

  uint32_t fixed32(const char* what) {
    if (bytes_.size() - pos_ < 4)
      fail("{}: {}: truncated {} (32-bit) at byte {}", file_, where_, what, base_ + pos_);
    uint32_t v;
    std::memcpy(&v, bytes_.data() + pos_, 4);  // little-endian on the wire, as on the hosts we build for
    pos_ += 4;
    return v;
  }

  // A length-delimited payload; *offset receives its position in the file (for nested error messages).
  std::span<const uint8_t> bytes(const char* what, size_t* offset = nullptr) {
    const uint64_t len = varint(what);
    if (len > bytes_.size() - pos_)
      fail("{}: {}: {} claims {} bytes at byte {}, only {} left in the enclosing message", file_, where_,
           what, len, base_ + pos_, bytes_.size() - pos_);
    if (offset) *offset = base_ + pos_;
    const auto out = bytes_.subspan(pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return out;
  }

  void skip(uint32_t field, uint32_t wire) {
    switch (wire) {
      case kVarint:
        varint("skipped field");
        return;
      case kFixed64:
        if (bytes_.size() - pos_ < 8)
          fail("{}: {}: truncated field {} (64-bit) at byte {}", file_, where_, field, base_ + pos_);
        pos_ += 8;
        return;
      case kLengthDelimited:
        bytes("skipped field");
        return;
      case kFixed32:
        fixed32("skipped field");
        return;
    }
    fail("{}: {}: field {} has unsupported wire type {} ({})", file_, where_, field, wire,
         wire_type_name(wire));
  }

  // A known field must arrive in the wire type its declaration implies.
  void expect(uint32_t wire, uint32_t expected, const char* field_name) const {
    if (wire != expected)
      fail("{}: {}.{}: wire type {} ({}), expected {} ({})", file_, where_, field_name, wire,
           wire_type_name(wire), expected, wire_type_name(expected));
  }

  // proto int32 fields carry negative values as 10-byte sign-extended varints.
  int32_t int32(const char* field_name) {
    const auto v = static_cast<int64_t>(varint(field_name));
    if (v < INT32_MIN || v > INT32_MAX)
      fail("{}: {}.{}: value {} does not fit int32", file_, where_, field_name, v);
    return static_cast<int32_t>(v);
  }

  const std::string& where() const { return where_; }
  size_t base() const { return base_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t base_;  // offset of bytes_[0] in the file
  size_t pos_ = 0;
  const std::string& file_;
  std::string where_;
};

struct Piece {
  std::string text;
  float score = 0.0f;
  int32_t type = 1;  // NORMAL
};

Piece parse_piece(std::span<const uint8_t> bytes, size_t base, const std::string& file, size_t index) {
  WireReader r(bytes, base, file, "ModelProto.pieces[" + std::to_string(index) + "]");
  Piece p;
  while (!r.done()) {
    uint32_t field, wire;
    r.next(field, wire);
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "piece");
      const auto s = r.bytes("piece");
      p.text.assign(reinterpret_cast<const char*>(s.data()), s.size());
    } else if (field == 2) {
      r.expect(wire, kFixed32, "score");
      const uint32_t bits = r.fixed32("score");
      std::memcpy(&p.score, &bits, 4);
    } else if (field == 3) {
      r.expect(wire, kVarint, "type");
      p.type = r.int32("type");
      if (p.type < 1 || p.type > 6)
        fail("{}: {}.type: {} is not a SentencePiece type (NORMAL 1 .. BYTE 6)", file, r.where(), p.type);
    } else {
      r.skip(field, wire);
    }
  }
  return p;
}

struct TrainerSpec {
  int32_t model_type = 1;  // UNIGRAM
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};

TrainerSpec parse_trainer_spec(std::span<const uint8_t> bytes, size_t base, const std::string& file) {
  WireReader r(bytes, base, file, "ModelProto.trainer_spec");
  TrainerSpec t;
  while (!r.done()) {
    uint32_t field, wire;
    r.next(field, wire);
    auto int_field = [&](const char* name, int32_t& out) {
      r.expect(wire, kVarint, name);
      out = r.int32(name);
    };
    switch (field) {
      case 3:
        int_field("model_type", t.model_type);
        break;
      case 35:
        r.expect(wire, kVarint, "byte_fallback");
        t.byte_fallback = r.varint("byte_fallback") != 0;
        break;
      case 40:
        int_field("unk_id", t.unk_id);
        break;
      case 41:
        int_field("bos_id", t.bos_id);
        break;
      case 42:
        int_field("eos_id", t.eos_id);
        break;
      case 43:
        int_field("pad_id", t.pad_id);
        break;
      default:
        r.skip(field, wire);
    }
  }
  return t;
}

bool parse_add_dummy_prefix(std::span<const uint8_t> bytes, size_t base, const std::string& file) {
  WireReader r(bytes, base, file, "ModelProto.normalizer_spec");
  bool add_dummy_prefix = true;
  while (!r.done()) {
    uint32_t field, wire;
    r.next(field, wire);
    if (field == 3) {
      r.expect(wire, kVarint, "add_dummy_prefix");
      add_dummy_prefix = r.varint("add_dummy_prefix") != 0;
    } else {
      r.skip(field, wire);
    }
  }
  return add_dummy_prefix;
}

// SentencePiece's space mark back to a space (built anew: GCC 12 warns falsely on string::replace).
std::string unescape_spaces(std::string_view s) {
  constexpr std::string_view kMark = "\xe2\x96\x81";
  std::string out;
  for (size_t pos = 0;;) {
    const size_t hit = s.find(kMark, pos);
    out.append(s.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
    if (hit == std::string_view::npos) return out;
    out.push_back(' ');
    pos = hit + kMark.size();
  }
}

}  // namespace

Vocab vocab_from_sentencepiece_model_bytes(std::span<const uint8_t> bytes, const std::string& name) {
  WireReader r(bytes, 0, name, "ModelProto");
  Vocab v;
  v.model = TokenizerModel::Spm;
  TrainerSpec trainer;
  bool add_dummy_prefix = true;
  while (!r.done()) {
    uint32_t field, wire;
    r.next(field, wire);
    size_t offset = 0;
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "pieces");
      const auto msg = r.bytes("pieces", &offset);
      Piece p = parse_piece(msg, offset, name, v.tokens.size());
      const auto type = static_cast<TokenType>(p.type);  // SentencePiece's numbering is llama.cpp's
      if (type == TokenType::UserDefined) p.text = unescape_spaces(p.text);
      v.tokens.push_back(std::move(p.text));
      v.scores.push_back(p.score);
      v.types.push_back(type);
    } else if (field == 2) {
      r.expect(wire, kLengthDelimited, "trainer_spec");
      const auto msg = r.bytes("trainer_spec", &offset);
      trainer = parse_trainer_spec(msg, offset, name);  // a repeated singular message: last one wins
    } else if (field == 3) {
      r.expect(wire, kLengthDelimited, "normalizer_spec");
      const auto msg = r.bytes("normalizer_spec", &offset);
      add_dummy_prefix = parse_add_dummy_prefix(msg, offset, name);
    } else {
      r.skip(field, wire);
    }
  }

  const int64_t n = static_cast<int64_t>(v.tokens.size());
  if (n == 0) fail("{}: ModelProto.pieces: the model has no pieces", name);
  if (n > INT32_MAX) fail("{}: ModelProto.pieces: {} pieces do not fit 32-bit token ids", name, n);
  if (trainer.model_type != 2)
    fail(
        "{}: ModelProto.trainer_spec.model_type: {} ({}), expected 2 (BPE): only SentencePiece BPE models "
        "are supported",
        name, trainer.model_type,
        trainer.model_type == 1   ? "UNIGRAM"
        : trainer.model_type == 3 ? "WORD"
        : trainer.model_type == 4 ? "CHAR"
                                  : "unknown");
  auto id = [&](const char* field_name, int32_t value) {
    if (value < -1 || value >= n)
      fail("{}: ModelProto.trainer_spec.{}: token id {} is outside the vocabulary [0, {})", name, field_name,
           value, n);
    return value;
  };
  v.unk_id = id("unk_id", trainer.unk_id);
  v.bos_id = id("bos_id", trainer.bos_id);
  v.eos_id = id("eos_id", trainer.eos_id);
  v.pad_id = id("pad_id", trainer.pad_id);
  v.add_bos = v.bos_id >= 0;
  v.add_eos = false;
  v.add_space_prefix = add_dummy_prefix;
  v.index();
  return v;
}

Vocab vocab_from_sentencepiece_model(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the SentencePiece model", path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return vocab_from_sentencepiece_model_bytes(bytes, path);
}

}  // namespace ariadne
