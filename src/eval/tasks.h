// Synthetic long-context tasks (long-context-eval.md §1-§2): needle in a haystack (8 kinds), variable
// tracking, common and frequent words, passkey, key-value retrieval. Each instance is built for one
// tokenizer so that its prompt fills a target length exactly as the spec counts it:
//   tokens(prompt, with BOS and chat template) + max_new_tokens <= target_len,
// with the largest number of haystack units (sentences, list items, pairs) that fits, and for sentence
// haystacks the words of one more sentence as far as they fit. Everything is drawn from a seeded
// mt19937_64 (rng.h), so the same seed, tokenizer and inputs give byte-identical instances.
//
// The prompt is header + body + question, exactly concatenated (header ends with the separator before
// the body; question starts with the one after it and ends with the answer lead-in, which stops where the
// answer starts: no trailing space). `answer` is the canonical continuation (" 1234567."), so prompt +
// answer is a training example.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace ariadne::eval {

inline constexpr int kGeneratorVersion = 1;

struct Needle {
  std::string role;          // "query" (asked about) or "distractor"
  std::string key;           // what the needle names (empty for passkey)
  std::string value;         // what it ties to the key
  std::string text;          // the needle as it stands in the body
  double depth = 0;          // position in the body in % (unit index / units)
  int64_t char_offset = 0;   // byte offset of text in body
  int64_t token_offset = 0;  // tokens of the prompt before the needle (BOS and template included)
};

struct TaskSample {
  std::string id;  // task[/variant]/target_len/index
  std::string task;
  std::string variant;
  int64_t target_len = 0;
  uint64_t seed = 0;  // the global seed (--seed)
  int64_t index = 0;
  int generator_version = kGeneratorVersion;
  std::string haystack;  // "noise", "corpus:FILE", "needles", "list"
  std::string header;    // P
  std::string body;
  std::string question;  // Xt: the question and the answer lead-in
  std::string lead_in;   // the tail of question that the answer continues
  std::string answer;    // canonical answer text, continuing the lead-in
  std::vector<std::string> references;
  std::string metric;   // "all_match" or "any_match"
  bool strict = false;  // also scored "strict" (single-answer tasks)
  int max_new_tokens = 0;
  std::vector<Needle> needles;
  int64_t n_tokens = 0;        // tokens of the prompt
  bool add_special = true;     // encode the prompt with BOS as the vocabulary asks
  bool parse_special = false;  // template tokens written in the prompt are tokens (chat)
  std::string tokenizer;       // what counted the tokens (recorded, not read back)

  std::string prompt() const { return header + body + question; }
};

// How prompts are wrapped: plain text for base models, or a chat template (user turn: P, body and
// question; the assistant turn opens with the lead-in).
struct PromptFormat {
  bool chat = false;
  std::string chat_pre;   // template text before the user content
  std::string chat_post;  // template text between the user content and the assistant's reply
  bool add_special = true;
  bool parse_special = false;
};

// The chat format of a vocabulary: its own template, or the built-in one of family (non-empty), or the
// family guessed from the vocabulary. Throws Error when there is none.
PromptFormat chat_prompt_format(const Vocab& vocab, const std::string& family);

struct GeneratorOptions {
  uint64_t seed = 0;
  std::vector<std::string> words;   // word_list(); empty: the built-in one
  std::vector<std::string> corpus;  // haystack sentences (split_sentences); empty: corpus tasks use noise
  std::string corpus_name;          // recorded as haystack "corpus:NAME"
  PromptFormat format;
  std::string tokenizer_name;
};

// Every task id (spec §2) and the core set of 13 (all but vt_2chains).
const std::vector<std::string>& all_task_ids();
const std::vector<std::string>& core_task_ids();
// "core", "all" or a comma-separated list of ids; unknown ids throw Error listing the known ones.
std::vector<std::string> parse_task_list(std::string_view text);
// "1k,4K,16384" -> lengths in tokens (K = 1024). Throws Error on anything else.
std::vector<int64_t> parse_lengths(std::string_view text);
// Tasks that take a requested needle depth (--depths): the single-needle ones.
bool task_takes_depth(std::string_view task);

// Corpus haystack text -> sentences: whitespace normalised to single spaces, a break after '.', '!' or
// '?' followed by a space and a capital letter (spec §1).
std::vector<std::string> split_sentences(std::string_view text);

class TaskGenerator {
 public:
  TaskGenerator(const Tokenizer& tokenizer, GeneratorOptions options);

  // One instance. depth_percent in [0, 100] places the (single) needle at that depth (variant
  // "depth=D"); negative: the task's own rule. Throws Error when the task cannot fit target_len.
  TaskSample generate(std::string_view task, int64_t target_len, int64_t index,
                      double depth_percent = -1) const;

  // Tokens of a prompt as the instances count them (BOS as the format says).
  int64_t count_tokens(std::string_view prompt) const;
  const std::vector<std::string>& words() const { return options_.words; }

 private:
  const Tokenizer& tokenizer_;
  GeneratorOptions options_;
};

nlohmann::json to_json(const TaskSample& sample);
// Reads an instance back; where names the line for errors ("FILE:LINE").
TaskSample sample_from_json(const nlohmann::json& j, const std::string& where);

// The words the templates use (dropped from the word list so that no reference word occurs in them).
std::vector<std::string_view> template_texts();

}  // namespace ariadne::eval
