#include "tokenizer/pretokenize.h"
#include "tokenizer/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>

#include "core/error.h"

namespace ariadne {

namespace {

// Unicode White_Space as members of a character class. llama.cpp's whitespace table and the regex engines
// behind Hugging Face tokenizers use this set; PCRE2's UCP \s lacks U+0085.
constexpr std::string_view kWhiteSpaceMembers =
    R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// Rewrites \s and \S into explicit White_Space classes (see kWhiteSpaceMembers).
std::string expand_whitespace(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kWhiteSpaceMembers;
        } else {
          out += '[';
          out += kWhiteSpaceMembers;
          out += ']';
        }
      } else if (e == 'S') {
        ARIADNE_CHECK(!in_class, "pre-tokenizer pattern: \\S inside a class is not supported");
        out += "[^";
        out += kWhiteSpaceMembers;
        out += ']';
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class)
      in_class = true;
    else if (c == ']' && in_class)
      in_class = false;
    out += c;
  }
  return out;
}

// The patterns, in llama.cpp's adapted forms (llama-vocab.cpp, llm_tokenizer_bpe). Contractions are written
// with explicit case classes rather than (?i:...) because PCRE2's caseless matching would also accept
// U+017F (long s) and U+212A (Kelvin sign), which llama.cpp's splitters do not.
constexpr std::string_view kGpt2 =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr std::string_view kLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// DeepSeek's CJK class "[一-龥ࠀ-一가-퟿]". llama.cpp matches it after turning every non-ASCII
// whitespace character into U+000B, so the whitespace inside U+0800..U+4E00 is cut out of the range here.
constexpr std::string_view kDeepseekCjk =
    R"re([\x{4E00}-\x{9FA5}\x{0800}-\x{167F}\x{1681}-\x{1FFF}\x{200B}-\x{2027}\x{202A}-\x{202E}\x{2030}-\x{205E}\x{2060}-\x{2FFF}\x{3001}-\x{4E00}\x{AC00}-\x{D7FF}]+)re";
// DeepSeek LLM's letter class (the cased letters, as listed in its tokenizer.json).
constexpr std::string_view kDeepseekLetters =
    R"re(\s?[\x{41}-\x{5A}\x{61}-\x{7A}\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)re";
// ASCII and full-width punctuation, quotes, and U+3001..U+3002 (U+3000 is whitespace; see kDeepseekCjk).
constexpr std::string_view kDeepseekPunct =
    R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+)re";

// DeepSeek LLM's "\s+$" (trailing whitespace of a piece). The lookbehind lets a match start only where a
// whitespace run starts, which gives the same leftmost match but keeps a failing search linear: without it,
// PCRE2's interpreter rescans the run from every position of a long run that does not end the piece.
constexpr std::string_view kTrailingSpace = R"re((?<!\s)\s+$)re";

enum class PreKind { Gpt2, Llama3, Qwen2, DeepseekLlm, DeepseekCoder, Falcon, Starcoder, Default };

struct PreName {
  std::string_view name;
  PreKind kind;
};

// llama.cpp's pre names (llama-vocab.cpp, load) grouped by the regex list they select.
constexpr std::array kPreNames = {
    PreName{"default", PreKind::Default},
    PreName{"", PreKind::Default},
    PreName{"gpt-2", PreKind::Gpt2},
    PreName{"gpt2", PreKind::Gpt2},
    PreName{"phi-2", PreKind::Gpt2},
    PreName{"mpt", PreKind::Gpt2},
    PreName{"olmo", PreKind::Gpt2},
    PreName{"jais", PreKind::Gpt2},
    PreName{"roberta-bpe", PreKind::Gpt2},
    PreName{"exaone4", PreKind::Gpt2},
    PreName{"llama-bpe", PreKind::Llama3},
    PreName{"llama3", PreKind::Llama3},
    PreName{"llama-v3", PreKind::Llama3},
    PreName{"falcon3", PreKind::Llama3},
    PreName{"pixtral", PreKind::Llama3},
    PreName{"dbrx", PreKind::Llama3},
    PreName{"smaug-bpe", PreKind::Llama3},
    PreName{"qwen2", PreKind::Qwen2},
    PreName{"deepseek-r1-qwen", PreKind::Qwen2},
    PreName{"stablelm2", PreKind::Qwen2},
    PreName{"megrez", PreKind::Qwen2},
    PreName{"deepseek-llm", PreKind::DeepseekLlm},
    PreName{"deepseek-coder", PreKind::DeepseekCoder},
    PreName{"falcon", PreKind::Falcon},
    PreName{"starcoder", PreKind::Starcoder},
    PreName{"refact", PreKind::Starcoder},
    PreName{"command-r", PreKind::Starcoder},
    PreName{"smollm", PreKind::Starcoder},
    PreName{"codeshell", PreKind::Starcoder},
    PreName{"exaone", PreKind::Starcoder},
    PreName{"minerva-7b", PreKind::Starcoder},
};

const PreName* find_pre(std::string_view pre) {
  for (const PreName& p : kPreNames)
    if (p.name == pre) return &p;
  return nullptr;
}

std::vector<std::string_view> patterns_of(PreKind kind) {
  switch (kind) {
    case PreKind::Gpt2:
      return {kGpt2};
    case PreKind::Llama3:
      return {kLlama3};
    case PreKind::Qwen2:
      return {kQwen2};
    case PreKind::DeepseekLlm:
      return {R"re([\r\n])re", kDeepseekLetters, kDeepseekPunct,
              kTrailingSpace,  kDeepseekCjk,     R"re(\p{N}+)re"};
    case PreKind::DeepseekCoder:
      return {R"re([\r\n])re", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kDeepseekCjk, R"re(\p{N})re"};
    case PreKind::Falcon:
      return {R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2, R"re([0-9][0-9][0-9])re"};
    case PreKind::Starcoder:
      return {R"re(\p{N})re", kGpt2};
    case PreKind::Default:
      return {R"re([\p{P}\$\+<=>\^~\|]+)re", kGpt2, R"re(\p{N}+)re", R"re([0-9][0-9][0-9])re"};
  }
  return {};
}

// Length of the UTF-8 sequence a lead byte announces, as llama.cpp's unicode_len_utf8 reads it.
inline size_t utf8_len(uint8_t c) {
  return c < 0x80 ? 1 : c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

// Decodes one code point at text[i] the way llama.cpp's unicode_cpt_from_utf8 does (no overlong or
// surrogate checks); returns false where llama.cpp throws (the byte then becomes U+FFFD).
bool decode_llama(std::string_view text, size_t i, uint32_t& cpt, size_t& len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  const auto cont = [&](size_t k) { return i + k < text.size() && (b(k) & 0xc0) == 0x80; };
  const uint8_t c = b(0);
  if (c < 0x80) {
    cpt = c, len = 1;
    return true;
  }
  if ((c & 0x40) == 0) return false;
  if ((c & 0x20) == 0) {
    if (!cont(1)) return false;
    cpt = (uint32_t{c} & 0x1f) << 6 | (b(1) & 0x3f), len = 2;
    return true;
  }
  if ((c & 0x10) == 0) {
    if (!cont(1) || !cont(2)) return false;
    cpt = (uint32_t{c} & 0x0f) << 12 | (uint32_t{b(1)} & 0x3f) << 6 | (b(2) & 0x3f), len = 3;
    return true;
  }
  if ((c & 0x08) == 0) {
    if (!cont(1) || !cont(2) || !cont(3)) return false;
    cpt = (uint32_t{c} & 0x07) << 18 | (uint32_t{b(1)} & 0x3f) << 12 | (uint32_t{b(2)} & 0x3f) << 6 |
          (b(3) & 0x3f);
    len = 4;
    return true;
  }
  return false;
}

// The length of cpt's shortest UTF-8 form; 0 beyond U+10FFFF.
inline size_t encoded_len(uint32_t cpt) {
  return cpt < 0x80 ? 1 : cpt < 0x800 ? 2 : cpt < 0x10000 ? 3 : cpt <= 0x10ffff ? 4 : 0;
}

constexpr uint32_t kReplacement = 0xfffd;

inline bool is_surrogate(uint32_t cpt) {
  return cpt >= 0xd800 && cpt <= 0xdfff;
}

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Regex() { pcre2_code_free(code); }
};

bool PreTokenizer::known(std::string_view pre) {
  return find_pre(pre) != nullptr;
}

bool PreTokenizer::ignores_merges(std::string_view pre) {
  const PreName* p = find_pre(pre);
  return p != nullptr && p->kind == PreKind::Llama3;
}

PreTokenizer::PreTokenizer(const std::string& pre) : pre_(pre) {
  const PreName* p = find_pre(pre);
  if (p == nullptr)
    fail(
        "tokenizer.ggml.pre: unsupported BPE pre-tokenizer '{}' (supported: gpt-2, llama-bpe, qwen2, "
        "deepseek-llm, deepseek-coder, falcon, starcoder, default and their llama.cpp aliases)",
        pre);
  for (std::string_view pattern : patterns_of(p->kind)) {
    const std::string expanded = expand_whitespace(pattern);
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    auto re = std::make_unique<Regex>();
    // DOLLAR_ENDONLY: `$` matches only at the end of the piece, as in std::regex (not before a final \n).
    re->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded.data()), expanded.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset, nullptr);
    if (re->code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      ARIADNE_CHECK(false, fmt::format("pre-tokenizer '{}': pattern does not compile at {}: {}", pre,
                                       err_offset, reinterpret_cast<const char*>(msg)));
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    regexes_.push_back(std::move(re));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::string_view PreTokenizer::split(std::string_view text, std::string& scratch,
                                     std::vector<Piece>& pieces) const {
  pieces.clear();
  // Is the text already what llama.cpp's decode-then-re-encode would make of it? Surrogates survive that
  // round trip but PCRE2 refuses them, so they need a separate regex subject.
  bool repair = false, surrogates = false;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    uint32_t cpt = 0;
    size_t len = 0;
    if (!decode_llama(text, i, cpt, len) || encoded_len(cpt) != len) {
      repair = true;
      break;
    }
    surrogates |= is_surrogate(cpt);
    i += len;
  }
  std::string_view subject = text;
  if (repair) {
    scratch.clear();
    scratch.reserve(text.size() + 16);
    for (size_t i = 0; i < text.size();) {
      uint32_t cpt = 0;
      size_t len = 0;
      if (!decode_llama(text, i, cpt, len)) {
        // llama.cpp: one U+FFFD per byte it cannot decode, then resume at the next byte.
        cpt = kReplacement, len = 1;
      } else if (encoded_len(cpt) == 0) {
        // Beyond U+10FFFF (lead bytes F5..F7): llama.cpp throws here; we keep going with U+FFFD.
        cpt = kReplacement;
      }
      surrogates |= is_surrogate(cpt);
      append_utf8(scratch, cpt);
      i += len;
    }
    subject = scratch;
  }
  // The regexes run on a copy where surrogates (3 bytes each) are U+FFFD (also 3 bytes), so byte offsets
  // agree with the subject.
  std::string surrogate_free;
  std::string_view regex_subject = subject;
  if (surrogates) {
    surrogate_free.assign(subject);
    for (size_t i = 0; i + 2 < surrogate_free.size(); ++i) {
      if (static_cast<uint8_t>(surrogate_free[i]) == 0xed &&
          static_cast<uint8_t>(surrogate_free[i + 1]) >= 0xa0) {
        surrogate_free[i] = '\xef', surrogate_free[i + 1] = '\xbf', surrogate_free[i + 2] = '\xbd';
        i += 2;
      }
    }
    regex_subject = surrogate_free;
  }

  if (subject.empty()) return subject;
  pieces.push_back({0, subject.size()});
  std::vector<Piece> next;
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  if (md == nullptr) fail("pre-tokenizer '{}': out of memory", pre_);
  const auto* base = reinterpret_cast<PCRE2_SPTR>(regex_subject.data());
  try {
    for (const auto& re : regexes_) {
      next.clear();
      next.reserve(pieces.size() * 2);
      for (const Piece& p : pieces) {
        const PCRE2_SPTR s = base + p.begin;
        const size_t len = p.end - p.begin;
        size_t gap = 0, off = 0;
        while (off < len) {
          const int rc = re->jit ? pcre2_jit_match(re->code, s, len, off, 0, md, nullptr)
                                 : pcre2_match(re->code, s, len, off, PCRE2_NO_UTF_CHECK, md, nullptr);
          if (rc == PCRE2_ERROR_NOMATCH) break;
          if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            fail("pre-tokenizer '{}': regex match failed: {}", pre_, reinterpret_cast<const char*>(msg));
          }
          const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
          const size_t mb = ov[0], me = ov[1];
          if (me == mb) {
            // An empty match is not a piece; step over one character.
            off = mb + utf8_len(s[mb]);
            continue;
          }
          if (mb > gap) next.push_back({p.begin + gap, p.begin + mb});
          next.push_back({p.begin + mb, p.begin + me});
          gap = off = me;
        }
        if (gap < len) next.push_back({p.begin + gap, p.end});
      }
      pieces.swap(next);
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
  return subject;
}

std::string pre_for_hf_regex(std::string_view regex) {
  // Hugging Face writes the contractions caseless; llama.cpp's adapted forms are accepted too.
  constexpr std::string_view kHfLlama3 =
      R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
  constexpr std::string_view kHfQwen2 =
      R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
  // GPT-2's pattern as the ByteLevel pre-tokenizer runs it (a trailing \s+ alternative changes no split).
  constexpr std::string_view kHfGpt2 =
      R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
  if (regex == kHfLlama3 || regex == kLlama3) return "llama-bpe";
  if (regex == kHfQwen2 || regex == kQwen2) return "qwen2";
  if (regex == kHfGpt2 || regex == kGpt2) return "gpt-2";
  return {};
}

}  // namespace ariadne
