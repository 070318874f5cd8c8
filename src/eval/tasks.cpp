#include "eval/tasks.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <numbers>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "eval/rng.h"
#include "eval/words.h"
#include "tokenizer/chat_template.h"

namespace ariadne::eval {

namespace {

// ---- Wording (ours; spec §1 "All wording is ours") -------------------------------------------------------

constexpr std::string_view kNeedleHeader =
    "A long text follows. A few particular facts are hidden in it, and you will be asked about them at the "
    "end. Read it carefully.";
constexpr std::string_view kVtHeader =
    "A long text follows. Some of its lines assign values to names. Keep track of the assignments: you will "
    "be asked about them at the end.";
constexpr std::string_view kCweHeader =
    "Below is a numbered list of words. Some words come up far more often than the rest. You will be asked "
    "which ones are the most common.";
constexpr std::string_view kFweHeader =
    "Below is a long stream of made-up words. Some of them come up far more often than the rest. You will be "
    "asked which ones appear most.";
constexpr std::string_view kKvHeader =
    "Below is a JSON object that maps keys to values. You will be asked for the value of one key.";
constexpr std::string_view kExampleIntro = "Here is a solved example first.";
constexpr std::string_view kTaskIntro = "Now the task itself.";
constexpr std::string_view kQuestionLabel = "Question: ";
constexpr std::string_view kAnswerLabel = "Answer: ";

std::string needle_sentence(std::string_view key, std::string_view value) {
  return fmt::format("The access code of {} is {}.", key, value);
}
std::string passkey_sentence(std::string_view value) {
  return fmt::format("Here is a passkey to keep in memory: {}. Repeat it when asked.", value);
}
std::string vt_first(std::string_view name, std::string_view number) {
  return fmt::format("Let {} hold {}.", name, number);
}
std::string vt_next(std::string_view name, std::string_view previous) {
  return fmt::format("Let {} hold whatever {} holds.", name, previous);
}

// Texts whose words must not be list words (words.h drops them from the list).
constexpr std::string_view kReservedWording[] = {
    kNeedleHeader,
    kVtHeader,
    kCweHeader,
    kFweHeader,
    kKvHeader,
    kExampleIntro,
    kTaskIntro,
    kQuestionLabel,
    kAnswerLabel,
    "The access code of is. The access codes of are and. What is the access code of? What are the access "
    "codes of? The text gives several access codes of. What are all of them?",
    "Here is a passkey to keep in memory. Repeat it when asked. What is the passkey given in the text? The "
    "passkey is",
    "Let hold. Let hold whatever holds. Which names end up holding the number? List every one. The names "
    "that hold are",
    "Which ten words occur most often in the list above? The ten most common words are",
    "Leaving out the dots, which three words occur most often in the text above? Apart from the dots, the "
    "three most frequent words are",
    "Which value belongs to the key in the JSON object above? The value of is",
};

// "a", "a and b", "a, b and c".
std::string join_and(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

// ---- Random items (spec §1) ------------------------------------------------------------------------------

std::string random_number(Rng& rng, int digits) {
  int64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(rng.between(lo, lo * 10 - 1));
}

std::string random_uuid(Rng& rng) {
  uint64_t hi = rng.next();
  uint64_t lo = rng.next();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;              // version 4
  lo = (lo & ~(0xC0ULL << 56)) | (0x80ULL << 56);  // variant 10xx
  const std::string h = fmt::format("{:016x}{:016x}", hi, lo);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
         h.substr(20, 12);
}

std::string random_word_key(Rng& rng, const std::vector<std::string>& words) {
  const uint64_t a = rng.below(words.size());
  uint64_t b = rng.below(words.size() - 1);
  if (b >= a) ++b;
  return words[a] + "-" + words[b];
}

std::string random_letters(Rng& rng, int n, char base) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>(base + rng.below(26));
  return s;
}

// ---- Bodies made of units with needles placed among them ----------------------------------------------

struct Placement {
  std::string text;
  double fraction = 0;  // goes in before unit floor(fraction * n)
  int needle = -1;      // index into the instance's needles, or -1
};

// A body of n units (sentences, list items, pairs) in order, with placements in between.
struct UnitBody {
  std::function<const std::string&(int64_t)> unit;
  std::vector<Placement> placements;  // ties keep this order
  std::string sep = " ";
  std::string prefix, suffix;
  bool partial = false;  // may end with the first words of unit n

  int64_t position(const Placement& p, int64_t n) const {
    return std::min<int64_t>(n, static_cast<int64_t>(std::floor(p.fraction * static_cast<double>(n))));
  }

  // needles[i].char_offset / depth are set for the placements that are needles.
  std::string build(int64_t n, int64_t partial_words, std::vector<Needle>& needles) const {
    std::vector<std::pair<int64_t, size_t>> order;  // (unit position, placement index)
    for (size_t i = 0; i < placements.size(); ++i) order.emplace_back(position(placements[i], n), i);
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out = prefix;
    bool first = true;
    auto add = [&](std::string_view text) {
      if (!first) out += sep;
      first = false;
      out += text;
    };
    size_t next = 0;
    auto place_until = [&](int64_t i) {
      for (; next < order.size() && order[next].first <= i; ++next) {
        const Placement& p = placements[order[next].second];
        if (!first) out += sep;
        first = false;
        if (p.needle >= 0) {
          Needle& nd = needles[static_cast<size_t>(p.needle)];
          nd.char_offset = static_cast<int64_t>(out.size());
          nd.depth = n > 0 ? 100.0 * static_cast<double>(order[next].first) / static_cast<double>(n) : 0.0;
        }
        out += p.text;
      }
    };
    for (int64_t i = 0; i < n; ++i) {
      place_until(i);
      add(unit(i));
    }
    place_until(n);
    if (partial_words > 0) add(first_words(unit(n), partial_words));
    out += suffix;
    return out;
  }

  static int64_t word_count(std::string_view s) {
    return static_cast<int64_t>(std::count(s.begin(), s.end(), ' ')) + 1;
  }
  static std::string first_words(std::string_view s, int64_t k) {
    size_t pos = 0;
    for (int64_t i = 0; i < k; ++i) {
      pos = s.find(' ', pos);
      if (pos == std::string_view::npos) return std::string(s);
      if (i + 1 < k) ++pos;
    }
    return std::string(s.substr(0, pos));
  }
};

// Units drawn lazily from a stream (distractor needles, kv pairs): unit i is always the i-th draw.
class LazyUnits {
 public:
  explicit LazyUnits(std::function<std::string()> draw) : draw_(std::move(draw)) {}
  const std::string& operator()(int64_t i) {
    while (static_cast<int64_t>(units_.size()) <= i) units_.push_back(draw_());
    return units_[static_cast<size_t>(i)];
  }

 private:
  std::function<std::string()> draw_;
  std::deque<std::string> units_;  // references stay valid as it grows
};

// What a task builder returns: everything but the fitted body.
struct Plan {
  std::string haystack;
  std::string intro;  // P's content
  std::string ask;
  std::string lead_in;
  std::string answer;
  std::vector<std::string> references;
  std::string metric = "all_match";
  bool strict = false;
  int max_new_tokens = 0;
  std::vector<Needle> needles;
  std::shared_ptr<UnitBody> units;  // sentence / pair bodies
  // List bodies (cwe, fwe) that are rebuilt for each n instead.
  std::function<std::string(int64_t n)> list_body;
  int64_t n_min = 0;
  int64_t n_max = -1;  // -1: unbounded
  // Corpus haystacks: the sentences the body used, to reject a window that holds a reference.
  std::function<bool(int64_t n, int64_t partial)> window_has_reference;
  std::shared_ptr<int64_t> window_start;  // the corpus sentence the window starts at
  std::string n_max_hint;  // why n_max bounds the instance (shown when it cannot fill the length)
};

// Largest n in [n_min, n_max] with tokens(n) <= limit, for tokens that grow with n; -1 when n_min does
// not fit. Starts from a linear estimate and gallops, so a long prompt is tokenized a handful of times.
int64_t fit_count(const std::function<int64_t(int64_t)>& tokens, int64_t n_min, int64_t n_max,
                  int64_t limit) {
  std::map<int64_t, int64_t> memo;
  auto fits = [&](int64_t n) {
    auto it = memo.find(n);
    if (it == memo.end()) it = memo.emplace(n, tokens(n)).first;
    return it->second <= limit;
  };
  if (!fits(n_min)) return -1;
  if (n_max == n_min) return n_min;
  int64_t lo = n_min;  // fits
  int64_t hi = -1;     // does not fit, or -1 = not found yet
  const int64_t probe = std::min(n_max, n_min + 8);
  if (!fits(probe)) {
    hi = probe;
  } else {
    lo = probe;
    if (probe == n_max) return n_max;
    const double per_unit =
        std::max(0.25, static_cast<double>(memo[probe] - memo[n_min]) / static_cast<double>(probe - n_min));
    int64_t guess = probe + static_cast<int64_t>(static_cast<double>(limit - memo[probe]) / per_unit);
    guess = std::clamp<int64_t>(guess, lo + 1, n_max);
    int64_t step = std::max<int64_t>(1, guess / 128);
    if (fits(guess)) {
      lo = guess;
      while (hi < 0) {
        const int64_t next = std::min(n_max, lo + step);
        if (next == lo) return n_max;
        if (fits(next)) {
          lo = next;
          step *= 2;
        } else {
          hi = next;
        }
      }
    } else {
      hi = guess;
      while (hi - lo > 1) {
        const int64_t next = std::max(lo, hi - step);
        if (next == lo) break;
        if (fits(next)) {
          lo = next;
          break;
        }
        hi = next;
        step *= 2;
      }
    }
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (fits(mid)) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

constexpr int kCorpusDepths = 40;  // spec §1: depths drawn from 40 evenly spaced values in 0-100%

double grid_depth(int k) {
  return static_cast<double>(k) / (kCorpusDepths - 1);
}

}  // namespace

// ---- Public helpers ----------------------------------------------------------------------------------

const std::vector<std::string>& all_task_ids() {
  static const std::vector<std::string> ids = {"niah_single_noise",
                                               "niah_single_corpus",
                                               "niah_single_uuid",
                                               "niah_multikey",
                                               "niah_multikey_dense",
                                               "niah_multikey_uuid",
                                               "niah_multivalue",
                                               "niah_multiquery",
                                               "vt",
                                               "vt_2chains",
                                               "cwe",
                                               "fwe",
                                               "passkey",
                                               "kv"};
  return ids;
}

const std::vector<std::string>& core_task_ids() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> v;
    for (const std::string& id : all_task_ids())
      if (id != "vt_2chains") v.push_back(id);
    return v;
  }();
  return ids;
}

std::vector<std::string> parse_task_list(std::string_view text) {
  if (text == "core") return core_task_ids();
  if (text == "all") return all_task_ids();
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string id(text.substr(pos, end - pos));
    pos = end + 1;
    if (id.empty()) continue;
    const auto& ids = all_task_ids();
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
      std::string known;
      for (const std::string& k : ids) known += (known.empty() ? "" : ", ") + k;
      fail("unknown task '{}' (known: {}; or 'core', 'all')", id, known);
    }
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  }
  if (out.empty()) fail("no task given (expected 'core', 'all' or ids such as niah_single_noise,vt)");
  return out;
}

std::vector<int64_t> parse_lengths(std::string_view text) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string item(text.substr(pos, end - pos));
    pos = end + 1;
    int64_t scale = 1;
    if (!item.empty() && (item.back() == 'k' || item.back() == 'K')) {
      scale = 1024;
      item.pop_back();
    }
    const bool digits = !item.empty() && item.size() <= 9 &&
                        std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoll(item) == 0)
      fail("length '{}' is not a token count (expected e.g. 4k, 16K or 3000)", text.substr(0, text.size()));
    out.push_back(std::stoll(item) * scale);
  }
  return out;
}

bool task_takes_depth(std::string_view task) {
  return task == "niah_single_noise" || task == "niah_single_corpus" || task == "niah_single_uuid" ||
         task == "passkey" || task == "kv";
}

std::vector<std::string> split_sentences(std::string_view text) {
  std::string norm;
  norm.reserve(text.size());
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
    if (space) {
      if (!norm.empty() && norm.back() != ' ') norm += ' ';
    } else {
      norm += c;
    }
  }
  if (!norm.empty() && norm.back() == ' ') norm.pop_back();
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i + 2 < norm.size(); ++i) {
    const char c = norm[i];
    if ((c == '.' || c == '!' || c == '?') && norm[i + 1] == ' ' && norm[i + 2] >= 'A' &&
        norm[i + 2] <= 'Z') {
      out.push_back(norm.substr(start, i + 1 - start));
      start = i + 2;
    }
  }
  if (start < norm.size()) out.push_back(norm.substr(start));
  return out;
}

std::vector<std::string_view> template_texts() {
  return std::vector<std::string_view>(std::begin(kReservedWording), std::end(kReservedWording));
}

PromptFormat chat_prompt_format(const Vocab& vocab, const std::string& family) {
  std::string tmpl;
  if (!family.empty()) {
    tmpl = builtin_chat_template(family);
  } else if (!vocab.chat_template.empty()) {
    tmpl = vocab.chat_template;
  } else {
    const std::string guessed = guess_chat_family(vocab);
    if (guessed.empty())
      fail(
          "the tokenizer has no chat template and its family is unknown; pick one with "
          "--chat-template-family");
    tmpl = builtin_chat_template(guessed);
  }
  ChatTemplateOptions options;
  options.add_generation_prompt = true;
  options.now = 0;  // a template that prints today's date must not make instances depend on the day
  if (vocab.bos_id >= 0) options.bos_token = vocab.tokens[static_cast<size_t>(vocab.bos_id)];
  if (vocab.eos_id >= 0) options.eos_token = vocab.tokens[static_cast<size_t>(vocab.eos_id)];
  // Rendered around a marker, then split: what comes before the user content and what comes after.
  const std::string marker =
      "\x1d"
      "ARIADNE_USER_CONTENT"
      "\x1d";
  const std::string text = render_chat_template(tmpl, {{"user", marker}}, options);
  const size_t at = text.find(marker);
  if (at == std::string::npos || text.find(marker, at + 1) != std::string::npos)
    fail("the chat template does not show the user's message once; it cannot frame the task prompts");
  PromptFormat f;
  f.chat = true;
  f.chat_pre = text.substr(0, at);
  f.chat_post = text.substr(at + marker.size());
  f.parse_special = true;
  // A template that writes the BOS text itself gets no second BOS from the tokenizer (spec §8).
  f.add_special =
      options.bos_token.empty() || f.chat_pre.compare(0, options.bos_token.size(), options.bos_token) != 0;
  return f;
}

// ---- The generator -------------------------------------------------------------------------------------

TaskGenerator::TaskGenerator(const Tokenizer& tokenizer, GeneratorOptions options)
    : tokenizer_(tokenizer), options_(std::move(options)) {
  if (options_.words.empty()) options_.words = word_list("", template_texts());
}

int64_t TaskGenerator::count_tokens(std::string_view prompt) const {
  return static_cast<int64_t>(
      tokenizer_.encode(prompt, options_.format.add_special, options_.format.parse_special).size());
}

namespace {

// Everything the task builders share.
struct Ctx {
  Rng& items;  // keys, values, names: drawn first, the same whatever the length fit decides
  uint64_t layout_seed;
  const std::vector<std::string>& words;
  const std::vector<std::string>& corpus;
  const std::string& corpus_name;
  int64_t target_len;
  int64_t index;
  double depth;  // requested depth in [0, 1], or < 0
};

std::shared_ptr<UnitBody> noise_units(std::string sep) {
  auto body = std::make_shared<UnitBody>();
  static const std::vector<std::string> noise = [] {
    std::vector<std::string> v;
    for (std::string_view s : noise_sentences()) v.emplace_back(s);
    return v;
  }();
  body->unit = [](int64_t i) -> const std::string& { return noise[static_cast<size_t>(i) % noise.size()]; };
  body->sep = std::move(sep);
  body->partial = true;
  return body;
}

// The needle-in-a-haystack family (spec §2 table).
Plan plan_niah(std::string_view task, Ctx& c) {
  enum class Hay { Noise, Corpus, Needles } hay = Hay::Corpus;
  bool uuid_key = false, uuid_value = false;
  int n_keys = 1, n_values = 1;
  bool ask_all_keys = false;
  if (task == "niah_single_noise") hay = Hay::Noise;
  if (task == "niah_single_uuid") uuid_value = true;
  if (task == "niah_multikey") n_keys = 4;
  if (task == "niah_multikey_dense") hay = Hay::Needles;
  if (task == "niah_multikey_uuid") hay = Hay::Needles, uuid_key = uuid_value = true;
  if (task == "niah_multivalue") n_values = 4;
  if (task == "niah_multiquery") n_keys = 4, ask_all_keys = true;
  if (hay == Hay::Corpus && c.corpus.empty()) hay = Hay::Noise;  // no --haystack: noise stands in

  // By value: the distractor stream outlives this function.
  const std::vector<std::string>* words = &c.words;
  auto draw_key = [uuid_key, words](Rng& r) {
    return uuid_key ? random_uuid(r) : random_word_key(r, *words);
  };
  auto draw_value = [uuid_value](Rng& r) { return uuid_value ? random_uuid(r) : random_number(r, 7); };
  // Keys distinct, values distinct (spec §7: distractors differ from the queried ones).
  std::vector<std::string> keys, values;
  std::set<std::string> used;
  while (static_cast<int>(keys.size()) < n_keys) {
    std::string k = draw_key(c.items);
    if (used.insert(k).second) keys.push_back(std::move(k));
  }
  std::vector<std::pair<std::string, std::string>> pairs;  // (key, value) per needle
  for (int k = 0; k < n_keys; ++k) {
    for (int v = 0; v < n_values; ++v) {
      std::string value;
      do value = draw_value(c.items);
      while (!used.insert(value).second);
      pairs.emplace_back(keys[static_cast<size_t>(k)], std::move(value));
    }
  }

  Plan p;
  p.intro = std::string(kNeedleHeader);
  p.max_new_tokens = 128;
  std::vector<std::string> asked_values;
  for (const auto& [k, v] : pairs) {
    Needle nd;
    nd.key = k;
    nd.value = v;
    nd.text = needle_sentence(k, v);
    const bool queried = ask_all_keys || k == keys[0];
    nd.role = queried ? "query" : "distractor";
    if (queried) asked_values.push_back(v);
    p.needles.push_back(std::move(nd));
  }
  p.references = asked_values;
  if (ask_all_keys) {
    p.ask = fmt::format("What are the access codes of {}?", join_and(keys));
    p.lead_in = fmt::format("The access codes of {} are", join_and(keys));
  } else if (n_values > 1) {
    p.ask = fmt::format("The text gives several access codes of {}. What are all of them?", keys[0]);
    p.lead_in = fmt::format("The access codes of {} are", keys[0]);
  } else {
    p.ask = fmt::format("What is the access code of {}?", keys[0]);
    p.lead_in = fmt::format("The access code of {} is", keys[0]);
  }
  p.answer = " " + join_and(asked_values) + ".";
  p.strict = asked_values.size() == 1;

  Rng layout(derive_seed(c.layout_seed, "placement"));
  if (hay == Hay::Noise) {
    p.haystack = "noise";
    p.units = noise_units(" ");
  } else if (hay == Hay::Needles) {
    p.haystack = "needles";
    p.units = std::make_shared<UnitBody>();
    auto rng = std::make_shared<Rng>(derive_seed(c.layout_seed, "distractors"));
    auto taken = std::make_shared<std::set<std::string>>(used);
    auto lazy = std::make_shared<LazyUnits>([rng, taken, draw_key, draw_value] {
      std::string k, v;
      do k = draw_key(*rng);
      while (taken->count(k) != 0);
      do v = draw_value(*rng);
      while (taken->count(v) != 0);
      return needle_sentence(k, v);
    });
    p.units->unit = [lazy](int64_t i) -> const std::string& { return (*lazy)(i); };
  } else {
    p.haystack = "corpus:" + c.corpus_name;
    p.units = std::make_shared<UnitBody>();
    auto start = std::make_shared<int64_t>(static_cast<int64_t>(layout.below(c.corpus.size())));
    p.window_start = start;
    const std::vector<std::string>* corpus = &c.corpus;
    p.units->unit = [corpus, start](int64_t i) -> const std::string& {
      return (*corpus)[static_cast<size_t>((*start + i) % static_cast<int64_t>(corpus->size()))];
    };
    p.units->partial = true;
    std::vector<std::string> banned = keys;
    for (const auto& kv : pairs) banned.push_back(kv.second);
    auto body = p.units;
    p.window_has_reference = [body, banned](int64_t n, int64_t partial) {
      for (int64_t i = 0; i <= n; ++i) {
        if (i == n && partial == 0) break;
        const std::string& s = body->unit(i);
        for (const std::string& b : banned)
          if (s.find(b) != std::string::npos) return true;
      }
      return false;
    };
  }
  // Depths: the requested one; in a corpus, drawn without replacement from the 40-value grid; else a
  // random unit position.
  std::vector<int> grid(kCorpusDepths);
  for (int i = 0; i < kCorpusDepths; ++i) grid[static_cast<size_t>(i)] = i;
  layout.shuffle(grid);
  for (size_t i = 0; i < p.needles.size(); ++i) {
    double f = 0;
    if (c.depth >= 0) {
      f = c.depth;
    } else if (hay == Hay::Corpus) {
      f = grid_depth(grid[i]);
    } else {
      f = layout.unit();
    }
    p.units->placements.push_back({p.needles[i].text, f, static_cast<int>(i)});
  }
  return p;
}

Plan plan_passkey(Ctx& c) {
  Plan p;
  const std::string value = random_number(c.items, 5);
  p.haystack = "noise";
  p.intro = std::string(kNeedleHeader);
  p.ask = "What is the passkey given in the text?";
  p.lead_in = "The passkey is";
  p.answer = " " + value + ".";
  p.references = {value};
  p.strict = true;
  p.max_new_tokens = 16;
  Needle nd;
  nd.role = "query";
  nd.value = value;
  nd.text = passkey_sentence(value);
  p.needles.push_back(nd);
  p.units = noise_units(" ");
  // At a grid depth: the requested one, else 0, 10, ..., 100% in turn by instance index.
  const double f = c.depth >= 0 ? c.depth : static_cast<double>(c.index % 11) / 10.0;
  p.units->placements.push_back({nd.text, f, 0});
  return p;
}

Plan plan_kv(Ctx& c) {
  Plan p;
  const std::string key = random_uuid(c.items);
  const std::string value = random_uuid(c.items);
  p.haystack = "list";
  p.intro = std::string(kKvHeader);
  p.ask = fmt::format("Which value belongs to the key \"{}\" in the JSON object above?", key);
  p.lead_in = fmt::format("The value of \"{}\" is", key);
  p.answer = fmt::format(" \"{}\".", value);
  p.references = {value};
  p.strict = true;
  p.max_new_tokens = 64;
  Needle nd;
  nd.role = "query";
  nd.key = key;
  nd.value = value;
  nd.text = fmt::format("\"{}\": \"{}\"", key, value);
  p.needles.push_back(nd);
  p.units = std::make_shared<UnitBody>();
  auto rng = std::make_shared<Rng>(derive_seed(c.layout_seed, "pairs"));
  auto lazy = std::make_shared<LazyUnits>([rng, key, value] {
    std::string k, v;
    do k = random_uuid(*rng), v = random_uuid(*rng);
    while (k == key || v == value || k == value || v == key);
    return fmt::format("\"{}\": \"{}\"", k, v);
  });
  p.units->unit = [lazy](int64_t i) -> const std::string& { return (*lazy)(i); };
  p.units->sep = ", ";
  p.units->prefix = "{";
  p.units->suffix = "}";
  const double f = c.depth >= 0 ? c.depth : static_cast<double>(c.index % 11) / 10.0;
  p.units->placements.push_back({nd.text, f, 0});
  return p;
}

// Names of 5 uppercase letters, distinct from those in taken.
std::vector<std::string> vt_names(Rng& rng, int n, std::set<std::string>& taken) {
  std::vector<std::string> names;
  while (static_cast<int>(names.size()) < n) {
    std::string s = random_letters(rng, 5, 'A');
    if (taken.insert(s).second) names.push_back(std::move(s));
  }
  return names;
}

// Chain statements: the first assigns the number, each later one the previous name.
std::vector<std::string> vt_chain(const std::vector<std::string>& names, const std::string& number) {
  std::vector<std::string> out = {vt_first(names[0], number)};
  for (size_t i = 1; i < names.size(); ++i) out.push_back(vt_next(names[i], names[i - 1]));
  return out;
}

std::string vt_ask(const std::string& number) {
  return fmt::format("Which names end up holding the number {}? List every one.", number);
}
std::string vt_lead(const std::string& number) {
  return fmt::format("The names that hold {} are", number);
}

std::string qa_text(std::string_view ask, std::string_view lead_in) {
  return std::string(kQuestionLabel) + std::string(ask) + "\n" + std::string(kAnswerLabel) +
         std::string(lead_in);
}

Plan plan_vt(Ctx& c, int chains) {
  constexpr int kHops = 5;
  std::set<std::string> taken;
  std::vector<std::vector<std::string>> names;
  std::vector<std::string> numbers;
  for (int i = 0; i < chains; ++i) {
    names.push_back(vt_names(c.items, kHops, taken));
    std::string number;
    do number = random_number(c.items, 5);
    while (std::find(numbers.begin(), numbers.end(), number) != numbers.end());
    numbers.push_back(number);
  }
  // The solved example: its own names and number among noise lines, 15 of them (about 500 tokens with a
  // Llama tokenizer) from 4K on, fewer below so that short instances keep room for their own haystack.
  const std::vector<std::string> ex_names = vt_names(c.items, kHops, taken);
  std::string ex_number;
  do ex_number = random_number(c.items, 5);
  while (std::find(numbers.begin(), numbers.end(), ex_number) != numbers.end());
  Rng layout(derive_seed(c.layout_seed, "placement"));
  auto example = noise_units("\n");
  example->partial = false;
  {
    std::vector<double> fs;
    for (int i = 0; i < kHops; ++i) fs.push_back(layout.unit());
    std::sort(fs.begin(), fs.end());
    const std::vector<std::string> st = vt_chain(ex_names, ex_number);
    for (int i = 0; i < kHops; ++i)
      example->placements.push_back({st[static_cast<size_t>(i)], fs[static_cast<size_t>(i)], -1});
  }
  std::vector<Needle> unused;
  const int64_t ex_lines = std::clamp<int64_t>(c.target_len / 256, 4, 15);
  const std::string ex_body = example->build(ex_lines, 0, unused);

  Plan p;
  p.haystack = "noise";
  p.intro = std::string(kVtHeader) + "\n\n" + std::string(kExampleIntro) + "\n\n" + ex_body + "\n\n" +
            qa_text(vt_ask(ex_number), vt_lead(ex_number)) + " " + join_and(ex_names) + ".\n\n" +
            std::string(kTaskIntro);
  p.ask = vt_ask(numbers[0]);
  p.lead_in = vt_lead(numbers[0]);
  p.answer = " " + join_and(names[0]) + ".";
  p.references = names[0];
  p.max_new_tokens = 30;
  p.units = noise_units("\n");
  for (int ch = 0; ch < chains; ++ch) {
    std::vector<double> fs;
    for (int i = 0; i < kHops; ++i) fs.push_back(layout.unit());
    std::sort(fs.begin(), fs.end());
    const std::vector<std::string> st =
        vt_chain(names[static_cast<size_t>(ch)], numbers[static_cast<size_t>(ch)]);
    for (int i = 0; i < kHops; ++i) {
      Needle nd;
      nd.role = ch == 0 ? "query" : "distractor";
      nd.key = i == 0 ? numbers[static_cast<size_t>(ch)]
                      : names[static_cast<size_t>(ch)][static_cast<size_t>(i - 1)];
      nd.value = names[static_cast<size_t>(ch)][static_cast<size_t>(i)];
      nd.text = st[static_cast<size_t>(i)];
      p.units->placements.push_back(
          {nd.text, fs[static_cast<size_t>(i)], static_cast<int>(p.needles.size())});
      p.needles.push_back(std::move(nd));
    }
  }
  return p;
}

// "1. w 2. w ..." for a shuffled multiset.
std::string numbered_list(const std::vector<const std::string*>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ' ';
    out += std::to_string(i + 1);
    out += ". ";
    out += *items[i];
  }
  return out;
}

// common_count: how often each common word appears (the spec's 30; fewer only where 30 cannot fit).
Plan plan_cwe(Ctx& c, int common_count) {
  constexpr int kCommon = 10, kRareCount = 3;
  constexpr int kExCommon = 10, kExRare = 10;
  // The example shrinks with the repeats: 10 x 4 + 10 items normally, 10 x 2 + 5 when space is short.
  const int ex_common_count = common_count >= 30 ? 4 : 2;
  const int ex_rare = common_count >= 30 ? kExRare : kExRare / 2;
  const int64_t n_words = static_cast<int64_t>(c.words.size());
  if (n_words < kCommon + kExCommon + kExRare + 1) fail("the word list is too short for cwe");
  // One permutation of the list: the common words, the example's words, then the rare words in order.
  auto perm = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(n_words));
  for (int64_t i = 0; i < n_words; ++i) (*perm)[static_cast<size_t>(i)] = i;
  c.items.shuffle(*perm);
  const std::vector<std::string>* words = &c.words;
  auto word = [perm, words](int64_t i) -> const std::string& {
    return (*words)[static_cast<size_t>((*perm)[static_cast<size_t>(i)])];
  };
  std::vector<std::string> common, ex_common;
  for (int i = 0; i < kCommon; ++i) common.push_back(word(i));
  for (int i = 0; i < kExCommon; ++i) ex_common.push_back(word(kCommon + i));
  Rng ex_rng(derive_seed(c.layout_seed, "example"));
  std::vector<const std::string*> ex_items;
  for (int i = 0; i < kExCommon; ++i)
    for (int k = 0; k < ex_common_count; ++k) ex_items.push_back(&word(kCommon + i));
  for (int i = 0; i < ex_rare; ++i) ex_items.push_back(&word(kCommon + kExCommon + i));
  ex_rng.shuffle(ex_items);

  Plan p;
  p.haystack = "list";
  const std::string ask = "Which ten words occur most often in the list above?";
  const std::string lead = "The ten most common words are";
  p.intro = std::string(kCweHeader) + "\n\n" + std::string(kExampleIntro) + "\n\n" + numbered_list(ex_items) +
            "\n\n" + qa_text(ask, lead) + " " + join_and(ex_common) + ".\n\n" + std::string(kTaskIntro);
  p.ask = ask;
  p.lead_in = lead;
  p.answer = " " + join_and(common) + ".";
  p.references = common;
  p.max_new_tokens = 120;
  constexpr int64_t first_rare = kCommon + kExCommon + kExRare;
  p.n_min = 0;
  p.n_max = n_words - first_rare;
  p.n_max_hint = fmt::format(
      "the word list has {} usable words; pass a longer one with --words (e.g. "
      "/usr/share/dict/american-english "
      "from Debian's wamerican)",
      n_words);
  const uint64_t seed = derive_seed(c.layout_seed, "list");
  p.list_body = [word, seed, common_count](int64_t n) {
    std::vector<const std::string*> items;
    for (int i = 0; i < kCommon; ++i)
      for (int k = 0; k < common_count; ++k) items.push_back(&word(i));
    for (int64_t i = 0; i < n; ++i)
      for (int k = 0; k < kRareCount; ++k) items.push_back(&word(first_rare + i));
    Rng rng(seed);
    rng.shuffle(items);
    return numbered_list(items);
  };
  return p;
}

Plan plan_fwe(Ctx& c) {
  Plan p;
  p.max_new_tokens = 50;
  const int64_t vocab = (c.target_len - p.max_new_tokens) / 50;
  if (vocab < 5)
    fail("fwe needs a length of at least {} tokens (got {})", 5 * 50 + p.max_new_tokens, c.target_len);
  // Distinct random 6-letter strings in rank order 1..V; rank 1 becomes a run of dots.
  std::vector<std::string> ranked;
  std::set<std::string> seen;
  while (static_cast<int64_t>(ranked.size()) < vocab) {
    std::string w = random_letters(c.items, 6, 'a');
    if (seen.insert(w).second) ranked.push_back(std::move(w));
  }
  ranked[0] = ".....";
  const std::vector<std::string> answer(ranked.begin() + 1, ranked.begin() + 4);
  p.haystack = "list";
  p.intro = std::string(kFweHeader);
  p.ask = "Leaving out the dots, which three words occur most often in the text above?";
  p.lead_in = "Apart from the dots, the three most frequent words are";
  p.answer = " " + join_and(answer) + ".";
  p.references = answer;
  // Rank j appears floor(N j^-2 / zeta(2)) times; N is the fitted count. From N = 100 on, ranks 2-5
  // have strictly decreasing counts, so the answer outranks every other real word.
  p.n_min = 100;
  const uint64_t seed = derive_seed(c.layout_seed, "stream");
  auto words = std::make_shared<std::vector<std::string>>(std::move(ranked));
  p.list_body = [words, seed](int64_t n) {
    const double zeta2 = std::numbers::pi * std::numbers::pi / 6.0;
    std::vector<const std::string*> items;
    for (size_t j = 1; j <= words->size(); ++j) {
      const auto count =
          static_cast<int64_t>(std::floor(static_cast<double>(n) / (static_cast<double>(j * j) * zeta2)));
      for (int64_t k = 0; k < count; ++k) items.push_back(&(*words)[j - 1]);
    }
    Rng rng(seed);
    rng.shuffle(items);
    std::string out;
    for (const std::string* w : items) {
      if (!out.empty()) out += ' ';
      out += *w;
    }
    return out;
  };
  return p;
}

std::string depth_variant(double percent) {
  return fmt::format("depth={:g}", percent);
}

}  // namespace

TaskSample TaskGenerator::generate(std::string_view task, int64_t target_len, int64_t index,
                                   double depth_percent) const {
  const auto& ids = all_task_ids();
  if (std::find(ids.begin(), ids.end(), task) == ids.end()) parse_task_list(task);  // throws the listing
  if (depth_percent >= 0 && !task_takes_depth(task))
    fail("task {} has no single needle to place at a depth (--depths applies to niah_single_*, passkey, kv)",
         task);
  if (depth_percent > 100) fail("depth {} is outside 0-100%", depth_percent);
  TaskSample s;
  s.task = std::string(task);
  s.variant = depth_percent >= 0 ? depth_variant(depth_percent) : "";
  s.target_len = target_len;
  s.seed = options_.seed;
  s.index = index;
  s.id = s.variant.empty() ? fmt::format("{}/{}/{}", task, target_len, index)
                           : fmt::format("{}/{}/{}/{}", task, s.variant, target_len, index);
  s.add_special = options_.format.add_special;
  s.parse_special = options_.format.parse_special;
  s.tokenizer = options_.tokenizer_name;

  const uint64_t seed = hash_seed(options_.seed, task, s.variant, target_len, index);
  const PromptFormat& f = options_.format;
  // A plan from fresh random streams, so that trying one costs nothing in determinism.
  auto make_plan = [&](int cwe_common_count) {
    Rng items(derive_seed(seed, "items"));
    Ctx c{items,
          derive_seed(seed, "layout"),
          options_.words,
          options_.corpus,
          options_.corpus_name,
          target_len,
          index,
          depth_percent >= 0 ? depth_percent / 100.0 : -1.0};
    if (task.starts_with("niah_")) return plan_niah(task, c);
    if (task == "passkey") return plan_passkey(c);
    if (task == "kv") return plan_kv(c);
    if (task == "vt") return plan_vt(c, 1);
    if (task == "vt_2chains") return plan_vt(c, 2);
    if (task == "cwe") return plan_cwe(c, cwe_common_count);
    return plan_fwe(c);
  };
  auto frame = [&](const Plan& p) {
    s.header = (f.chat ? f.chat_pre : "") + p.intro + "\n\n";
    s.question = "\n\n" + (f.chat ? p.ask + f.chat_post + p.lead_in : qa_text(p.ask, p.lead_in));
  };
  Plan p = make_plan(30);
  frame(p);
  if (task == "cwe") {
    // 30 repeats of each common word cost 300 list items; short lengths with a verbose tokenizer get fewer
    // repeats (still well above the rare words' 3), recorded as variant "common=N".
    for (int count : {20, 15, 10, 8, 6, 5, 4}) {
      if (count_tokens(s.header + p.list_body(0) + s.question) + p.max_new_tokens <= target_len * 3 / 4)
        break;
      p = make_plan(count);
      frame(p);
      s.variant = fmt::format("common={}", count);
      s.id = fmt::format("{}/{}/{}/{}", task, s.variant, target_len, index);
    }
  }
  s.lead_in = p.lead_in;
  s.answer = p.answer;
  s.references = p.references;
  s.metric = p.metric;
  s.strict = p.strict;
  s.max_new_tokens = p.max_new_tokens;
  s.haystack = p.haystack;
  s.needles = p.needles;
  const int64_t limit = target_len - p.max_new_tokens;

  // Corpus windows that already hold a reference are drawn again (spec §1), a bounded number of times.
  for (int attempt = 0;; ++attempt) {
    std::vector<Needle> needles = p.needles;
    auto body_of = [&](int64_t n, int64_t partial) {
      return p.units ? p.units->build(n, partial, needles) : p.list_body(n);
    };
    auto tokens = [&](int64_t n) { return count_tokens(s.header + body_of(n, 0) + s.question); };
    const int64_t n_max = p.n_max >= 0 ? p.n_max : std::max<int64_t>(p.n_min, limit);
    const int64_t n = fit_count(tokens, p.n_min, n_max, limit);
    if (n < 0)
      fail(
          "task {} does not fit in {} tokens with this tokenizer: its smallest prompt has {} tokens plus {} "
          "to generate",
          task, target_len, tokens(p.n_min), p.max_new_tokens);
    int64_t partial = 0;
    if (p.units && p.units->partial) {
      // The words of one more unit, as far as they fit.
      const int64_t words = UnitBody::word_count(p.units->unit(n));
      if (words > 1) {
        auto partial_tokens = [&](int64_t k) { return count_tokens(s.header + body_of(n, k) + s.question); };
        partial = std::max<int64_t>(0, fit_count(partial_tokens, 0, words - 1, limit));
      }
    }
    if (p.window_has_reference && p.window_has_reference(n, partial)) {
      if (attempt >= 16) fail("task {}: every haystack window tried already contains a reference", task);
      // A new window start (the unit source reads it through the shared pointer).
      Rng retry(derive_seed(derive_seed(seed, "layout"), fmt::format("window {}", attempt)));
      *p.window_start = static_cast<int64_t>(retry.below(options_.corpus.size()));
      continue;
    }
    s.body = body_of(n, partial);
    s.needles = std::move(needles);
    if (p.n_max >= 0 && n == p.n_max) {
      const int64_t got = count_tokens(s.prompt()) + p.max_new_tokens;
      if (got < target_len * 98 / 100)
        fail("task {} fills only {} of {} tokens: {}", task, got, target_len, p.n_max_hint);
    }
    break;
  }
  s.n_tokens = count_tokens(s.prompt());
  for (Needle& nd : s.needles) {
    nd.token_offset = count_tokens(s.header + s.body.substr(0, static_cast<size_t>(nd.char_offset)));
  }
  return s;
}

// ---- JSON ------------------------------------------------------------------------------------------------

nlohmann::json to_json(const TaskSample& s) {
  nlohmann::json needles = nlohmann::json::array();
  for (const Needle& n : s.needles)
    needles.push_back({{"role", n.role},
                       {"key", n.key},
                       {"value", n.value},
                       {"text", n.text},
                       {"depth", n.depth},
                       {"char_offset", n.char_offset},
                       {"token_offset", n.token_offset}});
  return {{"id", s.id},
          {"task", s.task},
          {"variant", s.variant},
          {"target_len", s.target_len},
          {"n_tokens", s.n_tokens},
          {"seed", s.seed},
          {"index", s.index},
          {"generator_version", s.generator_version},
          {"tokenizer", s.tokenizer},
          {"haystack", s.haystack},
          {"header", s.header},
          {"body", s.body},
          {"question", s.question},
          {"lead_in", s.lead_in},
          {"answer", s.answer},
          {"references", s.references},
          {"metric", s.metric},
          {"strict", s.strict},
          {"max_new_tokens", s.max_new_tokens},
          {"add_special", s.add_special},
          {"parse_special", s.parse_special},
          {"needles", needles}};
}

namespace {

template <typename T>
T field(const nlohmann::json& j, const char* name, const std::string& where) {
  if (!j.contains(name)) fail("{}: the task instance has no field '{}'", where, name);
  try {
    return j.at(name).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: field '{}' has the wrong type ({})", where, name, j.at(name).dump());
  }
}

template <typename T>
T field_or(const nlohmann::json& j, const char* name, T fallback, const std::string& where) {
  return j.contains(name) ? field<T>(j, name, where) : fallback;
}

}  // namespace

TaskSample sample_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object (one task instance per line)", where);
  TaskSample s;
  s.id = field<std::string>(j, "id", where);
  s.task = field<std::string>(j, "task", where);
  s.variant = field_or<std::string>(j, "variant", "", where);
  s.target_len = field<int64_t>(j, "target_len", where);
  s.n_tokens = field_or<int64_t>(j, "n_tokens", 0, where);
  s.seed = field_or<uint64_t>(j, "seed", 0, where);
  s.index = field_or<int64_t>(j, "index", 0, where);
  s.generator_version = field_or<int>(j, "generator_version", 0, where);
  s.tokenizer = field_or<std::string>(j, "tokenizer", "", where);
  s.haystack = field_or<std::string>(j, "haystack", "", where);
  s.header = field<std::string>(j, "header", where);
  s.body = field<std::string>(j, "body", where);
  s.question = field<std::string>(j, "question", where);
  s.lead_in = field_or<std::string>(j, "lead_in", "", where);
  s.answer = field_or<std::string>(j, "answer", "", where);
  s.references = field<std::vector<std::string>>(j, "references", where);
  s.metric = field_or<std::string>(j, "metric", "all_match", where);
  if (s.metric != "all_match" && s.metric != "any_match")
    fail("{}: metric '{}' is not all_match or any_match", where, s.metric);
  s.strict = field_or<bool>(j, "strict", false, where);
  s.max_new_tokens = field<int>(j, "max_new_tokens", where);
  if (s.max_new_tokens < 1) fail("{}: max_new_tokens must be at least 1, got {}", where, s.max_new_tokens);
  s.add_special = field_or<bool>(j, "add_special", true, where);
  s.parse_special = field_or<bool>(j, "parse_special", false, where);
  if (j.contains("needles")) {
    if (!j["needles"].is_array()) fail("{}: field 'needles' must be an array", where);
    for (const auto& n : j["needles"]) {
      Needle nd;
      nd.role = field_or<std::string>(n, "role", "", where);
      nd.key = field_or<std::string>(n, "key", "", where);
      nd.value = field_or<std::string>(n, "value", "", where);
      nd.text = field_or<std::string>(n, "text", "", where);
      nd.depth = field_or<double>(n, "depth", 0.0, where);
      nd.char_offset = field_or<int64_t>(n, "char_offset", 0, where);
      nd.token_offset = field_or<int64_t>(n, "token_offset", 0, where);
      s.needles.push_back(std::move(nd));
    }
  }
  return s;
}

}  // namespace ariadne::eval
