// Word lists and noise sentences for the evaluation tasks (long-context-eval.md §1, "Random items" and
// "Haystacks"). All wording is ours.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ariadne::eval {

// The noise haystack's fixed block of short, bland sentences (no digits, no names, no list words).
std::span<const std::string_view> noise_sentences();

// The words of text, lowercased (runs of ASCII letters).
std::vector<std::string> lowercase_words(std::string_view text);

// The word list: the built-in one (path empty) or a file of one word per line (e.g. Debian's wamerican,
// /usr/share/dict/american-english). Keeps alphabetic lowercase words of 3-10 letters, drops the words of
// the noise sentences and of reserved_texts (the task templates), dedupes and sorts. Throws Error when the
// file cannot be read or fewer than 100 words remain.
std::vector<std::string> word_list(const std::string& path, std::span<const std::string_view> reserved_texts);

}  // namespace ariadne::eval
