// Chat templates: turning a conversation into the prompt text a model was trained on, by rendering the
// model's Jinja template (tokenizer.chat_template) the way Hugging Face transformers' apply_chat_template
// does, or a built-in template of the model family when the file carries none.
//
// Templates come from model files and are untrusted: rendering is bounded (jinja::Limits: output size,
// steps, nesting) and every failure — syntax, a runtime error, raise_exception() in the template, a
// bound exceeded — is an ariadne::Error naming the template line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tokenizer/vocab.h"

#include "tokenizer/jinja_engine.h"

namespace ariadne {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

// A top-level template variable given by the caller.
using ChatTemplateVar = std::variant<bool, int64_t, double, std::string>;

struct ChatTemplateOptions {
  bool add_generation_prompt = false;  // end with the header of an assistant turn
  std::string bos_token;               // the texts of the vocabulary's BOS / EOS tokens
  std::string eos_token;
  // "Now" for strftime_now() (Llama 3.2 prints today's date), in seconds since the Unix epoch, formatted
  // as UTC. Unset: the system clock in local time, as Hugging Face does.
  std::optional<int64_t> now;
  // More top-level variables, e.g. {"enable_thinking", false} for Qwen3, {"date_string", "26 Jul 2024"} for
  // Llama 3.1. They override the standard ones of the same name.
  std::vector<std::pair<std::string, ChatTemplateVar>> extra;
  jinja::Limits limits;
};

// A parsed template, to render many conversations.
class ChatTemplate {
 public:
  // Throws Error on a syntax error or an unsupported construct.
  explicit ChatTemplate(std::string_view source, const jinja::Limits& limits = {});
  std::string render(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) const;

 private:
  jinja::Template template_;
};

// Parses and renders in one go. The template sees: messages (list of {role, content}),
// add_generation_prompt, bos_token, eos_token, tools = none, documents = none, raise_exception(msg),
// strftime_now(format), and options.extra.
std::string render_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& options);

// The template of a model family, for model files without one: "llama3" (Llama 3 Instruct), "llama2"
// (Llama 2 chat), "mistral" (Mistral Instruct v0.3), "chatml" (plain ChatML), "qwen2" (Qwen2 Instruct,
// ChatML with a default system prompt), "qwen3" (Qwen3, with its thinking handling). Unknown families
// throw Error listing the known ones.
std::string builtin_chat_template(std::string_view family);

// The built-in family that fits a vocabulary without a template of its own, judged by its special tokens
// (<|start_header_id|> -> llama3, <|im_start|> -> qwen2 or qwen3 (when <think> exists), [INST] -> mistral)
// or, failing those, its tokenizer (SentencePiece -> llama2); empty when nothing fits.
std::string guess_chat_family(const Vocab& vocab);

}  // namespace ariadne
