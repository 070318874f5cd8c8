#include "eval/scoring.h"

#include "core/error.h"

namespace ariadne::eval {

namespace {

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// 8-4-4-4-12 lowercase hex digits starting at s[i].
bool uuid_at(std::string_view s, size_t i) {
  static constexpr int kGroups[] = {8, 4, 4, 4, 12};
  for (int g = 0; g < 5; ++g) {
    for (int k = 0; k < kGroups[g]; ++k, ++i)
      if (i >= s.size() || !is_hex(s[i])) return false;
    if (g < 4) {
      if (i >= s.size() || s[i] != '-') return false;
      ++i;
    }
  }
  return true;
}

bool looks_like_uuid(std::string_view s) {
  return s.size() == 36 && uuid_at(s, 0);
}

}  // namespace

std::string normalize_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20) {
      out += '\n';
    } else if (c >= 'A' && c <= 'Z') {
      out += static_cast<char>(c - 'A' + 'a');
    } else {
      out += ch;
    }
  }
  const size_t begin = out.find_first_not_of(" \n");
  if (begin == std::string::npos) return "";
  const size_t end = out.find_last_not_of(" \n");
  return out.substr(begin, end + 1 - begin);
}

double all_match(std::string_view prediction, const std::vector<std::string>& references) {
  if (references.empty()) return 0.0;
  const std::string p = normalize_text(prediction);
  int found = 0;
  for (const std::string& r : references) {
    const std::string n = normalize_text(r);
    if (!n.empty() && p.find(n) != std::string::npos) ++found;
  }
  return static_cast<double>(found) / static_cast<double>(references.size());
}

double any_match(std::string_view prediction, const std::vector<std::string>& references) {
  const std::string p = normalize_text(prediction);
  for (const std::string& r : references) {
    const std::string n = normalize_text(r);
    if (!n.empty() && p.find(n) != std::string::npos) return 1.0;
  }
  return 0.0;
}

double strict_match(std::string_view prediction, const std::string& reference) {
  const std::string p = normalize_text(prediction);
  const std::string r = normalize_text(reference);
  if (looks_like_uuid(r)) {
    for (size_t i = 0; i + 36 <= p.size(); ++i)
      if ((i == 0 || !is_hex(p[i - 1])) && uuid_at(p, i)) return p.compare(i, 36, r) == 0 ? 1.0 : 0.0;
    return 0.0;
  }
  for (size_t i = 0; i < p.size(); ++i) {
    if (!is_digit(p[i])) continue;
    size_t j = i;
    while (j < p.size() && is_digit(p[j])) ++j;
    return p.compare(i, j - i, r) == 0 ? 1.0 : 0.0;
  }
  return 0.0;
}

SampleScore score_prediction(std::string_view prediction, const std::vector<std::string>& references,
                             const std::string& metric, bool strict) {
  SampleScore s;
  if (metric == "all_match") {
    s.score = all_match(prediction, references);
  } else if (metric == "any_match") {
    s.score = any_match(prediction, references);
  } else {
    fail("unknown metric '{}' (expected all_match or any_match)", metric);
  }
  if (strict && references.size() == 1) s.strict = strict_match(prediction, references[0]);
  return s;
}

}  // namespace ariadne::eval
