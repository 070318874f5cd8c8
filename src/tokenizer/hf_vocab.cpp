#include "tokenizer/hf_vocab.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pretokenize.h"

namespace ariadne {

namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

// Token ids at or above this are rejected: real vocabularies stay below 300k, and a corrupt id must not
// make us allocate billions of entries.
constexpr int64_t kMaxVocab = int64_t{1} << 22;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open file", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path);
  return ss.str();
}

Json parse_json(std::string_view text, const std::string& name) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    fail("{}: invalid JSON: {}", name, e.what());
  }
}

const char* json_type(const Json& j) {
  return j.type_name();
}

// obj[key] when obj is an object holding key; null otherwise.
const Json* member(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const Json& require(const Json& obj, std::string_view key, const std::string& name, std::string_view field) {
  const Json* j = member(obj, key);
  if (j == nullptr) fail("{}: field '{}' is missing", name, field);
  return *j;
}

std::string get_string(const Json& j, const std::string& name, std::string_view field) {
  if (!j.is_string()) fail("{}: field '{}': expected a string, found {}", name, field, json_type(j));
  return j.get<std::string>();
}

bool get_bool(const Json& j, const std::string& name, std::string_view field) {
  if (!j.is_boolean()) fail("{}: field '{}': expected true or false, found {}", name, field, json_type(j));
  return j.get<bool>();
}

int32_t get_id(const Json& j, const std::string& name, std::string_view field) {
  if (!j.is_number_integer())
    fail("{}: field '{}': expected a token id (integer), found {}", name, field, json_type(j));
  const int64_t v = j.is_number_unsigned()
                        ? static_cast<int64_t>(std::min<uint64_t>(j.get<uint64_t>(), kMaxVocab))
                        : j.get<int64_t>();
  if (v < 0 || v >= kMaxVocab)
    fail("{}: field '{}': token id {} is outside [0, {})", name, field, j.dump(), kMaxVocab);
  return static_cast<int32_t>(v);
}

// Sets token id to text/type, growing the vocabulary; holes are filled by finish_tokens.
void put_token(Vocab& v, std::vector<bool>& present, int32_t id, std::string text, TokenType type) {
  const auto i = static_cast<size_t>(id);
  if (i >= v.tokens.size()) {
    v.tokens.resize(i + 1);
    v.types.resize(i + 1, TokenType::Unused);
    present.resize(i + 1, false);
  }
  v.tokens[i] = std::move(text);
  v.types[i] = type;
  present[i] = true;
}

void finish_tokens(Vocab& v, const std::vector<bool>& present, const std::string& name) {
  if (v.tokens.empty()) fail("{}: the vocabulary is empty", name);
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (present[i]) continue;
    v.tokens[i] = fmt::format("[PAD{}]", i);
    v.types[i] = TokenType::Unused;
  }
  v.index();
}

// token -> id object (vocab.json, encoder.json, tokenizer.json's model.vocab).
void read_vocab_object(const Json& obj, Vocab& v, std::vector<bool>& present, const std::string& name,
                       std::string_view field) {
  if (!obj.is_object())
    fail("{}: field '{}': expected an object of token -> id, found {}", name, field, json_type(obj));
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const int32_t id = get_id(it.value(), name, fmt::format("{}.{}", field, it.key()));
    if (static_cast<size_t>(id) < present.size() && present[static_cast<size_t>(id)])
      fail("{}: field '{}': id {} is given to both '{}' and '{}'", name, field, id,
           v.tokens[static_cast<size_t>(id)], it.key());
    put_token(v, present, id, it.key(), TokenType::Normal);
  }
}

// An added token: the text of its id becomes content (special -> Control, else UserDefined).
void add_token(Vocab& v, std::vector<bool>& present, int32_t id, std::string content, bool special) {
  put_token(v, present, id, std::move(content), special ? TokenType::Control : TokenType::UserDefined);
}

// "bos_token": "<s>" or {"content": "<s>", ...} or null.
std::string special_text(const Json& j, const std::string& name, std::string_view field) {
  if (j.is_null()) return {};
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object())
    return get_string(require(j, "content", name, fmt::format("{}.content", field)), name,
                      fmt::format("{}.content", field));
  fail("{}: field '{}': expected a string or {{\"content\": ...}}, found {}", name, field, json_type(j));
}

std::string chat_template_of(const Json& j, const std::string& name) {
  if (j.is_null()) return {};
  if (j.is_string()) return j.get<std::string>();
  if (!j.is_array())
    fail("{}: field 'chat_template': expected a string or a list of {{name, template}}", name);
  std::string first;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string f = fmt::format("chat_template[{}]", i);
    const std::string n = get_string(require(j[i], "name", name, f + ".name"), name, f + ".name");
    const std::string t = get_string(require(j[i], "template", name, f + ".template"), name, f + ".template");
    if (n == "default") return t;
    if (i == 0) first = t;
  }
  return first;
}

// tokenizer_config.json: added tokens, special tokens, flags, chat template.
void apply_tokenizer_config(const std::string& path, Vocab& v, std::vector<bool>& present) {
  const Json cfg = parse_json(read_text_file(path), path);
  if (!cfg.is_object()) fail("{}: expected a JSON object at the top level", path);
  if (const Json* added = member(cfg, "added_tokens_decoder")) {
    if (!added->is_object())
      fail("{}: field 'added_tokens_decoder': expected an object of id -> token", path);
    for (auto it = added->begin(); it != added->end(); ++it) {
      const std::string f = fmt::format("added_tokens_decoder.{}", it.key());
      int64_t id = -1;
      const std::string& k = it.key();
      if (!k.empty() && k.size() <= 9 && k.find_first_not_of("0123456789") == std::string::npos)
        id = std::stoll(k);
      if (id < 0 || id >= kMaxVocab)
        fail("{}: field '{}': the key must be a token id below {}", path, f, kMaxVocab);
      const std::string content =
          get_string(require(it.value(), "content", path, f + ".content"), path, f + ".content");
      bool special = false;
      if (const Json* s = member(it.value(), "special")) special = get_bool(*s, path, f + ".special");
      add_token(v, present, static_cast<int32_t>(id), content, special);
    }
  }
  finish_tokens(v, present, path);
  auto special_id = [&](const char* key, int32_t& out) {
    const Json* j = member(cfg, key);
    if (j == nullptr) return;
    const std::string text = special_text(*j, path, key);
    if (text.empty()) return;
    const int32_t id = v.find(text);
    if (id < 0) fail("{}: field '{}': token '{}' is not in the vocabulary", path, key, text);
    out = id;
  };
  special_id("bos_token", v.bos_id);
  special_id("eos_token", v.eos_id);
  special_id("unk_token", v.unk_id);
  special_id("pad_token", v.pad_id);
  if (const Json* j = member(cfg, "add_bos_token"); j && !j->is_null())
    v.add_bos = get_bool(*j, path, "add_bos_token");
  if (const Json* j = member(cfg, "add_eos_token"); j && !j->is_null())
    v.add_eos = get_bool(*j, path, "add_eos_token");
  if (const Json* j = member(cfg, "clean_up_tokenization_spaces"); j && !j->is_null())
    v.clean_spaces = get_bool(*j, path, "clean_up_tokenization_spaces");
  if (const Json* j = member(cfg, "chat_template")) v.chat_template = chat_template_of(*j, path);
}

// Side files of the folder holding a vocabulary file. Returns whether tokenizer_config.json was there.
bool apply_side_files(const fs::path& dir, Vocab& v, std::vector<bool>& present) {
  const fs::path cfg = dir / "tokenizer_config.json";
  const bool has_cfg = fs::is_regular_file(cfg);
  if (has_cfg) apply_tokenizer_config(cfg.string(), v, present);
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::is_regular_file(jinja)) v.chat_template = read_text_file(jinja.string());
  return has_cfg;
}

// What the file did not say, as llama.cpp would have it.
void fill_defaults(Vocab& v) {
  auto guess = [&](int32_t& out, std::initializer_list<const char*> texts) {
    if (out >= 0) return;
    for (const char* t : texts) {
      const int32_t id = v.find(t);
      if (id >= 0 && v.types[static_cast<size_t>(id)] == TokenType::Control) {
        out = id;
        return;
      }
    }
  };
  if (v.eot_id < 0)
    guess(v.eot_id, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>"});
  if (v.add_bos && v.bos_id < 0) v.add_bos = false;
  if (v.add_eos && v.eos_id < 0) v.add_eos = false;
}

}  // namespace

Vocab vocab_from_bpe_files(const std::string& vocab_path, const std::string& merges_path,
                           const std::string& pre) {
  if (!PreTokenizer::known(pre))
    fail(
        "{}: unsupported BPE pre-tokenizer '{}' (supported: gpt-2, llama-bpe, qwen2, deepseek-llm, "
        "deepseek-coder, falcon, starcoder, default)",
        vocab_path, pre);
  Vocab v;
  v.model = TokenizerModel::Bpe;
  v.pre = pre;
  v.add_space_prefix = false;
  v.ignore_merges = PreTokenizer::ignores_merges(pre);
  std::vector<bool> present;
  read_vocab_object(parse_json(read_text_file(vocab_path), vocab_path), v, present, vocab_path, "vocab");

  const std::string merges = read_text_file(merges_path);
  std::istringstream lines(merges);
  size_t line_no = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;
    if (line.empty()) continue;
    if (line.find(' ', 1) == std::string::npos)
      fail("{}: line {}: expected a merge \"left right\", found '{}'", merges_path, line_no, line);
    v.merges.push_back(std::move(line));
  }
  if (v.merges.empty()) fail("{}: no merges", merges_path);

  // Llama 3 adds BOS (llama.cpp's default for its pre-tokenizer); a tokenizer_config.json overrides it.
  v.add_bos = v.ignore_merges;
  if (!apply_side_files(fs::path(vocab_path).parent_path(), v, present))
    finish_tokens(v, present, vocab_path);
  fill_defaults(v);
  return v;
}

namespace {

bool is_byte_token(const std::string& t) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
  };
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// Merges of tokenizer.json's model.merges ("a b" strings or ["a", "b"] pairs) as "a b" strings.
std::vector<std::string> read_merges(const Json& model, const std::string& name) {
  std::vector<std::string> out;
  const Json* m = member(model, "merges");
  if (m == nullptr || m->is_null()) return out;
  if (!m->is_array()) fail("{}: field 'model.merges': expected an array, found {}", name, json_type(*m));
  out.reserve(m->size());
  for (size_t i = 0; i < m->size(); ++i) {
    const Json& e = (*m)[i];
    const std::string f = fmt::format("model.merges[{}]", i);
    if (e.is_string()) {
      std::string s = e.get<std::string>();
      if (s.find(' ', 1) == std::string::npos)
        fail("{}: field '{}': expected \"left right\", found '{}'", name, f, s);
      out.push_back(std::move(s));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      out.push_back(e[0].get<std::string>() + " " + e[1].get<std::string>());
    } else {
      fail("{}: field '{}': expected \"left right\" or [\"left\", \"right\"]", name, f);
    }
  }
  return out;
}

// The pre-tokenizer steps of a pre_tokenizer object (a Sequence flattened).
void flatten_pre(const Json& p, std::vector<const Json*>& out, const std::string& name, int depth) {
  if (p.is_null()) return;
  if (!p.is_object()) fail("{}: field 'pre_tokenizer': expected an object, found {}", name, json_type(p));
  if (depth > 8) fail("{}: field 'pre_tokenizer': Sequence nested too deeply", name);
  const std::string type =
      get_string(require(p, "type", name, "pre_tokenizer.type"), name, "pre_tokenizer.type");
  if (type == "Sequence") {
    const Json& steps = require(p, "pretokenizers", name, "pre_tokenizer.pretokenizers");
    if (!steps.is_array()) fail("{}: field 'pre_tokenizer.pretokenizers': expected an array", name);
    for (const Json& s : steps) flatten_pre(s, out, name, depth + 1);
    return;
  }
  out.push_back(&p);
}

// Does the normalizer replace " " with "▁" (SentencePiece-style), and does it prepend "▁"?
void inspect_normalizer(const Json& n, bool& replaces_space, bool& prepends, int depth) {
  if (!n.is_object() || depth > 8) return;
  const Json* type = member(n, "type");
  if (type == nullptr || !type->is_string()) return;
  const std::string t = type->get<std::string>();
  if (t == "Sequence") {
    if (const Json* list = member(n, "normalizers"); list && list->is_array())
      for (const Json& s : *list) inspect_normalizer(s, replaces_space, prepends, depth + 1);
  } else if (t == "Replace") {
    const Json* pat = member(n, "pattern");
    const Json* str = pat ? member(*pat, "String") : nullptr;
    const Json* content = member(n, "content");
    if (str && str->is_string() && *str == " " && content && content->is_string() && *content == "\u2581")
      replaces_space = true;
  } else if (t == "Prepend") {
    const Json* p = member(n, "prepend");
    if (p && p->is_string() && *p == "\u2581") prepends = true;
  }
}

}  // namespace

Vocab vocab_from_tokenizer_json_text(std::string_view text, const std::string& name) {
  const Json root = parse_json(text, name);
  if (!root.is_object()) fail("{}: expected a JSON object at the top level", name);
  const Json& model = require(root, "model", name, "model");
  if (!model.is_object()) fail("{}: field 'model': expected an object", name);
  // Older files leave out model.type; their model has merges, i.e. BPE.
  std::string type = "BPE";
  if (const Json* t = member(model, "type")) type = get_string(*t, name, "model.type");
  if (type != "BPE") fail("{}: field 'model.type': '{}' is not supported (expected BPE)", name, type);

  Vocab v;
  std::vector<bool> present;
  read_vocab_object(require(model, "vocab", name, "model.vocab"), v, present, name, "model.vocab");
  std::vector<std::string> merges = read_merges(model, name);
  bool byte_fallback = false;
  if (const Json* b = member(model, "byte_fallback"); b && !b->is_null())
    byte_fallback = get_bool(*b, name, "model.byte_fallback");
  bool ignore_merges = false;
  if (const Json* b = member(model, "ignore_merges"); b && !b->is_null())
    ignore_merges = get_bool(*b, name, "model.ignore_merges");

  if (const Json* added = member(root, "added_tokens"); added && !added->is_null()) {
    if (!added->is_array()) fail("{}: field 'added_tokens': expected an array", name);
    for (size_t i = 0; i < added->size(); ++i) {
      const Json& a = (*added)[i];
      const std::string f = fmt::format("added_tokens[{}]", i);
      const int32_t id = get_id(require(a, "id", name, f + ".id"), name, f + ".id");
      const std::string content =
          get_string(require(a, "content", name, f + ".content"), name, f + ".content");
      bool special = false;
      if (const Json* s = member(a, "special")) special = get_bool(*s, name, f + ".special");
      add_token(v, present, id, content, special);
    }
  }

  // Byte-level or SentencePiece-style?
  std::vector<const Json*> steps;
  if (const Json* p = member(root, "pre_tokenizer")) flatten_pre(*p, steps, name, 0);
  bool byte_level = false, metaspace = false, metaspace_prefix = false, regex_in_bytelevel = false;
  std::vector<std::string> split_regexes;
  for (const Json* s : steps) {
    const std::string t =
        get_string(require(*s, "type", name, "pre_tokenizer.type"), name, "pre_tokenizer.type");
    if (t == "ByteLevel") {
      byte_level = true;
      regex_in_bytelevel = true;
      if (const Json* u = member(*s, "use_regex"); u && !u->is_null())
        regex_in_bytelevel = get_bool(*u, name, "pre_tokenizer.use_regex");
    } else if (t == "Split") {
      const Json& pat = require(*s, "pattern", name, "pre_tokenizer.pattern");
      const Json* re = member(pat, "Regex");
      if (re == nullptr)
        fail(
            "{}: field 'pre_tokenizer.pattern': only {{\"Regex\": ...}} split patterns are supported, found "
            "{}",
            name, pat.dump());
      split_regexes.push_back(get_string(*re, name, "pre_tokenizer.pattern.Regex"));
      if (const Json* b = member(*s, "behavior"); b && !(b->is_string() && *b == "Isolated"))
        fail("{}: field 'pre_tokenizer.behavior': only Isolated splits are supported, found {}", name,
             b->dump());
    } else if (t == "Metaspace") {
      metaspace = true;
      const Json* scheme = member(*s, "prepend_scheme");
      const Json* aps = member(*s, "add_prefix_space");
      metaspace_prefix = (scheme && scheme->is_string() && *scheme != "never") ||
                         (!scheme && (!aps || (aps->is_boolean() && aps->get<bool>())));
    } else {
      fail("{}: field 'pre_tokenizer.type': pre-tokenizer '{}' is not supported", name, t);
    }
  }
  bool replaces_space = false, prepends = false;
  if (const Json* n = member(root, "normalizer")) inspect_normalizer(*n, replaces_space, prepends, 0);

  if (byte_level) {
    v.model = TokenizerModel::Bpe;
    v.add_space_prefix = false;
    if (split_regexes.empty() && regex_in_bytelevel) {
      v.pre = "gpt-2";
    } else if (split_regexes.size() == 1 && !regex_in_bytelevel) {
      v.pre = pre_for_hf_regex(split_regexes[0]);
      if (v.pre.empty())
        fail(
            "{}: field 'pre_tokenizer.pattern.Regex': unsupported pre-tokenizer regex '{}' (supported: the "
            "Llama-3, Qwen2 and GPT-2 patterns)",
            name, split_regexes[0]);
    } else {
      fail(
          "{}: field 'pre_tokenizer': unsupported combination of {} Split regex(es) with "
          "ByteLevel(use_regex={})",
          name, split_regexes.size(), regex_in_bytelevel);
    }
    v.ignore_merges = ignore_merges || PreTokenizer::ignores_merges(v.pre);
    v.add_bos = PreTokenizer::ignores_merges(v.pre);
    v.merges = std::move(merges);
    if (v.merges.empty()) fail("{}: field 'model.merges': a byte-level BPE tokenizer needs its merges", name);
    finish_tokens(v, present, name);
  } else if (metaspace || replaces_space || byte_fallback) {
    // SentencePiece-style BPE: llama.cpp runs these with its score-driven Spm tokenizer. The score of a
    // token is minus the rank of the first merge that produces it, so higher score = earlier merge.
    v.model = TokenizerModel::Spm;
    v.pre = "default";
    v.add_space_prefix = metaspace ? metaspace_prefix : prepends;
    v.add_bos = true;
    finish_tokens(v, present, name);
    const float kUnmerged = -static_cast<float>(merges.size() + v.tokens.size()) - 1.0f;
    v.scores.assign(v.tokens.size(), 0.0f);
    std::vector<bool> scored(v.tokens.size(), false);
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ', 1);
      const int32_t id = v.find(m.substr(0, sp) + m.substr(sp + 1));
      if (id < 0 || scored[static_cast<size_t>(id)]) continue;
      v.scores[static_cast<size_t>(id)] = -static_cast<float>(r);
      scored[static_cast<size_t>(id)] = true;
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.types[i] != TokenType::Normal) continue;
      if (is_byte_token(v.tokens[i])) {
        v.types[i] = TokenType::Byte;
      } else if (!scored[i]) {
        v.scores[i] = kUnmerged;
      }
    }
    if (const Json* unk = member(model, "unk_token"); unk && unk->is_string()) {
      const int32_t id = v.find(unk->get<std::string>());
      if (id >= 0) {
        v.unk_id = id;
        v.types[static_cast<size_t>(id)] = TokenType::Unknown;
      }
    }
    v.bos_id = v.find("<s>");
    v.eos_id = v.find("</s>");
  } else {
    fail(
        "{}: field 'pre_tokenizer': neither byte-level (ByteLevel) nor SentencePiece-style (Metaspace, a "
        "\" \" -> \"\u2581\" normalizer or byte_fallback); cannot tell how to tokenize",
        name);
  }

  // BOS the post-processor puts in front of a single sequence (TemplateProcessing).
  if (const Json* pp = member(root, "post_processor")) {
    const Json* type = member(*pp, "type");
    const Json* single = member(*pp, "single");
    if (type && type->is_string() && *type == "TemplateProcessing" && single && single->is_array()) {
      const Json* first = single->empty() ? nullptr : member((*single)[0], "SpecialToken");
      const Json* id = first ? member(*first, "id") : nullptr;
      if (id && id->is_string()) {
        const int32_t tok = v.find(id->get<std::string>());
        if (tok >= 0) {
          v.bos_id = tok;
          v.add_bos = true;
        }
      } else if (first == nullptr) {
        v.add_bos = false;
      }
    }
  }
  if (v.bos_id < 0) {
    const int32_t id = v.find("<|begin_of_text|>");
    if (id >= 0) v.bos_id = id;
  }
  if (v.eos_id < 0) {
    const int32_t id = v.find("<|end_of_text|>");
    if (id >= 0) v.eos_id = id;
  }
  v.index();
  fill_defaults(v);
  return v;
}

Vocab vocab_from_tokenizer_json(const std::string& path) {
  Vocab v = vocab_from_tokenizer_json_text(read_text_file(path), path);
  // The config's added tokens repeat tokenizer.json's; its specials and flags are what we need.
  std::vector<bool> present(v.tokens.size(), true);
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.types[i] == TokenType::Unused && v.tokens[i] == fmt::format("[PAD{}]", i)) present[i] = false;
  apply_side_files(fs::path(path).parent_path(), v, present);
  v.index();
  fill_defaults(v);
  return v;
}

Vocab vocab_from_hf_folder(const std::string& dir) {
  const fs::path d(dir);
  if (fs::is_regular_file(d / "tokenizer.json"))
    return vocab_from_tokenizer_json((d / "tokenizer.json").string());
  if (fs::is_regular_file(d / "vocab.json") && fs::is_regular_file(d / "merges.txt")) {
    std::string pre = "gpt-2";
    const fs::path cfg = d / "tokenizer_config.json";
    if (fs::is_regular_file(cfg)) {
      const Json c = parse_json(read_text_file(cfg.string()), cfg.string());
      const Json* cls = member(c, "tokenizer_class");
      if (cls && cls->is_string() && cls->get<std::string>().rfind("Qwen2", 0) == 0) pre = "qwen2";
    }
    return vocab_from_bpe_files((d / "vocab.json").string(), (d / "merges.txt").string(), pre);
  }
  fail("{}: no tokenizer found (expected tokenizer.json, or vocab.json + merges.txt)", dir);
}

}  // namespace ariadne
