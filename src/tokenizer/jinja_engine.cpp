#include "tokenizer/jinja_engine.h"
#include "tokenizer/utf8.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace ariadne::jinja {

// ---------------------------------------------------------------------------------------------------
// Value
// ---------------------------------------------------------------------------------------------------

namespace {
const std::string kEmpty;
const std::vector<Value> kEmptyList;
const std::vector<std::pair<std::string, Value>> kEmptyDict;
}  // namespace

Value Value::undefined(std::string hint) {
  Value v;
  v.v_ = UndefinedTag{std::make_shared<const std::string>(std::move(hint))};
  return v;
}
Value Value::none() {
  Value v;
  v.v_ = NoneTag{};
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.v_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.v_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.v_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.v_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::list(std::vector<Value> items) {
  auto data = std::make_shared<ListData>();
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.depth());
  data->items = std::move(items);
  data->depth = depth + 1;
  Value v;
  v.v_ = std::move(data);
  return v;
}
Value Value::tuple(std::vector<Value> items) {
  Value v = list(std::move(items));
  v.list_data()->is_tuple = true;
  return v;
}
Value Value::dict(std::vector<std::pair<std::string, Value>> items) {
  auto data = std::make_shared<DictData>();
  int depth = 0;
  for (const auto& item : items) depth = std::max(depth, item.second.depth());
  data->items = std::move(items);
  data->depth = depth + 1;
  return from_dict_data(std::move(data));
}
Value Value::function(std::string name, NativeFunction fn) {
  auto data = std::make_shared<FunctionData>();
  data->name = std::move(name);
  data->native = std::move(fn);
  return from_function_data(std::move(data));
}
Value Value::from_dict_data(std::shared_ptr<DictData> d) {
  Value v;
  v.v_ = std::move(d);
  return v;
}
Value Value::from_function_data(std::shared_ptr<FunctionData> f) {
  Value v;
  v.v_ = std::move(f);
  return v;
}
const std::vector<Value>& Value::as_list() const {
  return is_list() ? list_data()->items : kEmptyList;
}
const std::vector<std::pair<std::string, Value>>& Value::as_dict() const {
  return is_dict() ? dict_data()->items : kEmptyDict;
}
const Value* Value::find(std::string_view key) const {
  if (!is_dict()) return nullptr;
  for (const auto& [k, v] : dict_data()->items)
    if (k == key) return &v;
  return nullptr;
}
bool Value::is_namespace() const {
  return is_dict() && dict_data()->is_namespace;
}
int Value::depth() const {
  if (is_list()) return list_data()->depth;
  if (is_dict()) return dict_data()->depth;
  return 0;
}
const std::string& Value::undefined_hint() const {
  if (const auto* u = std::get_if<UndefinedTag>(&v_); u && u->hint) return *u->hint;
  return kEmpty;
}

namespace {

// ---------------------------------------------------------------------------------------------------
// Text helpers (Python str semantics over UTF-8)
// ---------------------------------------------------------------------------------------------------

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Number of code points (invalid bytes count as one each, as they would after a lenient decode).
size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += !is_continuation(c);
  return n;
}

// Byte offsets of every code point start, plus s.size() at the end.
std::vector<size_t> codepoint_offsets(std::string_view s) {
  std::vector<size_t> off;
  off.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size(); ++i)
    if (!is_continuation(static_cast<unsigned char>(s[i])) || i == 0) off.push_back(i);
  off.push_back(s.size());
  return off;
}

// Decodes the code point at s[i] (lenient; invalid bytes decode as themselves) and its length.
uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  for (size_t k = 1; k < n; ++k)
    if (!is_continuation(static_cast<unsigned char>(s[i + k]))) n = 1;
  *len = n;
  if (n == 1) return b0;
  uint32_t c = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return c;
}

// First occurrence of needle in hay at or after from (Knuth-Morris-Pratt: linear even for long, repetitive
// needles, which std::string::find is not).
size_t find_substring(std::string_view hay, std::string_view needle, size_t from) {
  if (from > hay.size()) return std::string_view::npos;
  if (needle.empty()) return from;
  if (needle.size() == 1) return hay.find(needle[0], from);
  std::vector<size_t> fail_to(needle.size(), 0);
  for (size_t i = 1, k = 0; i < needle.size(); ++i) {
    while (k > 0 && needle[i] != needle[k]) k = fail_to[k - 1];
    if (needle[i] == needle[k]) ++k;
    fail_to[i] = k;
  }
  for (size_t i = from, k = 0; i < hay.size(); ++i) {
    while (k > 0 && hay[i] != needle[k]) k = fail_to[k - 1];
    if (hay[i] == needle[k]) ++k;
    if (k == needle.size()) return i + 1 - k;
  }
  return std::string_view::npos;
}

// Python's str.isspace() for the code points that matter in text.
bool py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// str.strip / lstrip / rstrip. chars == nullptr: whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::vector<uint32_t> set;
  if (chars) {
    for (size_t i = 0, n; i < chars->size(); i += n) set.push_back(decode_at(*chars, i, &n));
  }
  auto strip_it = [&](uint32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : py_isspace(c);
  };
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t n;
      const uint32_t c = decode_at(s, begin, &n);
      if (!strip_it(c)) break;
      begin += n;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && is_continuation(static_cast<unsigned char>(s[start]))) --start;
      size_t n;
      const uint32_t c = decode_at(s, start, &n);
      if (start + n != end || !strip_it(c)) break;  // a stray continuation byte is not whitespace
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

// Simple case mapping for Latin-1, Latin Extended-A, Greek and Cyrillic; other scripts are unchanged
// (Python maps all of Unicode; chat templates apply upper/lower to role names and keywords).
uint32_t to_upper_cp(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0xB5) return c;
  if (c == 0xB5) return 0x39C;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 0x20;
  if (c == 0xFF) return 0x178;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c & ~1u;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 0) ? c - 1 : c;
  if (c == 0x131) return 'I';
  if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? 0x3A3 : c - 0x20;
  if (c >= 0x3AC && c <= 0x3AF) return c == 0x3AC ? 0x386 : c - 0x25;
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  return c;
}
uint32_t to_lower_cp(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE && c != 0xD7) return c + 0x20;
  if (c == 0x130) return 'i';
  if (c == 0x178) return 0xFF;
  if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1u;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  return c;
}

// Maps every code point; invalid bytes pass through unchanged.
std::string map_case(std::string_view s, bool upper) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0, n; i < s.size(); i += n) {
    const uint32_t c = decode_at(s, i, &n);
    if (n == 1 && c >= 0x80) {
      out += s[i];
    } else {
      append_utf8(out, upper ? to_upper_cp(c) : to_lower_cp(c));
    }
  }
  return out;
}

bool ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Python float repr: shortest round-trip digits, exponent form outside [1e-4, 1e16).
std::string py_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX"
  const size_t epos = sci.find('e');
  const int exp = std::atoi(sci.c_str() + epos + 1);
  std::string mant = sci.substr(0, epos);
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp >= -5 + 1 && exp < 16) {  // -4 <= exp < 16
    if (exp >= 0) {
      if (static_cast<int>(digits.size()) <= exp + 1) {
        out = digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
      } else {
        out = digits.substr(0, static_cast<size_t>(exp + 1)) + "." +
              digits.substr(static_cast<size_t>(exp + 1));
      }
    } else {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    const int a = std::abs(exp);
    if (a < 10) out += '0';
    out += std::to_string(a);
  }
  return neg ? "-" + out : out;
}

std::string py_repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\' || c == static_cast<unsigned char>(q)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
  return out;
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Recursion guard for printing / comparing values: namespaces may form cycles.
constexpr int kMaxValueRecursion = 512;

// Printing visits each node once per path (shared sublists print again), so the output size is what
// bounds the work: every container adds at least one byte.
void python_str_into(std::string& out, const Value& v, bool repr, int depth, size_t max_bytes) {
  if (depth > kMaxValueRecursion) fail("chat template: value nested too deeply to print");
  if (out.size() > max_bytes) fail("chat template: printed value exceeds {} bytes", max_bytes);
  switch (v.kind()) {
    case Value::Kind::Undefined:
      break;
    case Value::Kind::None:
      out += "None";
      break;
    case Value::Kind::Bool:
      out += v.as_bool() ? "True" : "False";
      break;
    case Value::Kind::Int:
      out += std::to_string(v.as_int());
      break;
    case Value::Kind::Float:
      out += py_float(v.as_float());
      break;
    case Value::Kind::String:
      out += repr ? py_repr_string(v.as_string()) : v.as_string();
      break;
    case Value::Kind::List: {
      const bool tuple = v.list_data()->is_tuple;
      out += tuple ? '(' : '[';
      bool first = true;
      for (const Value& item : v.as_list()) {
        if (!first) out += ", ";
        first = false;
        python_str_into(out, item, true, depth + 1, max_bytes);
      }
      if (tuple && v.as_list().size() == 1) out += ',';
      out += tuple ? ')' : ']';
      break;
    }
    case Value::Kind::Dict: {
      if (v.is_namespace()) out += "<Namespace ";
      out += '{';
      bool first = true;
      for (const auto& [k, item] : v.as_dict()) {
        if (!first) out += ", ";
        first = false;
        out += py_repr_string(k);
        out += ": ";
        python_str_into(out, item, true, depth + 1, max_bytes);
      }
      out += '}';
      if (v.is_namespace()) out += '>';
      break;
    }
    case Value::Kind::Function:
      out += "<function " + v.function_data()->name + ">";
      break;
  }
}

void json_into(std::string& out, const Value& v, int indent, int level, size_t max_bytes) {
  if (level > kMaxValueRecursion) fail("chat template: tojson: value nested too deeply");
  if (out.size() > max_bytes) fail("chat template: tojson: output exceeds {} bytes", max_bytes);
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.kind()) {
    case Value::Kind::Undefined:
      fail("chat template: tojson: cannot serialise an undefined value");
    case Value::Kind::None:
      out += "null";
      break;
    case Value::Kind::Bool:
      out += v.as_bool() ? "true" : "false";
      break;
    case Value::Kind::Int:
      out += std::to_string(v.as_int());
      break;
    case Value::Kind::Float: {
      const double d = v.as_float();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : py_float(d);
      break;
    }
    case Value::Kind::String:
      append_json_string(out, v.as_string());
      break;
    case Value::Kind::List: {
      const auto& items = v.as_list();
      if (items.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += indent < 0 ? ", " : ",";
        newline(level + 1);
        json_into(out, items[i], indent, level + 1, max_bytes);
      }
      newline(level);
      out += ']';
      break;
    }
    case Value::Kind::Dict: {
      const auto& items = v.as_dict();
      if (items.empty()) {
        out += "{}";
        break;
      }
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += indent < 0 ? ", " : ",";
        newline(level + 1);
        append_json_string(out, items[i].first);
        out += ": ";
        json_into(out, items[i].second, indent, level + 1, max_bytes);
      }
      newline(level);
      out += '}';
      break;
    }
    case Value::Kind::Function:
      fail("chat template: tojson: cannot serialise a function");
  }
}

}  // namespace

std::string to_python_string(const Value& v, size_t max_bytes) {
  std::string out;
  python_str_into(out, v, false, 0, max_bytes);
  return out;
}

std::string to_json(const Value& v, int indent, size_t max_bytes) {
  std::string out;
  json_into(out, v, indent, 0, max_bytes);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------------

namespace {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };

struct Token {
  Tok type;
  std::string text;  // Text / Name / String contents / Op
  int64_t i = 0;
  double f = 0.0;
  int line = 1;
};

[[noreturn]] void syntax_error(int line, const std::string& msg) {
  fail("chat template: line {}: {}", line, msg);
}

bool is_name_start(char c) {
  return ascii_alpha(c) || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}
bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    // Jinja drops one trailing newline of the template (keep_trailing_newline = False).
    if (!src_.empty() && src_.back() == '\n') {
      src_.remove_suffix(1);
      if (!src_.empty() && src_.back() == '\r') src_.remove_suffix(1);
    }
    size_t pos = 0;
    bool strip_next = false;  // previous tag ended with '-'
    bool trim_next = false;   // previous block/comment tag ended plainly (trim_blocks)
    while (pos <= src_.size()) {
      size_t tag = find_tag(pos);
      std::string text(src_.substr(pos, (tag == std::string_view::npos ? src_.size() : tag) - pos));
      bool line_start = pos == 0 || src_[pos - 1] == '\n';
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_ws(text[k])) ++k;
        if (k > 0) line_start = text[k - 1] == '\n' || line_start;
        text.erase(0, k);
      } else if (trim_next) {
        if (text.rfind("\n", 0) == 0) {
          text.erase(0, 1);
          line_start = true;
        } else if (text.rfind("\r\n", 0) == 0) {
          text.erase(0, 2);
          line_start = true;
        }
      }
      if (tag == std::string_view::npos) {
        emit_text(std::move(text), pos);
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      const char mod = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (mod == '-') {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      } else if (mod != '+' && kind != '{') {
        // lstrip_blocks: a block or comment tag alone at the start of a line takes its indentation away.
        const size_t nl = text.rfind('\n');
        const size_t from = nl == std::string::npos ? 0 : nl + 1;
        if (nl != std::string::npos || line_start) {
          bool blank = true;
          for (size_t k = from; k < text.size(); ++k) blank &= text[k] == ' ' || text[k] == '\t';
          if (blank) text.erase(from);
        }
      }
      emit_text(std::move(text), pos);
      size_t p = tag + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", p);
        if (end == std::string_view::npos) syntax_error(line_at(tag), "unterminated comment '{#'");
        strip_next = end > p && src_[end - 1] == '-';
        trim_next = !strip_next && !(end > p && src_[end - 1] == '+');
        pos = end + 2;
        continue;
      }
      if (kind == '%' && try_raw(tag, p, &pos, &strip_next, &trim_next)) continue;
      pos = lex_tag(kind == '{', tag, p, &strip_next, &trim_next);
    }
    tokens_.push_back({Tok::End, "", 0, 0.0, line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string_view::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    }
    return std::string_view::npos;
  }

  int line_at(size_t offset) {
    // Lines are counted incrementally: offsets only grow while lexing.
    offset = std::min(offset, src_.size());
    if (offset < line_pos_) {
      line_pos_ = 0;
      line_ = 1;
    }
    for (; line_pos_ < offset; ++line_pos_) line_ += src_[line_pos_] == '\n';
    return line_;
  }

  void emit_text(std::string text, size_t pos) {
    if (text.empty()) return;
    tokens_.push_back({Tok::Text, std::move(text), 0, 0.0, line_at(pos)});
  }

  // {% raw %} ... {% endraw %}: the body is text, taken verbatim.
  bool try_raw(size_t tag, size_t p, size_t* pos, bool* strip_next, bool* trim_next) {
    size_t q = p;
    while (q < src_.size() && is_ws(src_[q])) ++q;
    if (src_.compare(q, 3, "raw") != 0 || (q + 3 < src_.size() && is_name_char(src_[q + 3]))) return false;
    q += 3;
    while (q < src_.size() && is_ws(src_[q])) ++q;
    bool strip_body_start = false;
    if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) strip_body_start = src_[q++] == '-';
    if (src_.compare(q, 2, "%}") != 0) syntax_error(line_at(tag), "malformed {% raw %} tag");
    const size_t body = q + 2;
    // Find {%[-+]? endraw [-+]?%}.
    for (size_t s = src_.find("{%", body); s != std::string_view::npos; s = src_.find("{%", s + 2)) {
      size_t k = s + 2;
      const char start_mod = k < src_.size() && (src_[k] == '-' || src_[k] == '+') ? src_[k++] : '\0';
      const bool strip_body_end = start_mod == '-';
      while (k < src_.size() && is_ws(src_[k])) ++k;
      if (src_.compare(k, 6, "endraw") != 0) continue;
      k += 6;
      while (k < src_.size() && is_ws(src_[k])) ++k;
      char end_mod = '\0';
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) end_mod = src_[k++];
      if (src_.compare(k, 2, "%}") != 0) continue;
      std::string text(src_.substr(body, s - body));
      if (strip_body_start) {
        size_t n = 0;
        while (n < text.size() && is_ws(text[n])) ++n;
        text.erase(0, n);
      }
      if (strip_body_end) {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      } else if (start_mod != '+') {
        // lstrip_blocks applies to {% endraw %} as to any block tag (trim_blocks does not apply after
        // {% raw %}: the body keeps its first newline).
        const size_t nl = text.rfind('\n');
        if (nl != std::string::npos) {
          bool blank = true;
          for (size_t c = nl + 1; c < text.size(); ++c) blank &= text[c] == ' ' || text[c] == '\t';
          if (blank) text.erase(nl + 1);
        }
      }
      emit_text(std::move(text), body);
      *strip_next = end_mod == '-';
      *trim_next = end_mod == '\0';
      *pos = k + 2;
      return true;
    }
    syntax_error(line_at(tag), "{% raw %} without {% endraw %}");
  }

  size_t lex_tag(bool is_var, size_t tag, size_t p, bool* strip_next, bool* trim_next) {
    tokens_.push_back({is_var ? Tok::VarBegin : Tok::BlockBegin, "", 0, 0.0, line_at(tag)});
    const char close = is_var ? '}' : '%';
    int brackets = 0;
    while (true) {
      while (p < src_.size() && is_ws(src_[p])) ++p;
      if (p >= src_.size()) syntax_error(line_at(tag), is_var ? "unterminated '{{'" : "unterminated '{%'");
      const int line = line_at(p);
      // End of tag: "}}" / "%}", optionally preceded by '-' or '+'; only outside brackets.
      if (brackets == 0) {
        size_t q = p;
        char mod = '\0';
        if ((src_[q] == '-' || src_[q] == '+') && q + 2 < src_.size() && src_[q + 1] == close &&
            src_[q + 2] == '}')
          mod = src_[q++];
        if (q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}') {
          tokens_.push_back({is_var ? Tok::VarEnd : Tok::BlockEnd, "", 0, 0.0, line});
          *strip_next = mod == '-';
          *trim_next = !is_var && mod == '\0';
          return q + 2;
        }
      }
      const char c = src_[p];
      if (is_name_start(c)) {
        size_t e = p;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        tokens_.push_back({Tok::Name, std::string(src_.substr(p, e - p)), 0, 0.0, line});
        p = e;
      } else if (c >= '0' && c <= '9') {
        p = lex_number(p, line);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p, line);
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                           "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                           "]",  "{",  "}",  ",",  ".",  ":",  "|"};
        const char* op = nullptr;
        for (const char* o : kOps) {
          if (src_.compare(p, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        }
        if (!op) syntax_error(line, fmt::format("unexpected character '{}'", c));
        if (*op == '(' || *op == '[' || *op == '{') ++brackets;
        if ((*op == ')' || *op == ']' || *op == '}') && op[1] == '\0') brackets = std::max(0, brackets - 1);
        tokens_.push_back({Tok::Op, op, 0, 0.0, line});
        p += std::strlen(op);
      }
    }
  }

  size_t lex_number(size_t p, int line) {
    std::string digits;
    size_t e = p;
    auto take_digits = [&] {
      const size_t start = e;
      while (e < src_.size() && ((src_[e] >= '0' && src_[e] <= '9') || (src_[e] == '_' && e > start))) {
        if (src_[e] != '_') digits += src_[e];
        ++e;
      }
    };
    take_digits();
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && src_[e + 1] >= '0' && src_[e + 1] <= '9') {
      is_float = true;
      digits += '.';
      ++e;
      take_digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t k = e + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && src_[k] >= '0' && src_[k] <= '9') {
        is_float = true;
        digits += 'e';
        digits.append(src_.substr(e + 1, k - e - 1));
        e = k;
        take_digits();
      }
    }
    Token t{is_float ? Tok::Float : Tok::Int, "", 0, 0.0, line};
    if (is_float) {
      t.f = std::strtod(digits.c_str(), nullptr);
    } else {
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), t.i);
      if (ec != std::errc()) syntax_error(line, "integer literal out of range");
    }
    tokens_.push_back(std::move(t));
    return e;
  }

  size_t lex_string(size_t p, int line) {
    const char q = src_[p];
    std::string out;
    size_t i = p + 1;
    while (true) {
      if (i >= src_.size()) syntax_error(line, "unterminated string literal");
      const char c = src_[i];
      if (c == q) break;
      if (c != '\\' || i + 1 >= src_.size()) {
        out += c;
        ++i;
        continue;
      }
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          bool ok = i + n <= src_.size();
          for (size_t k = 0; ok && k < n; ++k) {
            const char h = src_[i + k];
            const int v = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (v < 0) ok = false;
            cp = cp * 16 + static_cast<uint32_t>(std::max(v, 0));
          }
          if (!ok || cp > 0x10FFFF) syntax_error(line, fmt::format("bad \\{} escape in string literal", e));
          i += n;
          append_utf8(out, cp);
          break;
        }
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
    tokens_.push_back({Tok::String, std::move(out), 0, 0.0, line});
    return i + 1;
  }

  std::string_view src_;
  std::vector<Token> tokens_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------------------------------

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class K {
    Literal,  // value
    Name,     // name
    List,     // args
    Dict,     // kwargs (keys as expressions in args, values in args interleaved: k0 v0 k1 v1 ...)
    Attr,     // args[0] . name
    Index,    // args[0] [ args[1] ]
    Slice,    // args[0] [ args[1] : args[2] : args[3] ] (null parts allowed)
    Call,     // args[0] ( args[1..] , kwargs )
    Filter,   // args[0] | name ( args[1..], kwargs )
    Test,     // args[0] is [not] name ( args[1..] )
    Unary,    // name in {"-", "+", "not"} args[0]
    Binary,   // args[0] name args[1]; name in + - * / // % ** ~ and or
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    Cond,     // args[1] if args[0] else args[2] (args[2] may be null)
  };
  K k;
  int line;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
  int depth = 1;  // height of this subtree; bounded at parse time so evaluation cannot overflow the stack
};

using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class K { Text, Output, If, For, Set, SetAttr, SetBlock, Macro, Break, Continue };
  K k;
  int line;
  std::string text;                                // Text; SetAttr: the attribute; Macro: the name
  ExprPtr expr;                                    // Output; Set/SetAttr value; For iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: (condition, body) for if and each elif
  Body body, else_body;                            // For/SetBlock/Macro body; If/For else
  std::vector<std::string> targets;                // For/Set/SetBlock names; SetAttr: the namespace
  ExprPtr filter;                                  // For: "if" condition
  std::vector<ExprPtr> defaults;                   // Macro: one per target (parameter), null if none
};

struct Template::Node {
  Body body;
};

// ---------------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------------

namespace {

const std::unordered_set<std::string>& known_filters() {
  static const std::unordered_set<std::string> k = {
      "abs",     "attr",    "capitalize", "count",  "d",      "default",    "dictsort", "e",
      "escape",  "first",   "float",      "indent", "int",    "items",      "join",     "last",
      "length",  "list",    "lower",      "map",    "max",    "min",        "reject",   "rejectattr",
      "replace", "reverse", "round",      "safe",   "select", "selectattr", "sort",     "string",
      "sum",     "title",   "tojson",     "trim",   "unique", "upper",      "wordcount"};
  return k;
}

const std::unordered_set<std::string>& known_tests() {
  static const std::unordered_set<std::string> k = {
      "defined",     "undefined", "none",    "boolean",  "false",       "true",     "integer", "float",
      "number",      "string",    "mapping", "iterable", "sequence",    "callable", "odd",     "even",
      "divisibleby", "eq",        "equalto", "==",       "ne",          "!=",       "lt",      "lessthan",
      "<",           "le",        "<=",      "gt",       "greaterthan", ">",        "ge",      ">=",
      "in",          "lower",     "upper",   "sameas",   "escaped"};
  return k;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, int max_depth) : toks_(std::move(tokens)), max_depth_(max_depth) {}

  Body parse_template() {
    std::string stopped_at;
    Body body = parse_body({}, &stopped_at);
    if (peek().type != Tok::End) syntax_error(peek().line, "unexpected tag");
    return body;
  }

 private:
  struct DepthGuard {
    Parser& p;
    DepthGuard(Parser& parser, int line) : p(parser) {
      if (++p.depth_ > p.max_depth_) syntax_error(line, "template nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  const Token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool peek_op(const char* op, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Op && peek(ahead).text == op;
  }
  bool peek_name(const char* n, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Name && peek(ahead).text == n;
  }
  void expect_op(const char* op) {
    if (!peek_op(op)) syntax_error(peek().line, fmt::format("expected '{}', found {}", op, describe(peek())));
    next();
  }
  std::string expect_name() {
    if (peek().type != Tok::Name)
      syntax_error(peek().line, fmt::format("expected a name, found {}", describe(peek())));
    return next().text;
  }
  void expect_block_end() {
    if (peek().type != Tok::BlockEnd)
      syntax_error(peek().line, fmt::format("expected '%}}', found {}", describe(peek())));
    next();
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::Text:
        return "text";
      case Tok::VarBegin:
        return "'{{'";
      case Tok::VarEnd:
        return "'}}'";
      case Tok::BlockBegin:
        return "'{%'";
      case Tok::BlockEnd:
        return "'%}'";
      case Tok::Name:
        return "'" + t.text + "'";
      case Tok::String:
        return "a string";
      case Tok::Int:
      case Tok::Float:
        return "a number";
      case Tok::Op:
        return "'" + t.text + "'";
      case Tok::End:
        return "the end of the template";
    }
    return "?";
  }

  // Parses statements until a {% name %} with name in stops (left unconsumed after '{%' and the name is
  // returned in *stopped_at) or the end of the template.
  Body parse_body(const std::vector<const char*>& stops, std::string* stopped_at) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == Tok::End) {
        if (!stops.empty())
          syntax_error(t.line,
                       fmt::format("unexpected end of template; expected '{{% {} %}}'", stops.back()));
        return body;
      }
      if (t.type == Tok::Text) {
        auto s = std::make_unique<Stmt>();
        s->k = Stmt::K::Text;
        s->line = t.line;
        s->text = t.text;
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::VarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->k = Stmt::K::Output;
        s->line = t.line;
        s->expr = parse_expr();
        if (peek().type != Tok::VarEnd)
          syntax_error(peek().line, fmt::format("expected '}}}}', found {}", describe(peek())));
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::BlockBegin) {
        const Token& name_tok = peek(1);
        if (name_tok.type != Tok::Name) syntax_error(name_tok.line, "expected a tag name after '{%'");
        for (const char* stop : stops) {
          if (name_tok.text == stop) {
            next();
            next();
            *stopped_at = stop;
            return body;
          }
        }
        next();
        body.push_back(parse_statement());
      } else {
        syntax_error(t.line, fmt::format("unexpected {}", describe(t)));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token& name_tok = next();
    const int line = name_tok.line;
    const std::string name = name_tok.text;
    DepthGuard guard(*this, line);
    auto s = std::make_unique<Stmt>();
    s->line = line;
    std::string stopped;
    if (name == "if") {
      s->k = Stmt::K::If;
      ExprPtr cond = parse_expr();
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"}, &stopped);
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (stopped == "elif") {
          cond = parse_expr();
          expect_block_end();
          continue;
        }
        if (stopped == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, &stopped);
        }
        expect_block_end();
        break;
      }
    } else if (name == "for") {
      s->k = Stmt::K::For;
      s->targets.push_back(expect_name());
      while (peek_op(",")) {
        next();
        s->targets.push_back(expect_name());
      }
      if (!peek_name("in")) syntax_error(peek().line, "expected 'in' in for loop");
      next();
      s->expr = parse_expr(/*allow_cond=*/false);
      if (peek_name("if")) {
        next();
        s->filter = parse_expr();
      }
      if (peek_name("recursive")) syntax_error(peek().line, "recursive for loops are not supported");
      expect_block_end();
      ++loop_depth_;
      s->body = parse_body({"else", "endfor"}, &stopped);
      --loop_depth_;
      if (stopped == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, &stopped);
      }
      expect_block_end();
    } else if (name == "set") {
      const std::string first = expect_name();
      if (peek_op(".")) {
        next();
        s->k = Stmt::K::SetAttr;
        s->targets.push_back(first);
        s->text = expect_name();
        expect_op("=");
        s->expr = parse_tuple_expr();
        expect_block_end();
      } else {
        s->targets.push_back(first);
        while (peek_op(",")) {
          next();
          s->targets.push_back(expect_name());
        }
        if (peek_op("=")) {
          next();
          s->k = Stmt::K::Set;
          s->expr = parse_tuple_expr();
          expect_block_end();
        } else {
          if (s->targets.size() != 1) syntax_error(line, "a block set assigns a single name");
          s->k = Stmt::K::SetBlock;
          expect_block_end();
          s->body = parse_body({"endset"}, &stopped);
          expect_block_end();
        }
      }
    } else if (name == "macro") {
      s->k = Stmt::K::Macro;
      s->text = expect_name();
      expect_op("(");
      while (!peek_op(")")) {
        s->targets.push_back(expect_name());
        if (peek_op("=")) {
          next();
          s->defaults.push_back(parse_expr());
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!peek_op(")")) expect_op(",");
      }
      next();
      expect_block_end();
      const int saved_loops = loop_depth_;
      loop_depth_ = 0;
      s->body = parse_body({"endmacro"}, &stopped);
      loop_depth_ = saved_loops;
      expect_block_end();
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) syntax_error(line, fmt::format("'{}' outside a for loop", name));
      s->k = name == "break" ? Stmt::K::Break : Stmt::K::Continue;
      expect_block_end();
    } else if (name == "generation") {
      // HF's marker around assistant text (for masks); renders its body unchanged.
      expect_block_end();
      s->k = Stmt::K::If;
      auto always = std::make_unique<Expr>();
      always->k = Expr::K::Literal;
      always->line = line;
      always->value = Value::boolean(true);
      s->branches.emplace_back(std::move(always), parse_body({"endgeneration"}, &stopped));
      expect_block_end();
    } else {
      syntax_error(line, fmt::format("unsupported or unknown tag '{}'", name));
    }
    return s;
  }

  // An expression, or a bare tuple "a, b" (a list value).
  ExprPtr parse_tuple_expr() {
    ExprPtr first = parse_expr();
    if (!peek_op(",")) return first;
    auto list = make(Expr::K::List, first->line);
    list->name = "tuple";
    list->args.push_back(std::move(first));
    while (peek_op(",")) {
      next();
      if (peek().type == Tok::BlockEnd) break;
      list->args.push_back(parse_expr());
    }
    return seal(std::move(list));
  }

  static ExprPtr make(Expr::K k, int line) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->line = line;
    return e;
  }

  // Records the height of a node whose children are complete. Left-leaning chains ("a+a+a+...",
  // "x|f|f|f...") are built iteratively, so height is checked here rather than by recursion depth.
  ExprPtr seal(ExprPtr e) const {
    int h = 0;
    for (const auto& a : e->args)
      if (a) h = std::max(h, a->depth);
    for (const auto& kv : e->kwargs) h = std::max(h, kv.second->depth);
    e->depth = h + 1;
    if (e->depth > max_depth_) syntax_error(e->line, "expression nested too deeply");
    return e;
  }

  ExprPtr parse_expr(bool allow_cond = true) {
    DepthGuard guard(*this, peek().line);
    ExprPtr e = parse_or();
    while (allow_cond && peek_name("if")) {
      const int line = next().line;
      auto c = make(Expr::K::Cond, line);
      c->args.push_back(parse_or());
      c->args.push_back(std::move(e));
      if (peek_name("else")) {
        next();
        c->args.push_back(parse_expr());
      } else {
        c->args.push_back(nullptr);
      }
      e = seal(std::move(c));
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto b = make(Expr::K::Binary, l->line);
    b->name = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return seal(std::move(b));
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (peek_name("or")) {
      next();
      l = binary("or", std::move(l), parse_and());
    }
    return l;
  }
  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (peek_name("and")) {
      next();
      l = binary("and", std::move(l), parse_not());
    }
    return l;
  }
  ExprPtr parse_not() {
    if (peek_name("not")) {
      DepthGuard guard(*this, peek().line);
      const int line = next().line;
      auto n = make(Expr::K::Unary, line);
      n->name = "not";
      n->args.push_back(parse_not());
      return seal(std::move(n));
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (peek().type == Tok::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                     peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (peek_name("in")) {
        next();
        op = "in";
      } else if (peek_name("not") && peek_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::K::Compare, first->line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? seal(std::move(cmp)) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (peek_op("+") || peek_op("-")) {
      const std::string op = next().text;
      l = binary(op, std::move(l), parse_concat());
    }
    return l;
  }
  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (peek_op("~")) {
      next();
      l = binary("~", std::move(l), parse_math2());
    }
    return l;
  }
  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (peek_op("*") || peek_op("/") || peek_op("//") || peek_op("%")) {
      const std::string op = next().text;
      l = binary(op, std::move(l), parse_pow());
    }
    return l;
  }
  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (peek_op("**")) {
      next();
      l = binary("**", std::move(l), parse_unary(true));
    }
    return l;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this, peek().line);
    ExprPtr node;
    if (peek_op("-") || peek_op("+")) {
      const Token& t = next();
      node = make(Expr::K::Unary, t.line);
      node->name = t.text;
      node->args.push_back(parse_unary(false));
      node = seal(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filters(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Tok::Name: {
        next();
        auto e = make(Expr::K::Literal, t.line);
        if (t.text == "true" || t.text == "True") {
          e->value = Value::boolean(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value::boolean(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->k = Expr::K::Name;
          e->name = t.text;
        }
        return e;
      }
      case Tok::String: {
        std::string s = next().text;
        while (peek().type == Tok::String) s += next().text;  // adjacent literals concatenate
        auto e = make(Expr::K::Literal, t.line);
        e->value = Value::string(std::move(s));
        return e;
      }
      case Tok::Int: {
        auto e = make(Expr::K::Literal, t.line);
        e->value = Value::integer(next().i);
        return e;
      }
      case Tok::Float: {
        auto e = make(Expr::K::Literal, t.line);
        e->value = Value::number(next().f);
        return e;
      }
      case Tok::Op:
        if (t.text == "(") {
          next();
          if (peek_op(")")) {
            next();
            auto empty = make(Expr::K::List, t.line);  // () is an empty tuple
            empty->name = "tuple";
            return empty;
          }
          ExprPtr e = parse_expr();
          if (peek_op(",")) {
            auto list = make(Expr::K::List, t.line);
            list->name = "tuple";
            list->args.push_back(std::move(e));
            while (peek_op(",")) {
              next();
              if (peek_op(")")) break;
              list->args.push_back(parse_expr());
            }
            e = seal(std::move(list));
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          next();
          auto list = make(Expr::K::List, t.line);
          while (!peek_op("]")) {
            list->args.push_back(parse_expr());
            if (!peek_op("]")) expect_op(",");
          }
          next();
          return seal(std::move(list));
        }
        if (t.text == "{") {
          next();
          auto dict = make(Expr::K::Dict, t.line);
          while (!peek_op("}")) {
            dict->args.push_back(parse_expr());
            expect_op(":");
            dict->args.push_back(parse_expr());
            if (!peek_op("}")) expect_op(",");
          }
          next();
          return seal(std::move(dict));
        }
        break;
      default:
        break;
    }
    syntax_error(t.line, fmt::format("unexpected {} in expression", describe(t)));
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!peek_op(")")) {
      if (peek().type == Tok::Name && peek_op("=", 1)) {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expr());
      } else {
        if (!call.kwargs.empty()) syntax_error(peek().line, "positional argument after keyword argument");
        call.args.push_back(parse_expr());
      }
      if (!peek_op(")")) expect_op(",");
    }
    next();
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (peek_op(".")) {
        const int line = next().line;
        if (peek().type == Tok::Int) {
          auto idx = make(Expr::K::Index, line);
          idx->args.push_back(std::move(node));
          auto lit = make(Expr::K::Literal, line);
          lit->value = Value::integer(next().i);
          idx->args.push_back(std::move(lit));
          node = seal(std::move(idx));
          continue;
        }
        auto attr = make(Expr::K::Attr, line);
        attr->name = expect_name();
        attr->args.push_back(std::move(node));
        node = seal(std::move(attr));
      } else if (peek_op("[")) {
        const int line = next().line;
        ExprPtr start, stop, step;
        bool slice = false;
        if (!peek_op(":")) start = parse_expr();
        if (peek_op(":")) {
          slice = true;
          next();
          if (!peek_op(":") && !peek_op("]")) stop = parse_expr();
          if (peek_op(":")) {
            next();
            if (!peek_op("]")) step = parse_expr();
          }
        }
        expect_op("]");
        auto e = make(slice ? Expr::K::Slice : Expr::K::Index, line);
        e->args.push_back(std::move(node));
        e->args.push_back(std::move(start));
        if (slice) {
          e->args.push_back(std::move(stop));
          e->args.push_back(std::move(step));
        }
        node = seal(std::move(e));
      } else if (peek_op("(")) {
        auto call = make(Expr::K::Call, peek().line);
        call->args.push_back(std::move(node));
        parse_call_args(*call);
        node = seal(std::move(call));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr node) {
    while (true) {
      if (peek_op("|")) {
        const int line = next().line;
        auto f = make(Expr::K::Filter, line);
        f->name = expect_name();
        if (!known_filters().count(f->name)) syntax_error(line, fmt::format("unknown filter '{}'", f->name));
        f->args.push_back(std::move(node));
        if (peek_op("(")) parse_call_args(*f);
        node = seal(std::move(f));
      } else if (peek_name("is")) {
        const int line = next().line;
        auto t = make(Expr::K::Test, line);
        if (peek_name("not")) {
          next();
          t->negated = true;
        }
        if (peek().type == Tok::Name) {
          t->name = next().text;
        } else if (peek().type == Tok::Op &&
                   (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == "<=" ||
                    peek().text == ">" || peek().text == ">=")) {
          t->name = next().text;
        } else {
          syntax_error(line, "expected a test name after 'is'");
        }
        if (!known_tests().count(t->name)) syntax_error(line, fmt::format("unknown test '{}'", t->name));
        t->args.push_back(std::move(node));
        if (peek_op("(")) {
          parse_call_args(*t);
        } else if ((peek().type == Tok::Name && !peek_name("else") && !peek_name("or") && !peek_name("and") &&
                    !peek_name("if") && !peek_name("is") && !peek_name("in") && !peek_name("not")) ||
                   peek().type == Tok::String || peek().type == Tok::Int || peek().type == Tok::Float ||
                   peek_op("[") || peek_op("{")) {
          DepthGuard guard(*this, line);
          t->args.push_back(parse_postfix(parse_primary()));
        }
        node = seal(std::move(t));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
  int loop_depth_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// Interpreter
// ---------------------------------------------------------------------------------------------------

struct Scope {
  std::unordered_map<std::string, Value> vars;
  Scope* parent = nullptr;
};

enum class Flow { Normal, Break, Continue };

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return "undefined";
    case Value::Kind::None:
      return "NoneType";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Dict:
      return v.is_namespace() ? "Namespace" : "dict";
    case Value::Kind::Function:
      return "function";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return false;
    case Value::Kind::Bool:
      return v.as_bool();
    case Value::Kind::Int:
      return v.as_int() != 0;
    case Value::Kind::Float:
      return v.as_float() != 0.0;
    case Value::Kind::String:
      return !v.as_string().empty();
    case Value::Kind::List:
      return !v.as_list().empty();
    case Value::Kind::Dict:
      return v.is_namespace() || !v.as_dict().empty();
    case Value::Kind::Function:
      return true;
  }
  return false;
}

bool is_numeric(const Value& v) {
  return v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Float || v.kind() == Value::Kind::Bool;
}
bool is_integral(const Value& v) {
  return v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool;
}
int64_t int_of(const Value& v) {
  return v.kind() == Value::Kind::Bool ? (v.as_bool() ? 1 : 0) : v.as_int();
}
double float_of(const Value& v) {
  return v.kind() == Value::Kind::Float ? v.as_float() : static_cast<double>(int_of(v));
}

// Python ==. work is decremented per node visited (shared sublists make naive comparison exponential).
bool py_eq(const Value& a, const Value& b, uint64_t& work, int depth = 0) {
  if (depth > kMaxValueRecursion) fail("chat template: values nested too deeply to compare");
  if (work == 0) fail("chat template: comparison exceeded the step limit");
  --work;
  if (is_numeric(a) && is_numeric(b)) {
    if (is_integral(a) && is_integral(b)) return int_of(a) == int_of(b);
    return float_of(a) == float_of(b);
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      return a.as_string() == b.as_string();
    case Value::Kind::List: {
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      if (x.size() != y.size() || a.list_data()->is_tuple != b.list_data()->is_tuple) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!py_eq(x[i], y[i], work, depth + 1)) return false;
      return true;
    }
    case Value::Kind::Dict: {
      if (a.is_namespace() || b.is_namespace()) return a.dict_data() == b.dict_data();
      const auto& x = a.as_dict();
      if (x.size() != b.as_dict().size()) return false;
      for (const auto& [k, v] : x) {
        const Value* w = b.find(k);
        if (!w || !py_eq(v, *w, work, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::Function:
      return a.function_data() == b.function_data();
    default:
      return false;
  }
}

class Interp;

// Arguments of a filter / method / function call with Python-style positional-or-keyword lookup.
struct Args {
  const CallArgs& a;
  const char* what;
  int line;

  const Value* get(size_t index, const char* name) const {
    if (index < a.positional.size()) return &a.positional[index];
    for (const auto& [k, v] : a.keyword)
      if (k == name) return &v;
    return nullptr;
  }
  Value get_or(size_t index, const char* name, Value fallback) const {
    const Value* v = get(index, name);
    return v ? *v : std::move(fallback);
  }
  void max_positional(size_t n) const {
    if (a.positional.size() > n)
      fail("chat template: line {}: {} takes at most {} positional argument(s), got {}", line, what, n,
           a.positional.size());
  }
};

class Interp {
 public:
  Interp(const Limits& limits, const std::vector<std::pair<std::string, Value>>& globals) : lim_(limits) {
    for (const auto& [k, v] : globals) globals_[k] = v;
  }
  ~Interp() {
    // Namespaces can reference each other (even cyclically): empty them one by one so nothing is leaked
    // and no long chain is destroyed recursively.
    for (auto& ns : namespaces_) {
      std::vector<std::pair<std::string, Value>> items;
      items.swap(ns->items);
    }
  }

  std::string run(const Body& body) {
    std::string out;
    Scope root;
    root_ = &root;
    scope_ = &root;
    out_ = &out;
    exec_body(body);
    return out;
  }

 private:
  // --- bounds ------------------------------------------------------------------------------------
  void tick(int line, uint64_t n = 1) {
    steps_ += n;
    if (steps_ > lim_.max_steps)
      fail("chat template: line {}: rendering exceeded {} steps (runaway loop or oversized data?)", line,
           lim_.max_steps);
  }
  Value make_string(std::string s, int line) {
    if (s.size() > lim_.max_output_bytes)
      fail("chat template: line {}: a string of {} bytes exceeds the {}-byte limit", line, s.size(),
           lim_.max_output_bytes);
    tick(line, s.size() / 32);
    return Value::string(std::move(s));
  }
  Value make_list(std::vector<Value> items, int line) {
    tick(line, items.size());
    Value v = Value::list(std::move(items));
    check_depth(v, line);
    return v;
  }
  void check_depth(const Value& v, int line) const {
    if (v.depth() > lim_.max_depth)
      fail("chat template: line {}: value nested deeper than {}", line, lim_.max_depth);
  }
  void emit(std::string_view s, int line) {
    tick(line, 1 + s.size() / 32);
    if (out_->size() + s.size() > lim_.max_output_bytes)
      fail("chat template: line {}: output exceeds the {}-byte limit", line, lim_.max_output_bytes);
    out_->append(s);
  }
  struct DepthGuard {
    Interp& in;
    DepthGuard(Interp& interp, int line) : in(interp) {
      // Expressions and statements are each bounded by max_depth at parse time; twice that leaves room
      // for both plus some macro recursion while keeping the C++ stack shallow.
      if (++in.depth_ > 2 * in.lim_.max_depth)
        fail("chat template: line {}: evaluation nested deeper than {} (recursive macro?)", line,
             2 * in.lim_.max_depth);
    }
    ~DepthGuard() { --in.depth_; }
  };

  [[noreturn]] static void error(int line, const std::string& msg) {
    fail("chat template: line {}: {}", line, msg);
  }

  [[noreturn]] static void undefined_error(const Value& v, int line) {
    const std::string& hint = v.undefined_hint();
    error(line, hint.empty() ? "undefined value used" : hint + " is undefined");
  }

  // --- statements --------------------------------------------------------------------------------
  Flow exec_body(const Body& body) {
    for (const auto& s : body) {
      const Flow f = exec(*s);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s) {
    tick(s.line);
    DepthGuard guard(*this, s.line);
    switch (s.k) {
      case Stmt::K::Text:
        emit(s.text, s.line);
        return Flow::Normal;
      case Stmt::K::Output: {
        const Value v = eval(*s.expr);
        if (v.is_string()) {
          emit(v.as_string(), s.line);
        } else {
          emit(to_python_string(v, lim_.max_output_bytes), s.line);
        }
        return Flow::Normal;
      }
      case Stmt::K::If:
        for (const auto& [cond, body] : s.branches)
          if (truthy(eval(*cond))) return exec_body(body);
        return exec_body(s.else_body);
      case Stmt::K::For:
        return exec_for(s);
      case Stmt::K::Set: {
        Value v = eval(*s.expr);
        assign(s.targets, std::move(v), s.line);
        return Flow::Normal;
      }
      case Stmt::K::SetAttr: {
        const Value ns = lookup(s.targets[0]);
        if (!ns.is_namespace())
          error(s.line,
                fmt::format("cannot assign attribute '{}' on {} '{}' (only a namespace() can be changed)",
                            s.text, type_name(ns), s.targets[0]));
        Value v = eval(*s.expr);
        auto& data = *ns.dict_data();
        tick(s.line, data.items.size() / 16);
        data.depth = std::max(data.depth, v.depth() + 1);
        if (data.depth > lim_.max_depth) error(s.line, "namespace value nested too deeply");
        for (auto& [k, old] : data.items) {
          if (k == s.text) {
            old = std::move(v);
            return Flow::Normal;
          }
        }
        tick(s.line, data.items.size());
        data.items.emplace_back(s.text, std::move(v));
        return Flow::Normal;
      }
      case Stmt::K::SetBlock: {
        std::string captured = capture(s.body);
        scope_->vars[s.targets[0]] = make_string(std::move(captured), s.line);
        return Flow::Normal;
      }
      case Stmt::K::Macro: {
        auto fn = std::make_shared<Value::FunctionData>();
        fn->name = s.text;
        fn->macro = &s;
        scope_->vars[s.text] = Value::from_function_data(std::move(fn));
        return Flow::Normal;
      }
      case Stmt::K::Break:
        return Flow::Break;
      case Stmt::K::Continue:
        return Flow::Continue;
    }
    return Flow::Normal;
  }

  std::string capture(const Body& body) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
      exec_body(body);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return buf;
  }

  void assign(const std::vector<std::string>& targets, Value v, int line) {
    if (targets.size() == 1) {
      scope_->vars[targets[0]] = std::move(v);
      return;
    }
    const std::vector<Value> items = iterate(v, line);
    if (items.size() != targets.size())
      error(line, fmt::format("cannot unpack {} values into {} names", items.size(), targets.size()));
    for (size_t i = 0; i < targets.size(); ++i) scope_->vars[targets[i]] = items[i];
  }

  Flow exec_for(const Stmt& s) {
    const Value seq = eval(*s.expr);
    std::vector<Value> items = iterate(seq, s.line);
    Scope* outer = scope_;
    if (s.filter) {
      std::vector<Value> kept;
      for (Value& item : items) {
        Scope tmp{{}, outer};
        scope_ = &tmp;
        try {
          assign(s.targets, item, s.line);
          if (truthy(eval(*s.filter))) kept.push_back(std::move(item));
        } catch (...) {
          scope_ = outer;
          throw;
        }
        scope_ = outer;
      }
      items.swap(kept);
    }
    if (items.empty()) return exec_body(s.else_body);
    const int64_t n = static_cast<int64_t>(items.size());
    // loop.cycle(a, b, ...) picks by loop.index0.
    auto index_cell = std::make_shared<int64_t>(0);
    const Value cycle = Value::function("loop.cycle", [index_cell](const CallArgs& a) -> Value {
      if (a.positional.empty()) fail("chat template: loop.cycle() needs at least one argument");
      return a.positional[static_cast<size_t>(*index_cell) % a.positional.size()];
    });
    for (int64_t i = 0; i < n; ++i) {
      tick(s.line);
      *index_cell = i;
      Scope iter{{}, outer};
      scope_ = &iter;
      Flow f;
      try {
        assign(s.targets, items[static_cast<size_t>(i)], s.line);
        iter.vars["loop"] = Value::dict({
            {"index", Value::integer(i + 1)},
            {"index0", Value::integer(i)},
            {"revindex", Value::integer(n - i)},
            {"revindex0", Value::integer(n - i - 1)},
            {"first", Value::boolean(i == 0)},
            {"last", Value::boolean(i == n - 1)},
            {"length", Value::integer(n)},
            {"depth", Value::integer(1)},
            {"depth0", Value::integer(0)},
            {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("loop.previtem")},
            {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("loop.nextitem")},
            {"cycle", cycle},
        });
        f = exec_body(s.body);
      } catch (...) {
        scope_ = outer;
        throw;
      }
      scope_ = outer;
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  // --- names -------------------------------------------------------------------------------------
  Value lookup(const std::string& name) const {
    for (const Scope* s = scope_; s; s = s->parent) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return it->second;
    }
    auto g = globals_.find(name);
    if (g != globals_.end()) return g->second;
    if (name == "range" || name == "namespace" || name == "dict") return builtin_function(name);
    return Value::undefined("'" + name + "'");
  }

  Value builtin_function(const std::string& name) const {
    auto fn = std::make_shared<Value::FunctionData>();
    fn->name = name;  // dispatched by name in call_function (they need the interpreter)
    return Value::from_function_data(std::move(fn));
  }

  // --- iteration ---------------------------------------------------------------------------------
  std::vector<Value> iterate(const Value& v, int line) {
    switch (v.kind()) {
      case Value::Kind::Undefined:
        return {};
      case Value::Kind::List:
        tick(line, v.as_list().size());
        return v.as_list();
      case Value::Kind::Dict: {
        std::vector<Value> keys;
        tick(line, v.as_dict().size());
        for (const auto& kv : v.as_dict()) keys.push_back(Value::string(kv.first));
        return keys;
      }
      case Value::Kind::String: {
        const std::string& s = v.as_string();
        tick(line, s.size());
        std::vector<Value> chars;
        const std::vector<size_t> off = codepoint_offsets(s);
        for (size_t i = 0; i + 1 < off.size(); ++i)
          chars.push_back(Value::string(s.substr(off[i], off[i + 1] - off[i])));
        return chars;
      }
      default:
        error(line, fmt::format("'{}' object is not iterable", type_name(v)));
    }
  }

  // --- expressions -------------------------------------------------------------------------------
  Value eval(const Expr& e) {
    tick(e.line);
    DepthGuard guard(*this, e.line);
    switch (e.k) {
      case Expr::K::Literal:
        return e.value;
      case Expr::K::Name:
        return lookup(e.name);
      case Expr::K::List: {
        std::vector<Value> items;
        items.reserve(e.args.size());
        for (const auto& a : e.args) items.push_back(eval(*a));
        Value v = make_list(std::move(items), e.line);
        if (e.name == "tuple") v.list_data()->is_tuple = true;
        return v;
      }
      case Expr::K::Dict: {
        std::vector<std::pair<std::string, Value>> items;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const Value k = eval(*e.args[i]);
          std::string key = k.is_string() ? k.as_string() : to_python_string(k, lim_.max_output_bytes);
          Value val = eval(*e.args[i + 1]);
          bool replaced = false;
          for (auto& [ek, ev] : items) {
            if (ek == key) {
              ev = val;
              replaced = true;
            }
          }
          if (!replaced) items.emplace_back(std::move(key), std::move(val));
        }
        tick(e.line, items.size() * items.size() / 16);
        Value v = Value::dict(std::move(items));
        check_depth(v, e.line);
        return v;
      }
      case Expr::K::Attr:
        return get_attr(eval(*e.args[0]), e.name, e.line);
      case Expr::K::Index:
        return get_item(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case Expr::K::Slice:
        return slice(e);
      case Expr::K::Call:
        return eval_call(e);
      case Expr::K::Filter: {
        Value v = eval(*e.args[0]);
        CallArgs ca = eval_args(e, 1);
        return apply_filter(e.name, v, ca, e.line);
      }
      case Expr::K::Test: {
        const Value v = eval(*e.args[0]);
        CallArgs ca = eval_args(e, 1);
        const bool r = apply_test(e.name, v, ca, e.line);
        return Value::boolean(r != e.negated);
      }
      case Expr::K::Unary: {
        const Value v = eval(*e.args[0]);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.is_undefined()) undefined_error(v, e.line);
        if (!is_numeric(v))
          error(e.line, fmt::format("bad operand type for unary {}: '{}'", e.name, type_name(v)));
        if (e.name == "+") return is_integral(v) ? Value::integer(int_of(v)) : v;
        if (is_integral(v)) {
          const int64_t i = int_of(v);
          if (i == std::numeric_limits<int64_t>::min()) error(e.line, "integer overflow");
          return Value::integer(-i);
        }
        return Value::number(-v.as_float());
      }
      case Expr::K::Binary: {
        if (e.name == "and") {
          Value l = eval(*e.args[0]);
          return truthy(l) ? eval(*e.args[1]) : l;
        }
        if (e.name == "or") {
          Value l = eval(*e.args[0]);
          return truthy(l) ? l : eval(*e.args[1]);
        }
        const Value l = eval(*e.args[0]);
        const Value r = eval(*e.args[1]);
        return binary(e.name, l, r, e.line);
      }
      case Expr::K::Compare: {
        Value left = eval(*e.args[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          if (!compare(e.ops[i], left, right, e.line)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::K::Cond:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("conditional expression without else");
    }
    return {};
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs ca;
    for (size_t i = first; i < e.args.size(); ++i) ca.positional.push_back(eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) ca.keyword.emplace_back(k, eval(*v));
    return ca;
  }

  Value get_attr(const Value& obj, const std::string& name, int line) {
    if (obj.is_undefined()) {
      const std::string& hint = obj.undefined_hint();
      error(line, fmt::format("cannot read attribute '{}' of an undefined value{}", name,
                              hint.empty() ? "" : " (" + hint + ")"));
    }
    if (obj.is_dict()) {
      tick(line, obj.as_dict().size() / 16);
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(fmt::format("'{}' has no attribute '{}'", type_name(obj), name));
    }
    return Value::undefined(fmt::format("'{}' object has no attribute '{}'", type_name(obj), name));
  }

  Value get_item(const Value& obj, const Value& key, int line) {
    if (obj.is_undefined()) {
      const std::string& hint = obj.undefined_hint();
      error(line, fmt::format("cannot index an undefined value{}", hint.empty() ? "" : " (" + hint + ")"));
    }
    if (obj.is_dict()) {
      tick(line, obj.as_dict().size() / 16);
      if (key.is_string()) {
        if (const Value* v = obj.find(key.as_string())) return *v;
        return Value::undefined(fmt::format("key '{}'", key.as_string()));
      }
      return Value::undefined("key");
    }
    if ((obj.is_list() || obj.is_string()) && is_integral(key)) {
      const bool is_str = obj.is_string();
      std::vector<size_t> off;
      size_t n;
      if (is_str) {
        off = codepoint_offsets(obj.as_string());
        n = off.size() - 1;
        tick(line, obj.as_string().size() / 64);
      } else {
        n = obj.as_list().size();
      }
      int64_t i = int_of(key);
      if (i < 0) i += static_cast<int64_t>(n);
      if (i < 0 || i >= static_cast<int64_t>(n)) return Value::undefined("index out of range");
      const auto u = static_cast<size_t>(i);
      if (!is_str) return obj.as_list()[u];
      return Value::string(obj.as_string().substr(off[u], off[u + 1] - off[u]));
    }
    if (key.is_string()) return get_attr(obj, key.as_string(), line);
    return Value::undefined("item");
  }

  Value slice(const Expr& e) {
    const Value obj = eval(*e.args[0]);
    auto part = [&](size_t i) -> std::optional<int64_t> {
      if (!e.args[i]) return std::nullopt;
      const Value v = eval(*e.args[i]);
      if (v.is_none()) return std::nullopt;
      if (!is_integral(v)) error(e.line, "slice indices must be integers or none");
      return int_of(v);
    };
    const auto start = part(1), stop = part(2), step_opt = part(3);
    const int64_t step = step_opt.value_or(1);
    if (step == 0) error(e.line, "slice step cannot be zero");
    if (obj.is_undefined()) undefined_error(obj, e.line);
    std::vector<size_t> off;
    int64_t n;
    if (obj.is_string()) {
      off = codepoint_offsets(obj.as_string());
      n = static_cast<int64_t>(off.size()) - 1;
    } else if (obj.is_list()) {
      n = static_cast<int64_t>(obj.as_list().size());
    } else {
      error(e.line, fmt::format("'{}' object is not subscriptable with a slice", type_name(obj)));
    }
    // Python's slice index adjustment.
    auto adjust = [&](std::optional<int64_t> v, bool is_start) -> int64_t {
      if (!v) return step < 0 ? (is_start ? n - 1 : -1) : (is_start ? 0 : n);
      int64_t x = *v;
      if (x < 0) {
        x += n;
        if (x < 0) x = step < 0 ? -1 : 0;
      } else if (x >= n) {
        x = step < 0 ? n - 1 : n;
      }
      return x;
    };
    const int64_t a = adjust(start, true), b = adjust(stop, false);
    std::vector<size_t> picked;
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
      picked.push_back(static_cast<size_t>(i));
      if (step > 0 ? i > std::numeric_limits<int64_t>::max() - step
                   : i < std::numeric_limits<int64_t>::min() - step)
        break;
    }
    tick(e.line, picked.size());
    if (obj.is_string()) {
      const std::string& s = obj.as_string();
      std::string out;
      for (size_t i : picked) out.append(s, off[i], off[i + 1] - off[i]);
      return make_string(std::move(out), e.line);
    }
    std::vector<Value> out;
    out.reserve(picked.size());
    for (size_t i : picked) out.push_back(obj.as_list()[i]);
    return make_list(std::move(out), e.line);
  }

  // --- operators ---------------------------------------------------------------------------------
  Value binary(const std::string& op, const Value& l, const Value& r, int line) {
    if (op == "~") {
      std::string s = to_python_string(l, lim_.max_output_bytes);
      s += to_python_string(r, lim_.max_output_bytes);
      return make_string(std::move(s), line);
    }
    if (l.is_undefined()) undefined_error(l, line);
    if (r.is_undefined()) undefined_error(r, line);
    auto type_error = [&]() -> Value {
      error(line,
            fmt::format("unsupported operand types for {}: '{}' and '{}'", op, type_name(l), type_name(r)));
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        if (l.as_string().size() + r.as_string().size() > lim_.max_output_bytes)
          error(line, fmt::format("a string exceeds the {}-byte limit", lim_.max_output_bytes));
        return make_string(l.as_string() + r.as_string(), line);
      }
      if (l.is_list() && r.is_list()) {
        std::vector<Value> items = l.as_list();
        items.insert(items.end(), r.as_list().begin(), r.as_list().end());
        return make_list(std::move(items), line);
      }
    }
    if (op == "*") {
      const Value* seq = l.is_string() || l.is_list() ? &l : r.is_string() || r.is_list() ? &r : nullptr;
      const Value* count = seq == &l ? &r : &l;
      if (seq && is_integral(*count)) {
        const int64_t times = std::max<int64_t>(0, int_of(*count));
        const size_t unit = seq->is_string() ? seq->as_string().size() : seq->as_list().size();
        if (unit > 0 && static_cast<uint64_t>(times) > lim_.max_output_bytes / unit)
          error(line, "sequence repetition result too large");
        if (seq->is_string()) {
          std::string s;
          for (int64_t i = 0; i < times; ++i) s += seq->as_string();
          return make_string(std::move(s), line);
        }
        std::vector<Value> items;
        for (int64_t i = 0; i < times; ++i)
          items.insert(items.end(), seq->as_list().begin(), seq->as_list().end());
        return make_list(std::move(items), line);
      }
    }
    if (op == "%" && l.is_string())
      error(line, "printf-style string formatting ('...' % x) is not supported");
    if (!is_numeric(l) || !is_numeric(r)) return type_error();
    const bool ints = is_integral(l) && is_integral(r);
    if (op == "/") {
      const double d = float_of(r);
      if (d == 0.0) error(line, "division by zero");
      return Value::number(float_of(l) / d);
    }
    if (ints) {
      const int64_t a = int_of(l), b = int_of(r);
      int64_t out = 0;
      if (op == "+") {
        if (__builtin_add_overflow(a, b, &out)) error(line, "integer overflow");
      } else if (op == "-") {
        if (__builtin_sub_overflow(a, b, &out)) error(line, "integer overflow");
      } else if (op == "*") {
        if (__builtin_mul_overflow(a, b, &out)) error(line, "integer overflow");
      } else if (op == "//" || op == "%") {
        if (b == 0) error(line, "integer division or modulo by zero");
        if (a == std::numeric_limits<int64_t>::min() && b == -1) error(line, "integer overflow");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {  // Python floors toward negative infinity
          q -= 1;
          m += b;
        }
        out = op == "//" ? q : m;
      } else if (op == "**") {
        if (b < 0) return Value::number(std::pow(static_cast<double>(a), static_cast<double>(b)));
        out = 1;
        for (int64_t i = 0; i < b; ++i) {
          if (__builtin_mul_overflow(out, a, &out)) error(line, "integer overflow");
          if (out == 0 || out == 1) break;
          if (out == -1) {
            out = (b % 2 == 0) ? 1 : -1;  // (-1) ** b
            break;
          }
        }
      } else {
        return type_error();
      }
      return Value::integer(out);
    }
    const double a = float_of(l), b = float_of(r);
    if (op == "+") return Value::number(a + b);
    if (op == "-") return Value::number(a - b);
    if (op == "*") return Value::number(a * b);
    if (op == "**") return Value::number(std::pow(a, b));
    if (op == "//" || op == "%") {
      if (b == 0.0) error(line, "float division or modulo by zero");
      double m = std::fmod(a, b);
      if (m != 0.0 && ((m < 0) != (b < 0))) m += b;
      if (op == "%") return Value::number(m);
      return Value::number(std::floor((a - m) / b + 0.5));
    }
    return type_error();
  }

  bool eq(const Value& a, const Value& b, int line) {
    const uint64_t budget = lim_.max_steps - std::min(steps_, lim_.max_steps) + 1;
    uint64_t work = budget;
    const bool r = py_eq(a, b, work);
    tick(line, budget - work);
    return r;
  }

  bool less(const Value& a, const Value& b, int line, int depth = 0) {
    if (depth > kMaxValueRecursion) error(line, "values nested too deeply to compare");
    if (is_numeric(a) && is_numeric(b)) {
      if (is_integral(a) && is_integral(b)) return int_of(a) < int_of(b);
      return float_of(a) < float_of(b);
    }
    if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
    if (a.is_list() && b.is_list()) {
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
        if (!eq(x[i], y[i], line)) return less(x[i], y[i], line, depth + 1);
      }
      return x.size() < y.size();
    }
    if (a.is_undefined()) undefined_error(a, line);
    if (b.is_undefined()) undefined_error(b, line);
    error(line, fmt::format("'<' not supported between '{}' and '{}'", type_name(a), type_name(b)));
  }

  bool contains(const Value& container, const Value& item, int line) {
    switch (container.kind()) {
      case Value::Kind::Undefined:
        return false;
      case Value::Kind::String:
        if (!item.is_string())
          error(line, fmt::format("'in <string>' requires a string on the left, not '{}'", type_name(item)));
        tick(line, container.as_string().size() / 32);
        return find_substring(container.as_string(), item.as_string(), 0) != std::string::npos;
      case Value::Kind::List:
        tick(line, container.as_list().size());
        for (const Value& v : container.as_list())
          if (eq(v, item, line)) return true;
        return false;
      case Value::Kind::Dict:
        tick(line, container.as_dict().size());
        return item.is_string() && container.find(item.as_string()) != nullptr;
      default:
        error(line, fmt::format("argument of type '{}' is not iterable", type_name(container)));
    }
  }

  bool compare(const std::string& op, const Value& l, const Value& r, int line) {
    if (op == "==") return eq(l, r, line);
    if (op == "!=") return !eq(l, r, line);
    if (op == "<") return less(l, r, line);
    if (op == ">") return less(r, l, line);
    if (op == "<=") return !less(r, l, line);
    if (op == ">=") return !less(l, r, line);
    if (op == "in") return contains(r, l, line);
    if (op == "not in") return !contains(r, l, line);
    error(line, "unknown comparison " + op);
  }

  // --- calls -------------------------------------------------------------------------------------
  Value eval_call(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.k == Expr::K::Attr) {
      const Value obj = eval(*callee.args[0]);
      if (obj.is_dict() && obj.find(callee.name)) {
        const Value fn = *obj.find(callee.name);
        return call_value(fn, eval_args(e, 1), e.line);
      }
      CallArgs ca = eval_args(e, 1);
      return call_method(obj, callee.name, ca, e.line);
    }
    const Value fn = eval(callee);
    return call_value(fn, eval_args(e, 1), e.line);
  }

  Value call_value(const Value& fn, const CallArgs& ca, int line) {
    if (fn.is_undefined()) {
      const std::string& hint = fn.undefined_hint();
      error(line,
            hint.empty() ? "call of an undefined value" : hint + " is undefined (called as a function)");
    }
    if (!fn.is_function()) error(line, fmt::format("'{}' object is not callable", type_name(fn)));
    const auto& data = *fn.function_data();
    if (data.macro) return call_macro(*data.macro, ca, line);
    if (data.native) {
      Value r;
      try {
        r = data.native(ca);
      } catch (const Error& e) {
        error(line, e.what());
      }
      check_depth(r, line);
      if (r.is_string() && r.as_string().size() > lim_.max_output_bytes)
        error(line, "function result too large");
      return r;
    }
    const Args args{ca, data.name.c_str(), line};
    if (data.name == "range") {
      args.max_positional(3);
      for (const Value& v : ca.positional)
        if (!is_integral(v)) error(line, "range() arguments must be integers");
      int64_t start = 0, stop = 0, step = 1;
      if (ca.positional.size() == 1) {
        stop = int_of(ca.positional[0]);
      } else if (ca.positional.size() >= 2) {
        start = int_of(ca.positional[0]);
        stop = int_of(ca.positional[1]);
        if (ca.positional.size() == 3) step = int_of(ca.positional[2]);
      } else {
        error(line, "range() needs 1 to 3 arguments");
      }
      if (step == 0) error(line, "range() step must not be zero");
      // Pay for the whole list before building it, so range(10**12) fails at once.
      const long double span =
          step > 0 ? static_cast<long double>(stop) - start : static_cast<long double>(start) - stop;
      const long double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<long double>(step)));
      if (count > static_cast<long double>(lim_.max_steps)) tick(line, lim_.max_steps + 1);
      std::vector<Value> items;
      items.reserve(static_cast<size_t>(count));
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        items.push_back(Value::integer(i));
        tick(line);
        if (step > 0 ? i > std::numeric_limits<int64_t>::max() - step
                     : i < std::numeric_limits<int64_t>::min() - step)
          break;
      }
      return make_list(std::move(items), line);
    }
    if (data.name == "namespace" || data.name == "dict") {
      std::vector<std::pair<std::string, Value>> items;
      if (!ca.positional.empty()) {
        if (ca.positional.size() > 1 || !ca.positional[0].is_dict())
          error(line, fmt::format("{}() takes keyword arguments or one dict", data.name));
        items = ca.positional[0].as_dict();
      }
      for (const auto& [k, v] : ca.keyword) {
        bool replaced = false;
        for (auto& [ek, ev] : items)
          if (ek == k) ev = v, replaced = true;
        if (!replaced) items.emplace_back(k, v);
      }
      tick(line, items.size());
      Value v = Value::dict(std::move(items));
      check_depth(v, line);
      if (data.name == "namespace") {
        v.dict_data()->is_namespace = true;
        namespaces_.push_back(v.dict_data());
      }
      return v;
    }
    error(line, fmt::format("'{}' is not callable", data.name));
  }

  Value call_macro(const Stmt& m, const CallArgs& ca, int line) {
    DepthGuard guard(*this, line);
    if (ca.positional.size() > m.targets.size())
      error(line, fmt::format("macro '{}' takes {} argument(s), got {}", m.text, m.targets.size(),
                              ca.positional.size()));
    Scope frame{{}, root_};
    Scope* saved = scope_;
    scope_ = &frame;
    try {
      for (size_t i = 0; i < m.targets.size(); ++i) {
        const Value* v = i < ca.positional.size() ? &ca.positional[i] : nullptr;
        for (const auto& [k, kv] : ca.keyword)
          if (k == m.targets[i]) v = &kv;
        if (v) {
          frame.vars[m.targets[i]] = *v;
        } else if (m.defaults[i]) {
          frame.vars[m.targets[i]] = eval(*m.defaults[i]);
        } else {
          frame.vars[m.targets[i]] = Value::undefined("'" + m.targets[i] + "'");
        }
      }
      for (const auto& [k, kv] : ca.keyword)
        if (std::find(m.targets.begin(), m.targets.end(), k) == m.targets.end())
          error(line, fmt::format("macro '{}' has no parameter '{}'", m.text, k));
      std::string text = capture(m.body);
      scope_ = saved;
      return make_string(std::move(text), line);
    } catch (...) {
      scope_ = saved;
      throw;
    }
  }

  std::string str_arg(const Args& args, size_t i, const char* name, bool required = true) {
    const Value* v = args.get(i, name);
    if (!v) {
      if (required) error(args.line, fmt::format("{}: missing argument '{}'", args.what, name));
      return {};
    }
    if (!v->is_string())
      error(args.line,
            fmt::format("{}: argument '{}' must be a string, not '{}'", args.what, name, type_name(*v)));
    return v->as_string();
  }

  static std::vector<std::string> split_whitespace(std::string_view s, int64_t maxsplit) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
      size_t n;
      while (i < s.size() && py_isspace(decode_at(s, i, &n))) i += n;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.emplace_back(s.substr(i));  // the remainder, trailing whitespace included
        return out;
      }
      size_t j = i;
      while (j < s.size() && !py_isspace(decode_at(s, j, &n))) j += n;
      out.emplace_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }

  Value call_method(const Value& obj, const std::string& name, const CallArgs& ca, int line) {
    const std::string what = fmt::format("{}.{}()", type_name(obj), name);
    const Args args{ca, what.c_str(), line};
    if (obj.is_undefined()) {
      const std::string& hint = obj.undefined_hint();
      error(line, fmt::format("cannot call method '{}' of an undefined value{}", name,
                              hint.empty() ? "" : " (" + hint + ")"));
    }
    if (obj.is_string()) {
      const std::string& s = obj.as_string();
      tick(line, s.size() / 32);
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        args.max_positional(1);
        const Value chars = args.get_or(0, "chars", Value::none());
        if (!chars.is_none() && !chars.is_string()) error(line, what + ": chars must be a string or none");
        const std::string* set = chars.is_string() ? &chars.as_string() : nullptr;
        return make_string(py_strip(s, set, name != "rstrip", name != "lstrip"), line);
      }
      if (name == "startswith" || name == "endswith") {
        const Value* p = args.get(0, "prefix");
        if (!p) error(line, what + ": missing argument");
        std::vector<std::string> options;
        if (p->is_string()) {
          options.push_back(p->as_string());
        } else if (p->is_list()) {
          for (const Value& v : p->as_list()) {
            if (!v.is_string()) error(line, what + ": tuple items must be strings");
            options.push_back(v.as_string());
          }
        } else {
          error(line, what + ": argument must be a string or a tuple of strings");
        }
        for (const std::string& o : options) {
          const bool hit = name == "startswith"
                               ? s.compare(0, o.size(), o) == 0 && s.size() >= o.size()
                               : s.size() >= o.size() && s.compare(s.size() - o.size(), o.size(), o) == 0;
          if (hit) return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "split" || name == "rsplit") {
        args.max_positional(2);
        const Value sep = args.get_or(0, "sep", Value::none());
        const Value maxv = args.get_or(1, "maxsplit", Value::integer(-1));
        if (!is_integral(maxv)) error(line, what + ": maxsplit must be an integer");
        const int64_t maxsplit = int_of(maxv);
        std::vector<Value> parts;
        if (sep.is_none()) {
          if (name == "rsplit" && maxsplit >= 0)
            error(line, "str.rsplit() with maxsplit and no separator is not supported");
          for (std::string& p : split_whitespace(s, maxsplit)) parts.push_back(Value::string(std::move(p)));
        } else {
          if (!sep.is_string()) error(line, what + ": separator must be a string");
          const std::string& d = sep.as_string();
          if (d.empty()) error(line, what + ": empty separator");
          std::vector<std::string> pieces;
          size_t start = 0;
          for (size_t p; (p = find_substring(s, d, start)) != std::string::npos;) {
            pieces.push_back(s.substr(start, p - start));
            start = p + d.size();
          }
          pieces.push_back(s.substr(start));
          if (maxsplit >= 0 && static_cast<int64_t>(pieces.size()) > maxsplit + 1) {
            const auto keep = static_cast<size_t>(maxsplit);
            if (name == "split") {
              std::string rest = pieces[keep];
              for (size_t i = keep + 1; i < pieces.size(); ++i) rest += d + pieces[i];
              pieces.resize(keep);
              pieces.push_back(std::move(rest));
            } else {
              const size_t cut = pieces.size() - keep;  // the first cut pieces are joined
              std::string rest = pieces[0];
              for (size_t i = 1; i < cut; ++i) rest += d + pieces[i];
              std::vector<std::string> tail(pieces.begin() + static_cast<std::ptrdiff_t>(cut), pieces.end());
              pieces.clear();
              pieces.push_back(std::move(rest));
              pieces.insert(pieces.end(), tail.begin(), tail.end());
            }
          }
          for (std::string& p : pieces) parts.push_back(Value::string(std::move(p)));
        }
        return make_list(std::move(parts), line);
      }
      if (name == "upper") return make_string(map_case(s, true), line);
      if (name == "lower") return make_string(map_case(s, false), line);
      if (name == "title" || name == "capitalize") return apply_filter(name, obj, {}, line);
      if (name == "replace") {
        CallArgs fa;
        fa.positional = ca.positional;
        fa.keyword = ca.keyword;
        return apply_filter("replace", obj, fa, line);
      }
      if (name == "find" || name == "count" || name == "index") {
        const std::string sub = str_arg(args, 0, "sub");
        if (name == "count") {
          if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s)) + 1);
          int64_t n = 0;
          for (size_t p = find_substring(s, sub, 0); p != std::string::npos;
               p = find_substring(s, sub, p + sub.size()))
            ++n;
          return Value::integer(n);
        }
        const size_t p = find_substring(s, sub, 0);
        if (p == std::string::npos) {
          if (name == "index") error(line, "substring not found");
          return Value::integer(-1);
        }
        return Value::integer(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, p))));
      }
      if (name == "join") {
        const Value* items = args.get(0, "iterable");
        if (!items) error(line, what + ": missing argument");
        std::string out;
        bool first = true;
        for (const Value& v : iterate(*items, line)) {
          if (!v.is_string())
            error(line, fmt::format("{}: expected str items, found '{}'", what, type_name(v)));
          if (!first) out += s;
          first = false;
          out += v.as_string();
          if (out.size() > lim_.max_output_bytes) error(line, "joined string too large");
        }
        return make_string(std::move(out), line);
      }
      if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" ||
          name == "islower" || name == "isupper") {
        if (s.empty()) return Value::boolean(false);
        bool ok = true, cased = false;
        for (char c : s) {
          const bool digit = c >= '0' && c <= '9';
          if (name == "isdigit") ok &= digit;
          if (name == "isalpha") ok &= ascii_alpha(c);
          if (name == "isalnum") ok &= ascii_alpha(c) || digit;
          if (name == "isspace") ok &= is_ws(c);
          if (name == "islower") {
            ok &= !(c >= 'A' && c <= 'Z');
            cased |= c >= 'a' && c <= 'z';
          }
          if (name == "isupper") {
            ok &= !(c >= 'a' && c <= 'z');
            cased |= c >= 'A' && c <= 'Z';
          }
        }
        if (name == "islower" || name == "isupper") ok &= cased;
        return Value::boolean(ok);
      }
    } else if (obj.is_dict()) {
      if (name == "items") {
        std::vector<Value> pairs;
        for (const auto& [k, v] : obj.as_dict()) pairs.push_back(Value::tuple({Value::string(k), v}));
        return make_list(std::move(pairs), line);
      }
      if (name == "keys") return make_list(iterate(obj, line), line);
      if (name == "values") {
        std::vector<Value> vals;
        for (const auto& kv : obj.as_dict()) vals.push_back(kv.second);
        return make_list(std::move(vals), line);
      }
      if (name == "get") {
        const Value* k = args.get(0, "key");
        if (!k) error(line, what + ": missing key");
        if (k->is_string())
          if (const Value* v = obj.find(k->as_string())) return *v;
        return args.get_or(1, "default", Value::none());
      }
    }
    error(line, fmt::format("'{}' object has no method '{}'", type_name(obj), name));
  }

  // --- filters -----------------------------------------------------------------------------------
  // The attribute getter of selectattr/map/sort/...: "a.b" walks into nested values; "0" indexes.
  Value get_path(const Value& v, const std::string& path, int line) {
    Value cur = v;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (cur.is_undefined()) return cur;
      int64_t idx = 0;
      auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), idx);
      if (ec == std::errc() && p == part.data() + part.size() && cur.is_list()) {
        cur = get_item(cur, Value::integer(idx), line);
      } else {
        cur = get_item(cur, Value::string(part), line);
      }
      if (dot == std::string::npos) return cur;
      start = dot + 1;
    }
  }

  Value apply_filter(const std::string& name, const Value& v, const CallArgs& ca, int line) {
    const std::string what = "filter '" + name + "'";
    const Args args{ca, what.c_str(), line};
    auto need_string = [&](const Value& x) -> std::string {
      if (x.is_string()) return x.as_string();
      return to_python_string(x, lim_.max_output_bytes);
    };
    if (name == "default" || name == "d") {
      const Value fallback = args.get_or(0, "default_value", Value::string(""));
      const bool boolean = truthy(args.get_or(1, "boolean", Value::boolean(false)));
      if (v.is_undefined() || (boolean && !truthy(v))) return fallback;
      return v;
    }
    if (name == "length" || name == "count") {
      switch (v.kind()) {
        case Value::Kind::Undefined:
          return Value::integer(0);
        case Value::Kind::String:
          return Value::integer(static_cast<int64_t>(utf8_length(v.as_string())));
        case Value::Kind::List:
          return Value::integer(static_cast<int64_t>(v.as_list().size()));
        case Value::Kind::Dict:
          return Value::integer(static_cast<int64_t>(v.as_dict().size()));
        default:
          error(line, fmt::format("object of type '{}' has no len()", type_name(v)));
      }
    }
    if (name == "safe") return v;
    if (name == "string")
      return v.is_string() ? v : make_string(to_python_string(v, lim_.max_output_bytes), line);
    if (name == "trim") {
      const Value chars = args.get_or(0, "chars", Value::none());
      const std::string* set = chars.is_string() ? &chars.as_string() : nullptr;
      return make_string(py_strip(need_string(v), set, true, true), line);
    }
    if (name == "upper") return make_string(map_case(need_string(v), true), line);
    if (name == "lower") return make_string(map_case(need_string(v), false), line);
    if (name == "capitalize") {
      const std::string s = need_string(v);
      if (s.empty()) return v;
      size_t n;
      decode_at(s, 0, &n);
      return make_string(
          map_case(std::string_view(s).substr(0, n), true) + map_case(std::string_view(s).substr(n), false),
          line);
    }
    if (name == "title") {
      std::string s = need_string(v);
      bool word_start = true;
      for (char& c : s) {
        if (ascii_alpha(c)) {
          c = word_start ? static_cast<char>(c >= 'a' ? c - 32 : c)
                         : static_cast<char>(c <= 'Z' ? c + 32 : c);
          word_start = false;
        } else {
          word_start = !(c >= '0' && c <= '9') && c != '\'';
        }
      }
      return make_string(std::move(s), line);
    }
    if (name == "replace") {
      const std::string s = need_string(v);
      const std::string from = str_arg(args, 0, "old");
      const std::string to = str_arg(args, 1, "new");
      const Value count_v = args.get_or(2, "count", Value::integer(-1));
      if (!is_integral(count_v)) error(line, what + ": count must be an integer");
      int64_t count = int_of(count_v);
      std::string out;
      if (from.empty()) {  // Python inserts the replacement around every character
        const std::vector<size_t> off = codepoint_offsets(s);
        for (size_t i = 0; i + 1 <= off.size(); ++i) {
          if (count != 0) {
            out += to;
            --count;
          }
          if (i + 1 < off.size()) out.append(s, off[i], off[i + 1] - off[i]);
          if (out.size() > lim_.max_output_bytes) error(line, "replace result too large");
        }
        return make_string(std::move(out), line);
      }
      size_t start = 0;
      for (size_t p; count != 0 && (p = find_substring(s, from, start)) != std::string::npos; --count) {
        out.append(s, start, p - start);
        out += to;
        start = p + from.size();
        if (out.size() > lim_.max_output_bytes) error(line, "replace result too large");
      }
      out.append(s, start, std::string::npos);
      return make_string(std::move(out), line);
    }
    if (name == "first" || name == "last") {
      if (v.is_list()) {
        const auto& l = v.as_list();
        if (l.empty()) return Value::undefined("first/last of an empty list");
        return name == "first" ? l.front() : l.back();
      }
      std::vector<Value> items = iterate(v, line);
      if (items.empty()) return Value::undefined("first/last of an empty sequence");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return v.is_list() ? v : make_list(iterate(v, line), line);
    if (name == "reverse") {
      if (v.is_string()) {
        std::vector<Value> chars = iterate(v, line);
        std::string out;
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
        return make_string(std::move(out), line);
      }
      std::vector<Value> items = iterate(v, line);
      std::reverse(items.begin(), items.end());
      return make_list(std::move(items), line);
    }
    if (name == "items") {
      if (v.is_undefined()) return make_list({}, line);
      if (!v.is_dict()) error(line, fmt::format("filter 'items' needs a mapping, not '{}'", type_name(v)));
      return call_method(v, "items", {}, line);
    }
    if (name == "dictsort") {
      if (!v.is_dict()) error(line, "filter 'dictsort' needs a mapping");
      auto items = v.as_dict();
      const bool case_sensitive = truthy(args.get_or(0, "case_sensitive", Value::boolean(false)));
      const bool by_value = need_string(args.get_or(1, "by", Value::string("key"))) == "value";
      const bool rev = truthy(args.get_or(2, "reverse", Value::boolean(false)));
      auto key = [&](const std::pair<std::string, Value>& kv) {
        Value k = by_value ? kv.second : Value::string(kv.first);
        if (!case_sensitive && k.is_string()) k = Value::string(map_case(k.as_string(), false));
        return k;
      };
      tick(line, items.size() * 4);
      std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
        return rev ? less(key(b), key(a), line) : less(key(a), key(b), line);
      });
      std::vector<Value> pairs;
      for (auto& [k, val] : items) pairs.push_back(Value::tuple({Value::string(k), val}));
      return make_list(std::move(pairs), line);
    }
    if (name == "join") {
      const std::string sep = args.get(0, "d") ? need_string(*args.get(0, "d")) : std::string();
      const Value attr = args.get_or(1, "attribute", Value::none());
      std::string out;
      bool first = true;
      for (const Value& item : iterate(v, line)) {
        if (!first) out += sep;
        first = false;
        const Value x = attr.is_none() ? item : get_path(item, need_string(attr), line);
        out += to_python_string(x, lim_.max_output_bytes);
        if (out.size() > lim_.max_output_bytes) error(line, "joined string too large");
      }
      return make_string(std::move(out), line);
    }
    if (name == "tojson") {
      const Value ind = args.get_or(0, "indent", Value::none());
      int indent = -1;
      if (!ind.is_none() && !ind.is_undefined()) {
        if (!is_integral(ind) || int_of(ind) < 0 || int_of(ind) > 64)
          error(line, "tojson: indent must be 0..64");
        indent = static_cast<int>(int_of(ind));
      }
      // The output size is bounded by depth x value size; check as we go via make_string.
      tick(line, static_cast<uint64_t>(v.depth()) * 4);
      return make_string(to_json(v, indent, lim_.max_output_bytes), line);
    }
    if (name == "int") {
      const Value fallback = args.get_or(0, "default", Value::integer(0));
      if (is_integral(v)) return Value::integer(int_of(v));
      if (v.kind() == Value::Kind::Float) {
        const double d = v.as_float();
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
        return Value::integer(static_cast<int64_t>(d));
      }
      if (v.is_string()) {
        const std::string s = py_strip(v.as_string(), nullptr, true, true);
        int64_t i = 0;
        const char* b = s.data();
        if (!s.empty() && *b == '+') ++b;
        auto [p, ec] = std::from_chars(b, s.data() + s.size(), i);
        if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return Value::integer(i);
        char* endp = nullptr;
        const double d = std::strtod(s.c_str(), &endp);
        if (!s.empty() && endp == s.c_str() + s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18)
          return Value::integer(static_cast<int64_t>(d));
      }
      return fallback;
    }
    if (name == "float") {
      const Value fallback = args.get_or(0, "default", Value::number(0.0));
      if (is_numeric(v)) return Value::number(float_of(v));
      if (v.is_string()) {
        const std::string s = py_strip(v.as_string(), nullptr, true, true);
        char* endp = nullptr;
        const double d = std::strtod(s.c_str(), &endp);
        if (!s.empty() && endp == s.c_str() + s.size()) return Value::number(d);
      }
      return fallback;
    }
    if (name == "abs") {
      if (!is_numeric(v)) error(line, fmt::format("bad operand type for abs(): '{}'", type_name(v)));
      if (is_integral(v)) {
        if (int_of(v) == std::numeric_limits<int64_t>::min()) error(line, "integer overflow");
        return Value::integer(std::llabs(int_of(v)));
      }
      return Value::number(std::fabs(v.as_float()));
    }
    if (name == "round") {
      if (!is_numeric(v)) error(line, "filter 'round' needs a number");
      const Value prec = args.get_or(0, "precision", Value::integer(0));
      const std::string method = need_string(args.get_or(1, "method", Value::string("common")));
      if (!is_integral(prec) || int_of(prec) < 0 || int_of(prec) > 15)
        error(line, "round: precision must be 0..15");
      const double scale = std::pow(10.0, static_cast<double>(int_of(prec)));
      const double x = float_of(v) * scale;
      // "common" is Python's round(): halves go to the even neighbour (the default FE_TONEAREST mode).
      const double r = method == "floor"  ? std::floor(x)
                       : method == "ceil" ? std::ceil(x)
                                          : std::nearbyint(x);
      return Value::number(r / scale);
    }
    if (name == "escape" || name == "e") {
      std::string out;
      for (char c : need_string(v)) {
        switch (c) {
          case '&':
            out += "&amp;";
            break;
          case '<':
            out += "&lt;";
            break;
          case '>':
            out += "&gt;";
            break;
          case '"':
            out += "&#34;";
            break;
          case '\'':
            out += "&#39;";
            break;
          default:
            out += c;
        }
      }
      return make_string(std::move(out), line);
    }
    if (name == "indent") {
      const Value w = args.get_or(0, "width", Value::integer(4));
      std::string pad;
      if (w.is_string()) {
        pad = w.as_string();
      } else if (is_integral(w) && int_of(w) >= 0 && int_of(w) <= 1024) {
        pad.assign(static_cast<size_t>(int_of(w)), ' ');
      } else {
        error(line, "indent: width must be a string or an integer in 0..1024");
      }
      const bool first = truthy(args.get_or(1, "first", Value::boolean(false)));
      const bool blank = truthy(args.get_or(2, "blank", Value::boolean(false)));
      const std::string s = need_string(v) + "\n";
      std::vector<std::string> lines;
      for (size_t i = 0; i < s.size();) {
        size_t j = i;
        while (j < s.size() && s[j] != '\n' && s[j] != '\r') ++j;
        lines.push_back(s.substr(i, j - i));
        if (j < s.size() && s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n') ++j;
        i = j + 1;
      }
      std::string out;
      for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) {
          out += '\n';
          if (blank || !lines[i].empty()) out += pad;
        }
        out += lines[i];
        if (out.size() > lim_.max_output_bytes) error(line, "indent result too large");
      }
      if (first) out = pad + out;
      return make_string(std::move(out), line);
    }
    if (name == "wordcount")
      return Value::integer(static_cast<int64_t>(split_whitespace(need_string(v), -1).size()));
    if (name == "attr") return get_attr(v, str_arg(args, 0, "name"), line);
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool by_attr = name == "selectattr" || name == "rejectattr";
      const bool keep_when = name == "select" || name == "selectattr";
      size_t at = 0;
      std::string attr;
      if (by_attr) {
        if (ca.positional.empty() || !ca.positional[0].is_string())
          error(line, what + ": needs an attribute name");
        attr = ca.positional[0].as_string();
        at = 1;
      }
      std::string test;
      CallArgs test_args;
      if (ca.positional.size() > at) {
        if (!ca.positional[at].is_string()) error(line, what + ": the test name must be a string");
        test = ca.positional[at].as_string();
        if (!known_tests().count(test)) error(line, fmt::format("{}: unknown test '{}'", what, test));
        test_args.positional.assign(ca.positional.begin() + static_cast<std::ptrdiff_t>(at + 1),
                                    ca.positional.end());
      }
      std::vector<Value> kept;
      for (const Value& item : iterate(v, line)) {
        tick(line);
        const Value x = by_attr ? get_path(item, attr, line) : item;
        const bool pass = test.empty() ? truthy(x) : apply_test(test, x, test_args, line);
        if (pass == keep_when) kept.push_back(item);
      }
      return make_list(std::move(kept), line);
    }
    if (name == "map") {
      std::vector<Value> out;
      const Value* attr = nullptr;
      for (const auto& [k, val] : ca.keyword)
        if (k == "attribute") attr = &val;
      if (attr) {
        const std::string path = need_string(*attr);
        const Value* dflt = nullptr;
        for (const auto& [k, val] : ca.keyword)
          if (k == "default") dflt = &val;
        for (const Value& item : iterate(v, line)) {
          Value x = get_path(item, path, line);
          if (x.is_undefined() && dflt) x = *dflt;
          out.push_back(std::move(x));
        }
        return make_list(std::move(out), line);
      }
      if (ca.positional.empty() || !ca.positional[0].is_string())
        error(line, "map: needs a filter name or attribute=");
      const std::string filter = ca.positional[0].as_string();
      if (!known_filters().count(filter) || filter == "map")
        error(line, fmt::format("map: unknown filter '{}'", filter));
      CallArgs fa;
      fa.positional.assign(ca.positional.begin() + 1, ca.positional.end());
      for (const Value& item : iterate(v, line)) {
        tick(line);
        out.push_back(apply_filter(filter, item, fa, line));
      }
      return make_list(std::move(out), line);
    }
    if (name == "unique") {
      std::vector<Value> out;
      const std::vector<Value> items = iterate(v, line);
      tick(line, items.size() * items.size() / 8);
      for (const Value& item : items) {
        bool seen = false;
        for (const Value& o : out) seen = seen || eq(o, item, line);
        if (!seen) out.push_back(item);
      }
      return make_list(std::move(out), line);
    }
    if (name == "sort") {
      const bool rev = truthy(args.get_or(0, "reverse", Value::boolean(false)));
      const bool case_sensitive = truthy(args.get_or(1, "case_sensitive", Value::boolean(false)));
      const Value attr = args.get_or(2, "attribute", Value::none());
      std::vector<Value> items = iterate(v, line);
      tick(line, items.size() * 8);
      auto key = [&](const Value& x) {
        Value k = attr.is_none() ? x : get_path(x, need_string(attr), line);
        if (!case_sensitive && k.is_string()) k = Value::string(map_case(k.as_string(), false));
        return k;
      };
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        return rev ? less(key(b), key(a), line) : less(key(a), key(b), line);
      });
      return make_list(std::move(items), line);
    }
    if (name == "min" || name == "max") {
      const std::vector<Value> items = iterate(v, line);
      if (items.empty()) return Value::undefined("min/max of an empty sequence");
      Value best = items[0];
      for (size_t i = 1; i < items.size(); ++i) {
        const bool better = name == "min" ? less(items[i], best, line) : less(best, items[i], line);
        if (better) best = items[i];
      }
      return best;
    }
    if (name == "sum") {
      const Value attr = args.get_or(0, "attribute", Value::none());
      Value total = args.get_or(1, "start", Value::integer(0));
      for (const Value& item : iterate(v, line))
        total = binary("+", total, attr.is_none() ? item : get_path(item, need_string(attr), line), line);
      return total;
    }
    error(line, fmt::format("unknown filter '{}'", name));
  }

  // --- tests -------------------------------------------------------------------------------------
  bool apply_test(const std::string& name, const Value& v, const CallArgs& ca, int line) {
    const Args args{ca, name.c_str(), line};
    auto arg0 = [&]() -> Value {
      const Value* a = args.get(0, "other");
      if (!a) error(line, fmt::format("test '{}' needs an argument", name));
      return *a;
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.kind() == Value::Kind::Bool;
    if (name == "true") return v.kind() == Value::Kind::Bool && v.as_bool();
    if (name == "false") return v.kind() == Value::Kind::Bool && !v.as_bool();
    if (name == "integer") return v.kind() == Value::Kind::Int;
    if (name == "float") return v.kind() == Value::Kind::Float;
    if (name == "number") return is_numeric(v);
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    if (name == "sequence") return v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace());
    if (name == "callable") return v.is_function();
    if (name == "escaped") return false;
    if (name == "odd" || name == "even") {
      if (!is_integral(v)) error(line, fmt::format("test '{}' needs an integer", name));
      const bool odd = (int_of(v) % 2) != 0;
      return name == "odd" ? odd : !odd;
    }
    if (name == "divisibleby") {
      const Value d = arg0();
      if (!is_integral(v) || !is_integral(d) || int_of(d) == 0)
        error(line, "divisibleby needs non-zero integers");
      if (int_of(d) == -1) return true;
      return int_of(v) % int_of(d) == 0;
    }
    if (name == "lower" || name == "upper") {
      if (!v.is_string()) return false;
      const std::string& s = v.as_string();
      return name == "lower" ? map_case(s, false) == s : map_case(s, true) == s;
    }
    if (name == "eq" || name == "equalto" || name == "==") return eq(v, arg0(), line);
    if (name == "ne" || name == "!=") return !eq(v, arg0(), line);
    if (name == "lt" || name == "lessthan" || name == "<") return less(v, arg0(), line);
    if (name == "gt" || name == "greaterthan" || name == ">") return less(arg0(), v, line);
    if (name == "le" || name == "<=") return !less(arg0(), v, line);
    if (name == "ge" || name == ">=") return !less(v, arg0(), line);
    if (name == "in") return contains(arg0(), v, line);
    if (name == "sameas") {
      const Value o = arg0();
      if (v.kind() != o.kind()) return false;
      switch (v.kind()) {
        case Value::Kind::Undefined:
        case Value::Kind::None:
          return true;
        case Value::Kind::Bool:
          return v.as_bool() == o.as_bool();
        case Value::Kind::Int:
          return v.as_int() == o.as_int();
        case Value::Kind::List:
          return v.list_data() == o.list_data();
        case Value::Kind::Dict:
          return v.dict_data() == o.dict_data();
        case Value::Kind::Function:
          return v.function_data() == o.function_data();
        default:
          return false;
      }
    }
    error(line, fmt::format("unknown test '{}'", name));
  }

  const Limits& lim_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  std::string* out_ = nullptr;
  Scope* root_ = nullptr;
  Scope* scope_ = nullptr;
  std::unordered_map<std::string, Value> globals_;
  std::vector<std::shared_ptr<Value::DictData>> namespaces_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Template
// ---------------------------------------------------------------------------------------------------

Template::Template(std::string_view source, const Limits& limits) {
  if (source.size() > limits.max_template_bytes)
    fail("chat template: {} bytes exceeds the {}-byte limit for templates", source.size(),
         limits.max_template_bytes);
  auto node = std::make_shared<Node>();
  Parser parser(Lexer(source).run(), limits.max_depth);
  node->body = parser.parse_template();
  root_ = std::move(node);
}

Template::~Template() = default;
Template::Template(const Template&) = default;
Template& Template::operator=(const Template&) = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const std::vector<std::pair<std::string, Value>>& globals,
                             const Limits& limits) const {
  Interp interp(limits, globals);
  return interp.run(root_->body);
}

}  // namespace ariadne::jinja
