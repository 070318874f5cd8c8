// Scoring predictions against references (long-context-eval.md §1, "Scoring").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ariadne::eval {

// Strips surrounding whitespace, turns control characters (U+0000-U+001F) into newlines, lowercases
// ASCII letters: the form in which predictions and references are compared.
std::string normalize_text(std::string_view text);

// The fraction of references that occur in the prediction (recall); 0 when there are none.
double all_match(std::string_view prediction, const std::vector<std::string>& references);
// 1 when any reference occurs in the prediction.
double any_match(std::string_view prediction, const std::vector<std::string>& references);
// The first UUID (when the reference is one) or else the first run of digits in the prediction equals
// the reference: 1, else 0. Catches "12345678" for "1234567", which the substring metrics accept.
double strict_match(std::string_view prediction, const std::string& reference);

struct SampleScore {
  double score = 0;              // by the instance's metric
  std::optional<double> strict;  // for single-answer tasks
};

// metric: "all_match" or "any_match" (Error otherwise).
SampleScore score_prediction(std::string_view prediction, const std::vector<std::string>& references,
                             const std::string& metric, bool strict);

}  // namespace ariadne::eval
