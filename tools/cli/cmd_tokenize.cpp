// ariadne tokenize / detokenize / chat-template: the tokenizer and chat template of a model, on their own.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::cli {

namespace {

struct TokenizerSource {
  std::string model;
  std::string tokenizer;
  std::string pre;

  void add_options(CLI::App* cmd) {
    cmd->add_option("-m,--model", model,
                    "Model whose tokenizer to use (GGUF, Hugging Face folder, llama2.c .bin)");
    cmd->add_option(
        "--tokenizer", tokenizer,
        "Tokenizer file: tokenizer.json, vocab.json, encoder.json, tokenizer.model, tokenizer.bin, GGUF");
    cmd->add_option("--pre", pre,
                    "BPE pre-tokenizer for vocab.json / encoder.json (gpt2, llama-bpe, qwen2, ...)");
  }

  std::unique_ptr<Tokenizer> load() const {
    if (model.empty() && tokenizer.empty()) fail("give --model or --tokenizer");
    Vocab vocab = model.empty() ? load_vocab_file(tokenizer, pre) : load_model_vocab(model, tokenizer);
    if (!pre.empty()) vocab.pre = pre;
    return Tokenizer::create(std::move(vocab));
  }
};

std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), {});
}

struct TokenizeOptions {
  TokenizerSource source;
  bool bos = false;
  bool special = false;
  bool jsonl = false;
  bool timing = false;
};

int run_tokenize(const TokenizeOptions& o) {
  const auto tok = o.source.load();
  if (!o.jsonl) {
    const std::string text = read_stdin();
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->encode(text, o.bos, o.special);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    if (o.timing) {
      // Encoding alone, one thread: loading the vocabulary and printing are not counted.
      const nlohmann::json t = {{"bytes", text.size()},
                                {"tokens", ids.size()},
                                {"seconds", seconds},
                                {"mb_per_s", seconds > 0 ? text.size() / 1e6 / seconds : 0.0}};
      std::fprintf(stderr, "%s\n", t.dump().c_str());
    }
    return 0;
  }
  std::string line;
  for (size_t n = 1; std::getline(std::cin, line); ++n) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("stdin line {}: not a JSON string: {}", n, e.what());
    }
    if (!j.is_string()) fail("stdin line {}: expected a JSON string", n);
    std::printf("%s\n", nlohmann::json(tok->encode(j.get<std::string>(), o.bos, o.special)).dump().c_str());
  }
  return 0;
}

struct DetokenizeOptions {
  TokenizerSource source;
  bool special = false;
  bool jsonl = false;
};

std::vector<int32_t> parse_id_array(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not a JSON array of ids: {}", where, e.what());
  }
  if (!j.is_array()) fail("{}: expected a JSON array of ids", where);
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      fail("{}: {} is not a token id", where, v.dump());
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

int run_detokenize(const DetokenizeOptions& o) {
  const auto tok = o.source.load();
  if (!o.jsonl) {
    const std::string text = tok->decode(parse_id_array(read_stdin(), "stdin"), o.special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::string line;
  for (size_t n = 1; std::getline(std::cin, line); ++n) {
    const std::string text = tok->decode(parse_id_array(line, "stdin line " + std::to_string(n)), o.special);
    std::printf("%s\n",
                nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return 0;
}

struct ChatTemplateCliOptions {
  TokenizerSource source;
  std::string messages = "-";
  bool no_generation_prompt = false;
  std::string family;
};

int run_chat_template(const ChatTemplateCliOptions& o) {
  const Vocab vocab = o.source.model.empty() ? load_vocab_file(o.source.tokenizer, o.source.pre)
                                             : load_model_vocab(o.source.model, o.source.tokenizer);
  std::string text;
  if (o.messages == "-") {
    text = read_stdin();
  } else {
    std::ifstream in(o.messages);
    if (!in) fail("{}: cannot open messages file", o.messages);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("messages: not JSON: {}", e.what());
  }
  if (!j.is_array()) fail("messages: expected a JSON array of {{\"role\", \"content\"}} objects");
  std::vector<ChatMessage> messages;
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      fail("messages: each message needs string fields \"role\" and \"content\", got {}", m.dump());
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  std::string tmpl = vocab.chat_template;
  if (!o.family.empty()) {
    tmpl = builtin_chat_template(o.family);
  } else if (tmpl.empty()) {
    // No template in the files: the built-in one of the family the vocabulary belongs to.
    const std::string family = guess_chat_family(vocab);
    if (family.empty())
      fail(
          "the model has no chat template and its family is unknown; pick one with --family (llama3, llama2, "
          "mistral, chatml, qwen2, qwen3)");
    std::fprintf(stderr, "ariadne: the model has no chat template; using the built-in '%s' template\n",
                 family.c_str());
    tmpl = builtin_chat_template(family);
  }
  ChatTemplateOptions options;
  options.add_generation_prompt = !o.no_generation_prompt;
  if (vocab.bos_id >= 0) options.bos_token = vocab.tokens[static_cast<size_t>(vocab.bos_id)];
  if (vocab.eos_id >= 0) options.eos_token = vocab.tokens[static_cast<size_t>(vocab.eos_id)];
  const std::string out = render_chat_template(tmpl, messages, options);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void add_tokenize_commands(CLI::App& app, Action& action) {
  {
    auto o = std::make_shared<TokenizeOptions>();
    CLI::App* cmd = app.add_subcommand("tokenize", "Text on stdin -> token ids as a JSON array");
    o->source.add_options(cmd);
    cmd->add_flag("--bos", o->bos, "Add BOS (and EOS where the vocabulary asks for it)");
    cmd->add_flag("--special", o->special, "Recognise special tokens written in the text");
    cmd->add_flag("--jsonl", o->jsonl, "Each input line is a JSON string; each output line its ids");
    cmd->add_flag("--timing", o->timing, "Print encode time and MB/s as JSON on stderr (benchmarks)");
    cmd->callback([o, &action] { action = [o] { return run_tokenize(*o); }; });
  }
  {
    auto o = std::make_shared<DetokenizeOptions>();
    CLI::App* cmd = app.add_subcommand("detokenize", "A JSON array of token ids on stdin -> text");
    o->source.add_options(cmd);
    cmd->add_flag("--special", o->special, "Print special tokens' text");
    cmd->add_flag("--jsonl", o->jsonl, "Each input line a JSON array; each output line a JSON string");
    cmd->callback([o, &action] { action = [o] { return run_detokenize(*o); }; });
  }
  {
    auto o = std::make_shared<ChatTemplateCliOptions>();
    CLI::App* cmd =
        app.add_subcommand("chat-template", "Render a JSON message list with the model's chat template");
    o->source.add_options(cmd);
    cmd->add_option("--messages", o->messages, "JSON file of [{\"role\", \"content\"}, ...] (- = stdin)");
    cmd->add_flag("--no-generation-prompt", o->no_generation_prompt,
                  "Do not open an assistant turn at the end");
    cmd->add_option("--family", o->family, "Use a built-in template: llama3, llama2, mistral, chatml, qwen3");
    cmd->callback([o, &action] { action = [o] { return run_chat_template(*o); }; });
  }
}

}  // namespace ariadne::cli
