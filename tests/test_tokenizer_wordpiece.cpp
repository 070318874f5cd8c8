// WordPiece (BERT) tokenizer: llama.cpp's reference vectors for bert-bge, plus behaviour on a small
// hand-built vocabulary (normalisation, greedy matching, [UNK], decoding clean-up, bad input).
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"

namespace ariadne {
namespace {

using test::ids_to_string;
using test::parse_ids;
using test::read_text;
using test::split_inputs;

constexpr const char* kBgeVocab = "fixtures/vocab/llama.cpp/ggml-vocab-bert-bge.gguf";

std::unique_ptr<Tokenizer> load_bge() {
  GgufFile file(test::shared_dir() + "/" + kBgeVocab);
  Vocab vocab = vocab_from_gguf(file);
  EXPECT_EQ(vocab.model, TokenizerModel::WordPiece);
  return Tokenizer::create(std::move(vocab));
}

TEST(TokenizerWordPiece, BertBgeReferenceVectors) {
  ARIADNE_REQUIRE_SHARED(kBgeVocab);
  const std::string base = test::shared_dir() + "/" + kBgeVocab;
  const std::vector<std::string> inputs = split_inputs(read_text(base + ".inp"));
  std::vector<std::string> outputs;
  {
    std::ifstream out(base + ".out");
    for (std::string line; std::getline(out, line);) outputs.push_back(line);
  }
  ASSERT_EQ(inputs.size(), outputs.size()) << "the .inp and .out files disagree on the number of vectors";
  ASSERT_GT(inputs.size(), 30u);
  auto tok = load_bge();
  size_t failures = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> expected = parse_ids(outputs[i]);
    const std::vector<int32_t> got = tok->encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
    if (got != expected) {
      ++failures;
      ADD_FAILURE() << "vector " << i << " input '" << inputs[i]
                    << "'\n  expected: " << ids_to_string(expected) << "\n  got:      " << ids_to_string(got);
    }
  }
  EXPECT_EQ(failures, 0u);
}

TEST(TokenizerWordPiece, BertBgeDecode) {
  ARIADNE_REQUIRE_SHARED(kBgeVocab);
  auto tok = load_bge();
  // Every word piece starts with ▁ (a space); llama.cpp's clean-up then drops the space before , and !.
  const std::vector<int32_t> hello = tok->encode("Hello, world!", false, false);
  EXPECT_EQ(hello, (std::vector<int32_t>{7592, 1010, 2088, 999}));
  EXPECT_EQ(tok->decode(hello, false), " hello, world!");
  // Continuation pieces ("##..." in Hugging Face) have no ▁ and join the word.
  const std::vector<int32_t> w = tok->encode("w048 7tuijk dsdfhu", false, false);
  EXPECT_EQ(tok->decode(w, false), " w048 7tuijk dsdfhu");
  // Apostrophes: the pieces are " he ' s ..."; the clean-up joins a lone " ' " to both neighbours.
  const std::vector<int32_t> c = tok->encode("he's sure they're here, don't go", false, false);
  EXPECT_EQ(tok->decode(c, false), " he's sure they're here, don't go");
  // Special tokens: hidden unless asked for.
  EXPECT_EQ(tok->token_to_piece(101, false), "");
  EXPECT_EQ(tok->token_to_piece(101, true), "[CLS]");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{101, 7592, 102}, true), "[CLS] hello[SEP]");
  EXPECT_THROW(tok->decode(std::vector<int32_t>{30522}, false), Error);
  EXPECT_THROW(tok->token_to_piece(-1, false), Error);
}

TEST(TokenizerWordPiece, BertBgeSpecialTokensInText) {
  ARIADNE_REQUIRE_SHARED(kBgeVocab);
  auto tok = load_bge();
  // parse_special: "[SEP]" written in the text is the control token; otherwise it is punctuation + word.
  EXPECT_EQ(tok->encode("hello[SEP]", false, true), (std::vector<int32_t>{7592, 102}));
  const std::vector<int32_t> plain = tok->encode("hello[SEP]", false, false);
  ASSERT_EQ(plain.size(), 4u);
  EXPECT_EQ(plain[0], 7592);
  EXPECT_EQ(plain[1], 1031);  // ▁[
  EXPECT_EQ(plain[3], 1033);  // ▁]
  // add_special puts [CLS] first (tokenizer.ggml.add_bos_token defaults to true for bert).
  const std::vector<int32_t> with_bos = tok->encode("hello", true, false);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], 101);
}

// A small vocabulary in llama.cpp's GGUF convention: word starts carry ▁, continuations are bare.
Vocab tiny_vocab() {
  Vocab v;
  v.model = TokenizerModel::WordPiece;
  const std::string w = "\xE2\x96\x81";  // ▁ marks a word start
  v.tokens = {"[PAD]",
              "[UNK]",
              "[CLS]",
              "[SEP]",
              w + "un",
              w + "unaff",
              "able",
              "aff",
              w + "cafe",
              w + ",",
              w + "!",
              w + "\xE4\xB8\xAD" /* 中 */,
              w + "\xE6\x96\x87" /* 文 */,
              w + "a",
              "a",
              "aa",
              w + "x",
              w + "\xE1\x84\x92" /* ᄒ, a Hangul lead jamo */,
              w + "$",
              w + "\xCF\x83" /* σ */};
  v.types.assign(v.tokens.size(), TokenType::Normal);
  for (int i = 0; i < 4; ++i) v.types[static_cast<size_t>(i)] = TokenType::Control;
  v.unk_id = 1;
  v.bos_id = 2;
  v.sep_id = 3;
  v.add_space_prefix = false;
  v.index();
  return v;
}

std::vector<int32_t> enc(const Tokenizer& t, std::string_view s) {
  return t.encode(s, false, false);
}

TEST(TokenizerWordPiece, GreedyLongestMatchAndUnknown) {
  auto tok = Tokenizer::create(tiny_vocab());
  // "▁unaff" beats "▁un"; then "able".
  EXPECT_EQ(enc(*tok, "unaffable"), (std::vector<int32_t>{5, 6}));
  // Longest-first is greedy, not optimal: "▁un" + "aff" + "able" would also work but is not tried.
  EXPECT_EQ(enc(*tok, "un"), (std::vector<int32_t>{4}));
  // A word with an unmatched tail becomes a single [UNK], not a partial match.
  EXPECT_EQ(enc(*tok, "unaffablez"), (std::vector<int32_t>{1}));
  EXPECT_EQ(enc(*tok, "zzz un"), (std::vector<int32_t>{1, 4}));
  // "▁a" then the longest continuation "aa" each time.
  EXPECT_EQ(enc(*tok, "aaaaa"), (std::vector<int32_t>{13, 15, 15}));
  EXPECT_TRUE(enc(*tok, "").empty());
  EXPECT_TRUE(enc(*tok, " \t\n\r ").empty());
}

TEST(TokenizerWordPiece, Normalisation) {
  auto tok = Tokenizer::create(tiny_vocab());
  // Lowercase + NFD + accent stripping: "CAFÉ" (precomposed É) and "Cafe\u0301" (combining acute) -> cafe.
  EXPECT_EQ(enc(*tok, "CAF\xC3\x89"), (std::vector<int32_t>{8}));
  EXPECT_EQ(enc(*tok, "Cafe\xCC\x81"), (std::vector<int32_t>{8}));
  // Punctuation and ASCII symbols are words of their own; so is each CJK ideograph.
  EXPECT_EQ(enc(*tok, "cafe,un!"), (std::vector<int32_t>{8, 9, 4, 10}));
  EXPECT_EQ(enc(*tok, "$x"), (std::vector<int32_t>{18, 16}));
  EXPECT_EQ(enc(*tok, "\xE4\xB8\xAD\xE6\x96\x87"), (std::vector<int32_t>{11, 12}));  // 中文
  // Control and format characters vanish without splitting: "un\x01aff" is "unaff"; ZWJ likewise.
  EXPECT_EQ(enc(*tok, std::string("un\x01"
                                  "affable")),
            (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(enc(*tok,
                "un\xE2\x80\x8D"
                "affable"),
            (std::vector<int32_t>{5, 6}));
  // NUL bytes vanish too.
  EXPECT_EQ(enc(*tok, std::string("un\0affable", 10)), (std::vector<int32_t>{5, 6}));
  // Non-breaking space and ideographic space separate words.
  EXPECT_EQ(enc(*tok, "un\xC2\xA0un\xE3\x80\x80un"), (std::vector<int32_t>{4, 4, 4}));
  // Greek capital sigma lowercases to σ; a Hangul syllable keeps only its leading jamo (llama.cpp's NFD).
  EXPECT_EQ(enc(*tok, "\xCE\xA3"), (std::vector<int32_t>{19}));
  EXPECT_EQ(enc(*tok, "\xED\x95\x9C"), (std::vector<int32_t>{17}));  // 한 -> ᄒ
}

TEST(TokenizerWordPiece, CasedVocabularyKeepsCaseAndAccents) {
  // tokenizer.ggml.normalizer.lowercase / strip_accents = false (cased BERT models).
  Vocab v = tiny_vocab();
  v.normalizer_lowercase = false;
  v.normalizer_strip_accents = false;
  auto tok = Tokenizer::create(std::move(v));
  EXPECT_EQ(enc(*tok, "cafe"), (std::vector<int32_t>{8}));
  EXPECT_EQ(enc(*tok, "CAFE"), (std::vector<int32_t>{1}));
  EXPECT_EQ(enc(*tok, "caf\xC3\xA9"), (std::vector<int32_t>{1}));   // é is not decomposed
  EXPECT_EQ(enc(*tok, "cafe\xCC\x81"), (std::vector<int32_t>{1}));  // the combining accent stays in the word
  // Punctuation splitting does not depend on the options.
  EXPECT_EQ(enc(*tok, "cafe,un"), (std::vector<int32_t>{8, 9, 4}));
}

TEST(TokenizerWordPiece, InvalidUtf8IsDropped) {
  auto tok = Tokenizer::create(tiny_vocab());
  // Stray continuation bytes, a truncated sequence and a lead byte with nothing after become U+FFFD,
  // which vanishes (llama.cpp's behaviour).
  EXPECT_EQ(enc(*tok,
                "un\x80"
                "affable"),
            (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(enc(*tok, "un \xE4\xB8"), (std::vector<int32_t>{4}));
  EXPECT_EQ(enc(*tok, "\xF0"), (std::vector<int32_t>{}));
  // A 4-byte form beyond U+10FFFF is dropped as well.
  EXPECT_EQ(enc(*tok, "un\xF7\xBF\xBF\xBF"), (std::vector<int32_t>{4}));
  // Arbitrary bytes never throw.
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_NO_THROW(enc(*tok, all));
}

TEST(TokenizerWordPiece, DecodeCleanUp) {
  auto tok = Tokenizer::create(tiny_vocab());
  EXPECT_EQ(tok->decode(std::vector<int32_t>{8, 9, 4, 10}, false), " cafe, un!");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{5, 6}, false), " unaffable");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{2, 4, 3}, false), " un");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{2, 4, 3}, true), "[CLS] un[SEP]");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{}, false), "");
}

TEST(TokenizerWordPiece, NeedsUnknownToken) {
  Vocab v = tiny_vocab();
  v.tokens[1] = "<unk>";
  v.unk_id = -1;
  v.index();
  try {
    Tokenizer::create(std::move(v));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown"), std::string::npos) << e.what();
  }
}

TEST(TokenizerWordPiece, LongSingleCharacterLineTerminates) {
  auto tok = Tokenizer::create(tiny_vocab());
  // 1 MB of one letter is one word: matching must stay linear (bounded candidates per piece).
  const std::string line(1 << 20, 'a');
  const std::vector<int32_t> ids = enc(*tok, line);
  // ▁a, then (2^20 - 1) letters: "aa" pieces and a final "a".
  ASSERT_EQ(ids.size(), 1u + ((1u << 20) - 1) / 2 + 1);
  EXPECT_EQ(ids.front(), 13);
  EXPECT_EQ(ids[1], 15);
  EXPECT_EQ(ids.back(), 14);
  // 1 MB of an unknown letter: a single [UNK]; 1 MB of punctuation: one token per character.
  EXPECT_EQ(enc(*tok, std::string(1 << 20, 'z')), (std::vector<int32_t>{1}));
  EXPECT_EQ(enc(*tok, std::string(1 << 20, ',')).size(), static_cast<size_t>(1 << 20));
}

}  // namespace
}  // namespace ariadne
