#include "tokenizer/chat_template.h"

#include <array>
#include <chrono>
#include <ctime>

#include "core/error.h"

namespace ariadne {
namespace {

// strftime for the specifiers chat templates use, without the C locale (English names, as Python's
// default locale prints them). Unknown specifiers are copied as written.
std::string format_time(const std::tm& t, const std::string& format) {
  static constexpr std::array<const char*, 12> kMonths = {"January",   "February", "March",    "April",
                                                          "May",       "June",     "July",     "August",
                                                          "September", "October",  "November", "December"};
  static constexpr std::array<const char*, 7> kDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};
  const auto month = static_cast<size_t>(t.tm_mon % 12);
  const auto wday = static_cast<size_t>(t.tm_wday % 7);
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 == format.size()) {
      out += format[i];
      continue;
    }
    const char c = format[++i];
    switch (c) {
      case 'd':
        out += fmt::format("{:02}", t.tm_mday);
        break;
      case 'e':
        out += fmt::format("{:2}", t.tm_mday);
        break;
      case 'm':
        out += fmt::format("{:02}", t.tm_mon + 1);
        break;
      case 'Y':
        out += std::to_string(t.tm_year + 1900);
        break;
      case 'y':
        out += fmt::format("{:02}", (t.tm_year + 1900) % 100);
        break;
      case 'B':
        out += kMonths[month];
        break;
      case 'b':
      case 'h':
        out += std::string(kMonths[month]).substr(0, 3);
        break;
      case 'A':
        out += kDays[wday];
        break;
      case 'a':
        out += std::string(kDays[wday]).substr(0, 3);
        break;
      case 'H':
        out += fmt::format("{:02}", t.tm_hour);
        break;
      case 'I':
        out += fmt::format("{:02}", t.tm_hour % 12 == 0 ? 12 : t.tm_hour % 12);
        break;
      case 'M':
        out += fmt::format("{:02}", t.tm_min);
        break;
      case 'S':
        out += fmt::format("{:02}", t.tm_sec);
        break;
      case 'p':
        out += t.tm_hour < 12 ? "AM" : "PM";
        break;
      case 'j':
        out += fmt::format("{:03}", t.tm_yday + 1);
        break;
      case 'F':
        out += fmt::format("{}-{:02}-{:02}", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday);
        break;
      case '%':
        out += '%';
        break;
      default:
        out += '%';
        out += c;
    }
  }
  return out;
}

std::tm broken_down_time(const std::optional<int64_t>& now) {
  std::tm t{};
  if (now) {
    const auto secs = static_cast<std::time_t>(*now);
    if (!gmtime_r(&secs, &t)) fail("chat template: the time {} cannot be formatted", *now);
  } else {
    const std::time_t secs = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    localtime_r(&secs, &t);
  }
  return t;
}

jinja::Value to_value(const ChatTemplateVar& v) {
  return std::visit(
      [](const auto& x) -> jinja::Value {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return jinja::Value::boolean(x);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return jinja::Value::integer(x);
        } else if constexpr (std::is_same_v<T, double>) {
          return jinja::Value::number(x);
        } else {
          return jinja::Value::string(x);
        }
      },
      v);
}

// ---------------------------------------------------------------------------------------------------
// Built-in templates: the official templates of each family, as published with the models (data).
// ---------------------------------------------------------------------------------------------------

// Meta-Llama-3-8B-Instruct.
constexpr const char* kLlama3 =
    R"JINJA({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})JINJA";

// Llama-2-7b-chat-hf.
constexpr const char* kLlama2 =
    R"JINJA({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})JINJA";

// Mistral-7B-Instruct-v0.3 (the version with function calling; a system message joins the last user turn).
constexpr const char* kMistral = R"JINJA({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)JINJA";

// ChatML without a default system prompt.
constexpr const char* kChatMl =
    R"JINJA({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})JINJA";

// Qwen2-7B-Instruct.
constexpr const char* kQwen2 =
    R"JINJA({% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})JINJA";

// Qwen3 (Qwen3-8B and siblings): thinking blocks are kept only after the last user query.
constexpr const char* kQwen3 = R"JINJA({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %})JINJA";

}  // namespace

ChatTemplate::ChatTemplate(std::string_view source, const jinja::Limits& limits)
    : template_(source, limits) {}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& options) const {
  using jinja::Value;
  std::vector<Value> list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages)
    list.push_back(Value::dict({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));

  const std::optional<int64_t> now = options.now;
  std::vector<std::pair<std::string, Value>> globals = {
      {"messages", Value::list(std::move(list))},
      {"add_generation_prompt", Value::boolean(options.add_generation_prompt)},
      {"bos_token", Value::string(options.bos_token)},
      {"eos_token", Value::string(options.eos_token)},
      {"tools", Value::none()},
      {"documents", Value::none()},
      {"raise_exception", Value::function("raise_exception",
                                          [](const jinja::CallArgs& a) -> Value {
                                            const std::string msg =
                                                a.positional.empty()
                                                    ? std::string("raise_exception()")
                                                    : jinja::to_python_string(a.positional[0]);
                                            fail("raise_exception: {}", msg);
                                          })},
      {"strftime_now", Value::function("strftime_now",
                                       [now](const jinja::CallArgs& a) -> Value {
                                         if (a.positional.empty() || !a.positional[0].is_string())
                                           fail("strftime_now(format) needs a format string");
                                         const std::string& f = a.positional[0].as_string();
                                         if (f.size() > 4096) fail("strftime_now: format string too long");
                                         return Value::string(format_time(broken_down_time(now), f));
                                       })},
  };
  for (const auto& [name, value] : options.extra) {
    bool replaced = false;
    for (auto& [k, v] : globals) {
      if (k == name) {
        v = to_value(value);
        replaced = true;
      }
    }
    if (!replaced) globals.emplace_back(name, to_value(value));
  }
  return template_.render(globals, options.limits);
}

std::string render_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& options) {
  return ChatTemplate(tmpl, options.limits).render(messages, options);
}

std::string builtin_chat_template(std::string_view family) {
  if (family == "llama3") return kLlama3;
  if (family == "llama2") return kLlama2;
  if (family == "mistral") return kMistral;
  if (family == "chatml") return kChatMl;
  if (family == "qwen2") return kQwen2;
  if (family == "qwen3") return kQwen3;
  fail(
      "chat template: no built-in template for family '{}' (known: llama3, llama2, mistral, chatml, qwen2, "
      "qwen3)",
      family);
}

std::string guess_chat_family(const Vocab& vocab) {
  auto has = [&](const char* token) { return vocab.find(token) >= 0; };
  if (has("<|start_header_id|>") && has("<|eot_id|>")) return "llama3";
  if (has("<|im_start|>") && has("<|im_end|>")) return has("<think>") ? "qwen3" : "qwen2";
  if (has("[INST]") && has("[/INST]")) return "mistral";
  if (vocab.model == TokenizerModel::Spm) return "llama2";
  return "";
}

}  // namespace ariadne
