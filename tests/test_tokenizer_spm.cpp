// SentencePiece-style (Spm) tokenizer and its vocabulary sources: llama.cpp's reference vectors for
// llama-spm and phi-3, llama.cpp's round trips (test-tokenizer-1-spm), llama2.c's tokenizer.bin against
// run.c's golden runs, and SentencePiece's tokenizer.model (protobuf) against the same Llama-2 vocabulary
// in GGUF.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"

namespace ariadne {
namespace {

using test::ids_to_string;
using test::parse_ids;
using test::read_text;
using test::split_inputs;

constexpr const char* kLlamaSpm = "fixtures/vocab/llama.cpp/ggml-vocab-llama-spm.gguf";
constexpr const char* kPhi3 = "fixtures/vocab/llama.cpp/ggml-vocab-phi-3.gguf";
constexpr const char* kLlama2Model = "fixtures/vocab/llama2-spm/tokenizer.model";
constexpr const char* kStories = "fixtures/llama2c/stories260K";
constexpr const char* kAidreams = "fixtures/llama2c/aidreams260K";

Vocab gguf_vocab(const std::string& relative) {
  GgufFile file(test::shared_dir() + "/" + relative);
  return vocab_from_gguf(file);
}

// Runs every vector of <name>.gguf.inp / .out through encode(text, no BOS, no special parsing); returns
// the number of inputs checked. Each mismatch is reported with the input and both id lists.
size_t check_vectors(const Tokenizer& tok, const std::string& relative) {
  const std::string base = test::shared_dir() + "/" + relative;
  const std::vector<std::string> inputs = split_inputs(read_text(base + ".inp"));
  std::vector<std::string> lines;
  std::ifstream out(base + ".out");
  for (std::string line; std::getline(out, line);) lines.push_back(line);
  EXPECT_EQ(inputs.size(), lines.size()) << base << ": inputs and expected lines disagree in number";
  const size_t n = std::min(inputs.size(), lines.size());
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int32_t> expected = parse_ids(lines[i]);
    const std::vector<int32_t> got = tok.encode(inputs[i], false, false);
    EXPECT_EQ(got, expected) << relative << " vector " << i << ": input '" << inputs[i] << "'\n  expected ["
                             << ids_to_string(expected) << "]\n  got      [" << ids_to_string(got) << "]";
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Reference vectors and llama.cpp's round trips

TEST(TokenizerSpm, LlamaSpmVectors) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  EXPECT_EQ(check_vectors(*tok, kLlamaSpm), 46u);
}

TEST(TokenizerSpm, Phi3Vectors) {
  ARIADNE_REQUIRE_SHARED(kPhi3);
  const auto tok = Tokenizer::create(gguf_vocab(kPhi3));
  EXPECT_EQ(tok->vocab().model, TokenizerModel::Spm);
  EXPECT_EQ(check_vectors(*tok, kPhi3), 46u);
}

// test-tokenizer-0 only prints decodes; what it shows for these inputs is the input itself except where
// the text holds what Spm cannot give back: nothing for these vectors but the leading-space rule, which
// decode reproduces (a text starting with a space keeps it: the prefix adds a second one).
TEST(TokenizerSpm, LlamaSpmVectorsDecodeToInput) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  for (const std::string& text : split_inputs(read_text(test::shared_dir() + "/" + kLlamaSpm + ".inp"))) {
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    EXPECT_EQ(tok->decode(ids, false), text) << "ids [" << ids_to_string(ids) << "]";
  }
}

// llama.cpp's test-tokenizer-1-spm (run for llama-spm): every token's text tokenizes (specials parsed)
// and detokenizes back to itself.
TEST(TokenizerSpm, LlamaSpmEveryTokenRoundTrips) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  int failures = 0;
  for (int32_t id = 0; id < tok->vocab().size() && failures < 10; ++id) {
    const int32_t one[] = {id};
    const std::string text = tok->decode(one, true);
    const std::vector<int32_t> ids = tok->encode(text, false, true);
    const std::string back = tok->decode(ids, true);
    if (back != text) {
      ++failures;
      ADD_FAILURE() << "token " << id << " detokenizes to '" << text << "' but its tokenization ["
                    << ids_to_string(ids) << "] detokenizes to '" << back << "'";
    }
  }
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xf0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

// test-tokenizer-1-spm's code point sweep (same exclusions: surrogates, U+40000..U+E0000, and U+2581,
// which decodes to a space). Every 5th code point above U+3000 keeps the test quick (each encode scans
// the vocabulary for special tokens); all of the BMP's lower part is covered.
TEST(TokenizerSpm, LlamaSpmCodePointsRoundTrip) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  int failures = 0;
  for (uint32_t cp = 0; cp < 0x110000 && failures < 10; cp += cp < 0x3000 ? 1 : 5) {
    if ((cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x40000 && cp <= 0xe0000) || cp == 0x2581) continue;
    const std::string text = utf8(cp);
    const std::vector<int32_t> ids = tok->encode(text, false, true);
    const std::string back = tok->decode(ids, true);
    if (back != text) {
      ++failures;
      ADD_FAILURE() << "code point U+" << std::hex << cp << " tokenizes to [" << ids_to_string(ids)
                    << "] and detokenizes to '" << back << "'";
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Behaviour

TEST(TokenizerSpm, EmptyTextEncodesToNothing) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  EXPECT_TRUE(tok->encode("", false, false).empty());
  EXPECT_TRUE(tok->encode("", false, true).empty());
  EXPECT_EQ(tok->encode("", true, false), std::vector<int32_t>({1}));  // BOS only, as SentencePiece
}

TEST(TokenizerSpm, SpecialTokensAreTextUnlessParsed) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  const std::vector<int32_t> plain = tok->encode("<s>", false, false);
  EXPECT_TRUE(std::find(plain.begin(), plain.end(), 1) == plain.end()) << ids_to_string(plain);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok->decode(plain, false), "<s>");
  EXPECT_EQ(tok->encode("<s>", false, true), std::vector<int32_t>({1}));

  // After a special token the text gets the space prefix again (llama.cpp: is_prev_special).
  const std::vector<int32_t> mixed = tok->encode("<s>Hello", true, true);
  const std::vector<int32_t> hello = tok->encode("Hello", false, false);
  std::vector<int32_t> expected = {1, 1};
  expected.insert(expected.end(), hello.begin(), hello.end());
  EXPECT_EQ(mixed, expected);
  // Control tokens show only with special = true.
  EXPECT_EQ(tok->token_to_piece(1, false), "");
  EXPECT_EQ(tok->token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok->decode(mixed, false), " Hello");  // the first token (BOS) took the space-strip chance
  EXPECT_EQ(tok->decode(hello, false), "Hello");
}

TEST(TokenizerSpm, PiecesOfSpacesAndBytes) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  const Vocab& v = tok->vocab();
  EXPECT_EQ(tok->token_to_piece(v.find("\xe2\x96\x81the"), false), " the");
  EXPECT_EQ(tok->token_to_piece(v.find("<0x0A>"), false), "\n");
  EXPECT_EQ(tok->token_to_piece(v.find("<0xE2>"), false), "\xe2");
  EXPECT_EQ(tok->token_to_piece(0, false), "");  // <unk> is special
  EXPECT_EQ(tok->token_to_piece(0, true), "<unk>");
  const int32_t bad[] = {v.size()};
  EXPECT_THROW(tok->decode(bad, false), Error);
  EXPECT_THROW(tok->token_to_piece(-1, false), Error);
}

TEST(TokenizerSpm, StreamDecoderHoldsSplitCharacter) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  // U+1D11E (musical G clef, 4 bytes) is not in the Llama vocabulary: it falls back to 4 byte tokens.
  const std::string clef = "\xf0\x9d\x84\x9e";
  const std::vector<int32_t> ids = tok->encode("a" + clef + "b", false, false);
  const Vocab& v = tok->vocab();
  const std::vector<int32_t> bytes = {v.find("<0xF0>"), v.find("<0x9D>"), v.find("<0x84>"), v.find("<0x9E>")};
  auto at = std::search(ids.begin(), ids.end(), bytes.begin(), bytes.end());
  ASSERT_NE(at, ids.end()) << "expected byte fallback in [" << ids_to_string(ids) << "]";

  StreamDecoder stream(*tok);
  std::string text;
  for (auto it = ids.begin(); it != ids.end(); ++it) {
    const std::string out = stream.push(*it);
    const auto k = it - at;
    if (k >= 0 && k < 3) {
      EXPECT_EQ(out, "") << "byte " << k << " of the character must be held back";
    } else if (k == 3) {
      EXPECT_EQ(out, clef);
    }
    text += out;
  }
  text += stream.flush();
  EXPECT_EQ(text, "a" + clef + "b");
  EXPECT_EQ(tok->decode(ids, false), "a" + clef + "b");
}

TEST(TokenizerSpm, InvalidUtf8AndNulFallBackToBytes) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  for (const std::string& text : {std::string("a\x80z"), std::string("\xff\xfe"), std::string("x\0y", 3),
                                  std::string("\xe2\x82"), std::string("\xf0\x9f")}) {
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    EXPECT_EQ(tok->decode(ids, false), text) << "ids [" << ids_to_string(ids) << "]";
  }
}

// A long line of one character must finish (merges are O(n log n)); the result must still decode.
TEST(TokenizerSpm, LongSingleCharacterLines) {
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(gguf_vocab(kLlamaSpm));
  for (char c : {'a', ' ', '\n'}) {
    const std::string text(1 << 20, c);
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    // Letters and spaces merge into longer tokens; a newline has only its byte token (plus the prefix).
    if (c == '\n') {
      EXPECT_EQ(ids.size(), text.size() + 1);
    } else {
      EXPECT_LT(ids.size(), text.size() / 2);
    }
    EXPECT_EQ(tok->decode(ids, false), text) << "character " << int(c);
  }
}

// A vocabulary small enough to reason about, no file needed: merge order by score, ties to the left,
// byte fallback, unknown when a byte token is missing, add_space_prefix off.
Vocab tiny_vocab() {
  Vocab v;
  v.model = TokenizerModel::Spm;
  auto add = [&](std::string t, float score, TokenType type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  add("<0x41>", 0, TokenType::Byte);  // only 'A' has a byte token
  add("\xe2\x96\x81", -1, TokenType::Normal);
  add("a", -1, TokenType::Normal);
  add("b", -1, TokenType::Normal);
  add("ab", -2, TokenType::Normal);   // 7
  add("ba", -3, TokenType::Normal);   // 8
  add("bab", -1, TokenType::Normal);  // 9
  add("\xe2\x96\x81"
      "a",
      -5, TokenType::Normal);  // 10
  v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = false;
  v.index();
  return v;
}

TEST(TokenizerSpm, MergesByScoreLeftmostOnTies) {
  const auto tok = Tokenizer::create(tiny_vocab());
  // "aba": "ab" (-2) beats "ba" (-3).
  EXPECT_EQ(tok->encode("aba", false, false), std::vector<int32_t>({7, 5}));
  // "abab": two "ab" (-2) tie and the leftmost goes first; "ba" (-3) is then impossible.
  EXPECT_EQ(tok->encode("abab", false, false), std::vector<int32_t>({7, 7}));
  // "bab": "ab" (-2) merges before "ba" (-3), leaving "b"+"ab" whose join "bab" (-1) is a token.
  EXPECT_EQ(tok->encode("bab", false, false), std::vector<int32_t>({9}));
  // Byte fallback for 'A', unknown for 'C' (no <0x43>), spaces as U+2581 then merged with 'a'.
  EXPECT_EQ(tok->encode("A C a", false, false), std::vector<int32_t>({3, 4, 0, 10}));
  EXPECT_EQ(tok->decode(tok->encode("A a", false, false), false), "A a");
  EXPECT_EQ(tok->encode("aa", true, false), std::vector<int32_t>({1, 5, 5}));
}

// ---------------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

struct GoldenRun {
  std::vector<int32_t> input_tokens;  // [steps] token fed at each position, [0] = BOS
  std::string prompt;
  std::string stdout_text;
  std::string logits_file;
};

std::vector<GoldenRun> golden_runs(const std::string& dir) {
  const auto j = nlohmann::json::parse(read_text(test::shared_dir() + "/" + dir + "/reference_greedy.json"));
  std::vector<GoldenRun> runs;
  for (const auto& r : j.at("runs"))
    runs.push_back({r.at("input_tokens_per_pos").get<std::vector<int32_t>>(),
                    r.at("prompt").get<std::string>(), r.at("stdout_text").get<std::string>(),
                    r.at("logits_file").get<std::string>()});
  return runs;
}

// The ids run.c printed: every fed token after BOS, then the token sampled at the last position (the
// argmax of the last logits row, which the dump keeps).
std::vector<int32_t> printed_ids(const std::string& dir, const GoldenRun& run, int32_t n_vocab) {
  const std::vector<float> logits =
      test::read_f32_file(test::shared_dir() + "/" + dir + "/" + run.logits_file);
  const size_t steps = run.input_tokens.size();
  EXPECT_EQ(logits.size(), steps * static_cast<size_t>(n_vocab));
  std::vector<int32_t> ids(run.input_tokens.begin() + 1, run.input_tokens.end());
  const float* last = logits.data() + (steps - 1) * static_cast<size_t>(n_vocab);
  ids.push_back(static_cast<int32_t>(std::max_element(last, last + n_vocab) - last));
  return ids;
}

// run.c's encode(), restated: a " " token up front, each UTF-8 character looked up (else its bytes as
// ids byte + 3), then the best-scoring adjacent merge, leftmost on ties, until none is left. Pieces here
// are the raw file's (plain spaces).
std::vector<int32_t> run_c_encode(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                                  const std::string& text) {
  auto find = [&](const std::string& s) {
    auto it = std::find(pieces.begin(), pieces.end(), s);
    return it == pieces.end() ? -1 : static_cast<int32_t>(it - pieces.begin());
  };
  std::vector<int32_t> ids;
  if (!text.empty()) ids.push_back(find(" "));
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    while (i + len < text.size() && (static_cast<uint8_t>(text[i + len]) & 0xc0) == 0x80 && len < 4) ++len;
    const int32_t id = find(text.substr(i, len));
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (size_t k = 0; k < len; ++k) ids.push_back(static_cast<uint8_t>(text[i + k]) + 3);
    }
    i += len;
  }
  for (;;) {
    float best = -1e10f;
    int32_t best_id = -1;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const int32_t id = find(pieces[static_cast<size_t>(ids[i])] + pieces[static_cast<size_t>(ids[i + 1])]);
      if (id >= 0 && scores[static_cast<size_t>(id)] > best)
        best = scores[static_cast<size_t>(id)], best_id = id, best_at = i;
    }
    if (best_id < 0) break;
    ids[best_at] = best_id;
    ids.erase(ids.begin() + static_cast<ptrdiff_t>(best_at) + 1);
  }
  return ids;
}

TEST(Llama2cVocab, StoriesVocabularyShape) {
  ARIADNE_REQUIRE_SHARED(std::string(kStories) + "/tok512.bin");
  const Vocab v = vocab_from_llama2c(test::shared_dir() + "/" + kStories + "/tok512.bin", 512);
  ASSERT_EQ(v.size(), 512);
  EXPECT_EQ(v.model, TokenizerModel::Spm);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.types[0], TokenType::Unknown);
  EXPECT_EQ(v.types[1], TokenType::Control);
  EXPECT_EQ(v.types[2], TokenType::Control);
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.types[3 + 0x0a], TokenType::Byte);
  EXPECT_EQ(v.types[258], TokenType::Byte);
  EXPECT_EQ(v.types[259], TokenType::Normal);
  EXPECT_EQ(v.tokens[259], "\xe2\x96\x81t");  // " t" in the file
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_TRUE(v.add_bos);
  EXPECT_TRUE(v.add_space_prefix);
  // n_vocab <= 0 reads to the end of the file.
  EXPECT_EQ(vocab_from_llama2c(test::shared_dir() + "/" + kStories + "/tok512.bin", 0).size(), 512);
}

TEST(Llama2cVocab, StoriesPromptTokensMatchRunC) {
  ARIADNE_REQUIRE_SHARED(std::string(kStories) + "/reference_greedy.json");
  const auto tok =
      Tokenizer::create(vocab_from_llama2c(test::shared_dir() + "/" + kStories + "/tok512.bin", 512));
  bool found = false;
  for (const GoldenRun& run : golden_runs(kStories)) {
    if (run.prompt.empty()) continue;
    found = true;
    const std::vector<int32_t> ids = tok->encode(run.prompt, true, false);
    ASSERT_LE(ids.size(), run.input_tokens.size());
    EXPECT_EQ(ids, std::vector<int32_t>(run.input_tokens.begin(), run.input_tokens.begin() + ids.size()))
        << "prompt '" << run.prompt << "' encodes to [" << ids_to_string(ids) << "]";
    EXPECT_EQ(ids.size(), 8u);  // BOS + " One", " day", ",", " L", "ily", " met", " a"
    // The prompt ends where the greedy run begins: the no-prompt run's story continues "a little girl".
    const std::vector<int32_t> prompt_only(ids.begin() + 1, ids.end());
    EXPECT_EQ(tok->decode(prompt_only, false), run.prompt);
  }
  EXPECT_TRUE(found) << "no run with a prompt in " << kStories;
}

void check_golden_decode(const std::string& dir) {
  ARIADNE_REQUIRE_SHARED(dir + "/reference_greedy.json");
  const auto tok = Tokenizer::create(vocab_from_llama2c(test::shared_dir() + "/" + dir + "/tok512.bin", 512));
  for (const GoldenRun& run : golden_runs(dir)) {
    const std::vector<int32_t> ids = printed_ids(dir, run, 512);
    // run.c ends its output with a newline of its own.
    EXPECT_EQ(tok->decode(ids, false) + "\n", run.stdout_text) << "prompt '" << run.prompt << "'";
    // The stream decoder prints the same.
    StreamDecoder stream(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    EXPECT_EQ(streamed + "\n", run.stdout_text);
  }
}

TEST(Llama2cVocab, StoriesGreedyRunsDecodeToStdout) {
  check_golden_decode(kStories);
}
TEST(Llama2cVocab, AidreamsGreedyRunDecodesToStdout) {
  check_golden_decode(kAidreams);
}

// Ariadne's Spm over the converted vocabulary against run.c's own algorithm on the raw file.
TEST(Llama2cVocab, EncodesLikeRunC) {
  for (const char* dir : {kStories, kAidreams}) {
    const std::string path = test::shared_dir() + "/" + dir + "/tok512.bin";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
    const auto bytes = test::read_bytes(path);
    std::vector<std::string> pieces;
    std::vector<float> scores;
    for (size_t pos = 4; pos + 8 <= bytes.size();) {
      float score;
      int32_t len;
      std::memcpy(&score, bytes.data() + pos, 4);
      std::memcpy(&len, bytes.data() + pos + 4, 4);
      pieces.emplace_back(reinterpret_cast<const char*>(bytes.data() + pos + 8), static_cast<size_t>(len));
      scores.push_back(score);
      pos += 8 + static_cast<size_t>(len);
    }
    const auto tok = Tokenizer::create(vocab_from_llama2c(path, 512));
    std::vector<std::string> texts = {"One day, Lily met a",
                                      "Once upon a time, there was a little girl.",
                                      "Hello\nworld  two  spaces",
                                      "caf\xc3\xa9 \xe2\x82\xac 100%",
                                      "x",
                                      "Echoes of vectors unfold, a gentle hum of precision"};
    for (const GoldenRun& run : golden_runs(dir)) texts.push_back(run.stdout_text);
    for (const std::string& text : texts) {
      std::vector<int32_t> expected = run_c_encode(pieces, scores, text);
      expected.insert(expected.begin(), 1);
      EXPECT_EQ(tok->encode(text, true, false), expected) << dir << ": '" << text << "'";
    }
  }
}

void write_llama2c(const std::string& path, int32_t max_len,
                   const std::vector<std::pair<float, std::string>>& toks, size_t cut = SIZE_MAX) {
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &max_len, 4);
  for (const auto& [score, text] : toks) {
    const auto len = static_cast<int32_t>(text.size());
    const size_t at = b.size();
    b.resize(at + 8);
    std::memcpy(b.data() + at, &score, 4);
    std::memcpy(b.data() + at + 4, &len, 4);
    b.insert(b.end(), text.begin(), text.end());
  }
  if (cut < b.size()) b.resize(cut);
  test::write_bytes(path, b);
}

TEST(Llama2cVocab, BadFilesNameTheFile) {
  test::TempDir dir;
  const std::string path = dir.file("tokenizer.bin");
  const std::vector<std::pair<float, std::string>> toks = {
      {0, "<unk>"}, {0, "\n<s>\n"}, {0, "\n</s>\n"}, {0, "a"}, {-1, " a"}};
  write_llama2c(path, 7, toks);
  EXPECT_EQ(vocab_from_llama2c(path, 5).size(), 5);
  {
    // From bytes in memory (the fuzz target's entry): the same vocabulary, errors named after the buffer.
    const std::vector<uint8_t> bytes = test::read_bytes(path);
    EXPECT_EQ(vocab_from_llama2c(std::span<const uint8_t>(bytes), "in-memory", 5).tokens,
              vocab_from_llama2c(path, 5).tokens);
    try {
      vocab_from_llama2c(std::span<const uint8_t>(bytes), "in-memory", 6);
      ADD_FAILURE() << "a count mismatch was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("in-memory"), std::string::npos) << e.what();
    }
  }
  auto expect_error = [&](int32_t n_vocab, const std::string& fragment) {
    try {
      vocab_from_llama2c(path, n_vocab);
      ADD_FAILURE() << "no error, expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(6, "vocab_size");   // fewer tokens than the model says
  expect_error(4, "bytes after");  // more
  write_llama2c(path, 7, toks, 40);
  expect_error(5, "truncated");
  write_llama2c(path, 2, toks);  // "<unk>" is longer than max_token_length
  expect_error(5, "length 5");
  write_llama2c(path, 0, toks);
  expect_error(5, "max_token_length");
  write_llama2c(path, 7, {{0, "<unk>"}});
  expect_error(0, "at least");
  test::write_bytes(path, {1, 2});
  expect_error(0, "truncated");
  EXPECT_THROW(vocab_from_llama2c(dir.file("absent.bin"), 0), Error);
  // Every truncation of a good file is either a clean error or (at record boundaries) a shorter vocabulary.
  write_llama2c(path, 7, toks);
  const auto good = test::read_bytes(path);
  for (size_t cut = 0; cut < good.size(); ++cut) {
    test::write_bytes(path, std::vector<uint8_t>(good.begin(), good.begin() + static_cast<ptrdiff_t>(cut)));
    EXPECT_THROW(vocab_from_llama2c(path, 5), Error) << "cut at " << cut;
  }
}

// ---------------------------------------------------------------------------------------------------
// SentencePiece tokenizer.model

TEST(SentencePieceModel, Llama2ModelEqualsGgufVocab) {
  ARIADNE_REQUIRE_SHARED(kLlama2Model);
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const Vocab m = vocab_from_sentencepiece_model(test::shared_dir() + "/" + kLlama2Model);
  const Vocab g = gguf_vocab(kLlamaSpm);
  ASSERT_EQ(m.size(), g.size());
  EXPECT_EQ(m.size(), 32000);
  int mismatches = 0;
  for (size_t i = 0; i < g.tokens.size() && mismatches < 10; ++i) {
    if (m.tokens[i] != g.tokens[i] || m.scores[i] != g.scores[i] || m.types[i] != g.types[i]) {
      ++mismatches;
      ADD_FAILURE() << "token " << i << ": model '" << m.tokens[i] << "' " << m.scores[i] << " type "
                    << int(m.types[i]) << ", gguf '" << g.tokens[i] << "' " << g.scores[i] << " type "
                    << int(g.types[i]);
    }
  }
  EXPECT_EQ(m.unk_id, g.unk_id);
  EXPECT_EQ(m.bos_id, g.bos_id);
  EXPECT_EQ(m.eos_id, g.eos_id);
  EXPECT_EQ(m.add_bos, g.add_bos);
  EXPECT_EQ(m.add_space_prefix, g.add_space_prefix);
  EXPECT_EQ(m.model, TokenizerModel::Spm);
}

TEST(SentencePieceModel, Llama2ModelPassesLlamaSpmVectors) {
  ARIADNE_REQUIRE_SHARED(kLlama2Model);
  ARIADNE_REQUIRE_SHARED(kLlamaSpm);
  const auto tok = Tokenizer::create(vocab_from_sentencepiece_model(test::shared_dir() + "/" + kLlama2Model));
  EXPECT_EQ(check_vectors(*tok, kLlamaSpm), 46u);
}

// A protobuf writer just big enough to build test models.
struct Proto {
  std::vector<uint8_t> b;
  Proto& varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) b.push_back(static_cast<uint8_t>(v | 0x80));
    b.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  Proto& tag(uint32_t field, uint32_t wire) { return varint(uint64_t{field} << 3 | wire); }
  Proto& int_field(uint32_t field, int64_t v) { return tag(field, 0).varint(static_cast<uint64_t>(v)); }
  Proto& bytes_field(uint32_t field, const std::vector<uint8_t>& v) {
    tag(field, 2).varint(v.size());
    b.insert(b.end(), v.begin(), v.end());
    return *this;
  }
  Proto& string_field(uint32_t field, const std::string& s) {
    return bytes_field(field, std::vector<uint8_t>(s.begin(), s.end()));
  }
  Proto& float_field(uint32_t field, float f) {
    tag(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    return *this;
  }
  Proto& fixed64_field(uint32_t field, uint64_t v) {
    tag(field, 1);
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
};

std::vector<uint8_t> piece(const std::string& text, float score, int type) {
  Proto p;
  p.string_field(1, text).float_field(2, score);
  if (type != 1) p.int_field(3, type);  // NORMAL is the default and usually omitted
  return p.b;
}

std::vector<uint8_t> tiny_model(int model_type = 2) {
  Proto m;
  m.bytes_field(1, piece("<unk>", 0, 2))
      .bytes_field(1, piece("<s>", 0, 3))
      .bytes_field(1, piece("</s>", 0, 3))
      .bytes_field(1, piece("<0x41>", 0, 6))
      .bytes_field(1, piece("\xe2\x96\x81", -1, 1))
      .bytes_field(1, piece("a", -2, 1))
      .bytes_field(1, piece("\xe2\x96\x81"
                            "a",
                            -3, 1))
      .bytes_field(1, piece("<b\xe2\x96\x81r>", 0, 4))
      .bytes_field(1, piece("[unused]", 0, 5));
  Proto trainer;
  trainer
      .string_field(1, "input.txt")  // unknown to us: skipped
      .int_field(3, model_type)
      .int_field(35, 1)
      .int_field(40, 0)
      .int_field(41, 1)
      .int_field(42, 2)
      .int_field(43, -1);  // a 10-byte sign-extended varint
  m.bytes_field(2, trainer.b);
  Proto normalizer;
  normalizer.string_field(1, "identity").int_field(3, 1).fixed64_field(50, 7);
  m.bytes_field(3, normalizer.b);
  m.float_field(77, 1.0f);  // an unknown top-level field
  return m.b;
}

TEST(SentencePieceModel, ParsesHandBuiltModel) {
  const Vocab v = vocab_from_sentencepiece_model_bytes(tiny_model(), "tiny.model");
  ASSERT_EQ(v.size(), 9);
  EXPECT_EQ(v.tokens[6],
            "\xe2\x96\x81"
            "a");
  EXPECT_EQ(v.scores[6], -3.0f);
  EXPECT_EQ(v.tokens[7], "<b r>");  // user-defined: U+2581 back to a space (matched against raw text)
  const std::vector<TokenType> types = {TokenType::Unknown, TokenType::Control,     TokenType::Control,
                                        TokenType::Byte,    TokenType::Normal,      TokenType::Normal,
                                        TokenType::Normal,  TokenType::UserDefined, TokenType::Unused};
  EXPECT_EQ(v.types, types);
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_TRUE(v.add_bos);

  const auto tok = Tokenizer::create(v);
  EXPECT_EQ(tok->encode("a a<b r>A", true, false), std::vector<int32_t>({1, 6, 6, 7, 4, 3}));
  EXPECT_EQ(tok->token_to_piece(8, true), "");  // unused pieces print as nothing

  // add_dummy_prefix = false
  Proto off;
  off.b = tiny_model();
  Proto normalizer;
  normalizer.int_field(3, 0);
  off.bytes_field(3, normalizer.b);  // a later singular message field overrides the earlier one
  EXPECT_FALSE(vocab_from_sentencepiece_model_bytes(off.b, "tiny.model").add_space_prefix);
}

TEST(SentencePieceModel, RejectsBadInputNamingTheFile) {
  auto expect_error = [](const std::vector<uint8_t>& bytes, const std::string& fragment) {
    try {
      vocab_from_sentencepiece_model_bytes(bytes, "bad.model");
      ADD_FAILURE() << "no error, expected one mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(tiny_model(1), "UNIGRAM");
  expect_error({}, "no pieces");
  expect_error(Proto().int_field(1, 5).b, "pieces: wire type 0");
  expect_error(Proto().tag(1, 2).varint(100).b, "claims 100 bytes");
  expect_error(Proto().tag(9, 3).b, "wire type 3");
  expect_error(Proto().tag(0, 0).varint(0).b, "invalid field tag");
  expect_error({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "longer than 10 bytes");
  expect_error(Proto().bytes_field(1, Proto().int_field(3, 9).b).b, "pieces[0].type");
  Proto bad_id;
  bad_id.b = tiny_model();
  bad_id.bytes_field(2, Proto().int_field(3, 2).int_field(41, 9).b);
  expect_error(bad_id.b, "bos_id");
  EXPECT_THROW(vocab_from_sentencepiece_model("/nonexistent/tokenizer.model"), Error);

  // Every truncation and every single-byte corruption either parses or throws Error.
  const std::vector<uint8_t> good = tiny_model();
  for (size_t cut = 0; cut < good.size(); ++cut) {
    try {
      vocab_from_sentencepiece_model_bytes(std::span(good.data(), cut), "cut.model");
    } catch (const Error&) {
    }
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t x : {0x00, 0x7f, 0x80, 0xff}) {
      std::vector<uint8_t> bad = good;
      bad[i] = x;
      try {
        const auto tok = Tokenizer::create(vocab_from_sentencepiece_model_bytes(bad, "flip.model"));
        tok->decode(tok->encode("a a A", true, true), true);
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace
}  // namespace ariadne
