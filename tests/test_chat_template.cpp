// Chat templates: the official templates of Llama 2/3.x, Mistral, Qwen2/2.5/3 rendered on small
// conversations, against expected prompts written out by hand from each template's text; the Jinja
// engine's semantics piece by piece; and the bounds that keep untrusted templates from hanging or
// exhausting memory.
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_engine.h"

namespace ariadne {
namespace {

// --- Official templates used only here (test data; the families' main templates are the built-ins) ---

// Llama-3.1-8B-Instruct (also Llama 3.3 70B).
const char* const kLlama31 = R"JINJA({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)JINJA";

// Llama-3.2-1B/3B-Instruct: as 3.1 without builtin tools, and today's date from strftime_now.
const char* const kLlama32 = R"JINJA({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)JINJA";

// Qwen2.5-7B-Instruct.
const char* const kQwen25 = R"JINJA({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)JINJA";

// Mistral-7B-Instruct-v0.1 (original release).
const char* const kMistral01 =
    R"JINJA({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})JINJA";

// --- Helpers ---

const std::vector<ChatMessage> kMultiTurn = {
    {"system", "You are terse."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Bye?"}};
const std::vector<ChatMessage> kNoSystem = {{"user", "Hi!"}, {"assistant", "Hello."}, {"user", "Bye?"}};

ChatTemplateOptions opts(bool gen, std::string bos = "", std::string eos = "") {
  ChatTemplateOptions o;
  o.add_generation_prompt = gen;
  o.bos_token = std::move(bos);
  o.eos_token = std::move(eos);
  return o;
}

std::string render(const std::string& tmpl, const std::vector<ChatMessage>& msgs,
                   const ChatTemplateOptions& o) {
  return render_chat_template(tmpl, msgs, o);
}

// Renders an engine-level snippet with a few variables.
std::string jinja_render(const std::string& src, const jinja::Limits& limits = {}) {
  using jinja::Value;
  std::vector<std::pair<std::string, Value>> globals = {
      {"messages",
       Value::list({Value::dict({{"role", Value::string("user")}, {"content", Value::string("a")}}),
                    Value::dict({{"role", Value::string("assistant")}, {"content", Value::string("b")}}),
                    Value::dict({{"role", Value::string("user")}, {"content", Value::string("c")}})})},
  };
  return jinja::Template(src, limits).render(globals, limits);
}

// Expects an Error whose message contains every fragment.
void expect_error(const std::string& src, const std::vector<std::string>& fragments,
                  const jinja::Limits& limits = {}) {
  try {
    const std::string out = jinja_render(src, limits);
    ADD_FAILURE() << "expected an Error for template: " << src.substr(0, 200)
                  << "\n  rendered: " << out.substr(0, 200);
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const std::string& f : fragments)
      EXPECT_NE(what.find(f), std::string::npos) << "message '" << what << "' lacks '" << f << "'";
  }
}

// --- Families -----------------------------------------------------------------------------------

TEST(ChatTemplateFamilies, Llama3) {
  const std::string t = builtin_chat_template("llama3");
  EXPECT_EQ(render(t, kMultiTurn, opts(true, "<|begin_of_text|>")),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Content is trimmed; no generation prompt.
  EXPECT_EQ(render(t, {{"user", "  padded \n"}}, opts(false, "<|begin_of_text|>")),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>");
}

TEST(ChatTemplateFamilies, Llama31WithDefaultDate) {
  const std::string expected_head =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
  EXPECT_EQ(render(kLlama31, kMultiTurn, opts(true, "<|begin_of_text|>")),
            expected_head +
                "You are terse.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Without a system message the system header still carries the dates, with an empty message.
  EXPECT_EQ(render(kLlama31, {{"user", "Hi!"}}, opts(false, "<|begin_of_text|>")),
            expected_head + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
  // date_string given by the caller.
  ChatTemplateOptions o = opts(false, "<|begin_of_text|>");
  o.extra = {{"date_string", std::string("01 Jan 2025")}};
  EXPECT_NE(render(kLlama31, {{"user", "Hi!"}}, o).find("Today Date: 01 Jan 2025\n\n"), std::string::npos);
  // A system message's own whitespace is trimmed.
  EXPECT_EQ(render(kLlama31, {{"system", " S \n"}}, opts(false)),
            "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nS<|eot_id|>");
}

TEST(ChatTemplateFamilies, Llama32DateFromStrftimeNow) {
  ChatTemplateOptions o = opts(true, "<|begin_of_text|>");
  o.now = 1726405509;  // 2024-09-15 13:05:09 UTC
  EXPECT_EQ(render(kLlama32, {{"user", "Hi!"}}, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 15 Sep 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Other strftime specifiers, through a template of our own.
  EXPECT_EQ(render("{{ strftime_now('%Y-%m-%d %H:%M:%S %A %a %B %j %y %I%p %%') }}", {}, o),
            "2024-09-15 13:05:09 Sunday Sun September 259 24 01PM %");
  // Without an injected time the real clock is used: some date in the expected shape.
  const std::string real = render("{{ strftime_now('%d %b %Y') }}", {}, opts(false));
  EXPECT_EQ(real.size(), 11u) << real;
}

TEST(ChatTemplateFamilies, Llama2) {
  const std::string t = builtin_chat_template("llama2");
  EXPECT_EQ(render(t, kMultiTurn, opts(true, "<s>", "</s>")),
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Bye? [/INST]");
  // add_generation_prompt does not change Llama 2's output.
  EXPECT_EQ(render(t, kMultiTurn, opts(false, "<s>", "</s>")),
            render(t, kMultiTurn, opts(true, "<s>", "</s>")));
  EXPECT_EQ(render(t, kNoSystem, opts(false, "<s>", "</s>")),
            "<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Bye? [/INST]");
  // Roles must alternate: the template raises, and the message reaches the caller.
  try {
    render(t, {{"user", "a"}, {"user", "b"}}, opts(false, "<s>", "</s>"));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplateFamilies, Mistral01) {
  EXPECT_EQ(render(kMistral01, kNoSystem, opts(true, "<s>", "</s>")),
            "<s>[INST] Hi! [/INST]Hello.</s>[INST] Bye? [/INST]");
  EXPECT_THROW(render(kMistral01, kMultiTurn, opts(false, "<s>", "</s>")), Error);  // no system role
}

TEST(ChatTemplateFamilies, MistralV03) {
  const std::string t = builtin_chat_template("mistral");
  // The system message is prepended to the last user message.
  EXPECT_EQ(render(t, kMultiTurn, opts(true, "<s>", "</s>")),
            "<s>[INST] Hi![/INST] Hello.</s>[INST] You are terse.\n\nBye?[/INST]");
  EXPECT_EQ(render(t, kNoSystem, opts(false, "<s>", "</s>")),
            "<s>[INST] Hi![/INST] Hello.</s>[INST] Bye?[/INST]");
  // The assistant reply is trimmed.
  EXPECT_EQ(render(t, {{"user", "q"}, {"assistant", " a \n"}}, opts(false, "<s>", "</s>")),
            "<s>[INST] q[/INST] a</s>");
  try {
    render(t, {{"assistant", "x"}}, opts(false, "<s>", "</s>"));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must alternate"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplateFamilies, ChatMlAndQwen2) {
  const std::string body =
      "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_"
      "end|>\n";
  EXPECT_EQ(render(builtin_chat_template("chatml"), kNoSystem, opts(true)), body + "<|im_start|>assistant\n");
  EXPECT_EQ(render(builtin_chat_template("chatml"), kNoSystem, opts(false)), body);
  // Qwen2 adds its default system prompt when there is none.
  EXPECT_EQ(
      render(builtin_chat_template("qwen2"), kNoSystem, opts(true)),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + body + "<|im_start|>assistant\n");
  EXPECT_EQ(render(builtin_chat_template("qwen2"), kMultiTurn, opts(false)),
            "<|im_start|>system\nYou are terse.<|im_end|>\n" + body);
}

TEST(ChatTemplateFamilies, Qwen25) {
  EXPECT_EQ(
      render(kQwen25, kNoSystem, opts(true)),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
      "<|im_start|>user\nBye?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(kQwen25, kMultiTurn, opts(false)),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nBye?<|im_end|>\n");
  // Consecutive tool results share one user turn.
  EXPECT_EQ(
      render(kQwen25, {{"user", "q"}, {"tool", "r1"}, {"tool", "r2"}}, opts(false)),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nq<|im_end|>\n"
      "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</"
      "tool_response><|im_end|>\n");
}

TEST(ChatTemplateFamilies, Qwen3Thinking) {
  const std::string t = builtin_chat_template("qwen3");
  // Earlier turns lose their reasoning: only the answer after </think> is kept.
  const std::vector<ChatMessage> msgs = {{"system", "S"},
                                         {"user", "Q1"},
                                         {"assistant", "<think>\nreasoning one\n</think>\n\nA1"},
                                         {"user", "Q2"}};
  const std::string body =
      "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
      "<|im_start|>user\nQ2<|im_end|>\n";
  EXPECT_EQ(render(t, msgs, opts(true)), body + "<|im_start|>assistant\n");
  EXPECT_EQ(render(t, msgs, opts(false)), body);
  // enable_thinking=false pre-fills an empty think block; true (or unset) does not.
  ChatTemplateOptions no_think = opts(true);
  no_think.extra = {{"enable_thinking", false}};
  EXPECT_EQ(render(t, msgs, no_think), body + "<|im_start|>assistant\n<think>\n\n</think>\n\n");
  ChatTemplateOptions think = opts(true);
  think.extra = {{"enable_thinking", true}};
  EXPECT_EQ(render(t, msgs, think), body + "<|im_start|>assistant\n");
  // The turn after the last user query keeps its reasoning, re-formatted.
  EXPECT_EQ(render(t, {{"user", "Q"}, {"assistant", "<think>\n\nR\n</think>\nA"}}, opts(false)),
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\nA<|im_end|>\n");
  // ... and one without reasoning that is not last is printed as is; tool results become a user turn.
  EXPECT_EQ(render(t, {{"user", "Q"}, {"assistant", "A"}, {"tool", "T"}}, opts(true)),
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nT\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
  // A user message that is itself a tool response does not count as the last query.
  EXPECT_EQ(render(t,
                   {{"user", "Q"},
                    {"assistant", "<think>R1</think>A1"},
                    {"user", "<tool_response>x</tool_response>"},
                    {"assistant", "<think>R2</think>A2"}},
                   opts(false)),
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nR1\n</think>\n\nA1<|im_end|>\n"
            "<|im_start|>user\n<tool_response>x</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\nR2\n</think>\n\nA2<|im_end|>\n");
}

TEST(ChatTemplateFamilies, UnknownFamily) {
  try {
    builtin_chat_template("gpt-17");
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gpt-17"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("llama3"), std::string::npos);
  }
}

TEST(ChatTemplateFamilies, ParsedTemplateRendersRepeatedly) {
  const ChatTemplate t(builtin_chat_template("chatml"));
  EXPECT_EQ(t.render({{"user", "x"}}, opts(false)), "<|im_start|>user\nx<|im_end|>\n");
  EXPECT_EQ(t.render({{"user", "y"}}, opts(false)), "<|im_start|>user\ny<|im_end|>\n");
}

// --- Engine ---------------------------------------------------------------------------------------

TEST(ChatTemplateEngine, Arithmetic) {
  EXPECT_EQ(
      jinja_render(
          "{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 2 ** 10 }}"),
      "7|3|-4|2|3.5|2.0|1024");
  EXPECT_EQ(jinja_render("{{ 'a' ~ 1 ~ none ~ true ~ undefined_name }}"), "a1NoneTrue");
  EXPECT_EQ(jinja_render("{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ [1] + [2] }}|{{ 1 + 1.5 }}|{{ true + 1 }}"),
            "ababab|[1, 1]|[1, 2]|2.5|2");
  EXPECT_EQ(jinja_render("{{ -1 | abs }}|{{ 'a' + 'b' | upper }}|{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}"),
            "1|aB|TrueFalse");
}

TEST(ChatTemplateEngine, PrintsLikePython) {
  EXPECT_EQ(jinja_render("{{ [1, 'a', none, true, 1.5, {'k': \"it's\"}] }}"),
            "[1, 'a', None, True, 1.5, {'k': \"it's\"}]");
  EXPECT_EQ(jinja_render("{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 1.0 }}|{{ 1e-5 }}|{{ 100.0 }}"),
            "1e+20|0.30000000000000004|1.0|1e-05|100.0");
  EXPECT_EQ(jinja_render("{{ 'a\\tb\\n' }}|{{ \"q'\" }}|{{ 'x' 'y' }}"), "a\tb\n|q'|xy");
}

TEST(ChatTemplateEngine, WhitespaceControl) {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it goes.
  EXPECT_EQ(jinja_render("<ul>\n  {% for x in [1, 2] %}\n  <li>{{ x }}</li>\n  {% endfor %}\n</ul>"),
            "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>");
  EXPECT_EQ(jinja_render("{% if true %}\n  yes\n{% endif %}\n"), "  yes\n");
  // Minus strips all whitespace on its side, including newlines; expressions are not lstripped.
  EXPECT_EQ(jinja_render("a  \n {{- 'b' -}} \n  c"), "abc");
  EXPECT_EQ(jinja_render("  {{ 'x' }}\n"), "  x");
  // Comments: removed, with the same trimming as blocks.
  EXPECT_EQ(jinja_render("a {# c #} b"), "a  b");
  EXPECT_EQ(jinja_render("  {# c #}\nb"), "b");
  // Plus disables lstrip_blocks.
  EXPECT_EQ(jinja_render("  {%+ if true %}x{% endif %}"), "  x");
  // Only one trailing newline of the template is dropped.
  EXPECT_EQ(jinja_render("x\n\n"), "x\n");
  EXPECT_EQ(jinja_render("{% raw %}{{ not parsed }}{% endraw %}"), "{{ not parsed }}");
}

TEST(ChatTemplateEngine, Loops) {
  EXPECT_EQ(jinja_render(
                "{% for x in ['a','b','c'] %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
                "{{ loop.length }}{{ loop.revindex }},{% endfor %}"),
            "01TrueFalse33,12FalseFalse32,23FalseTrue31,");
  EXPECT_EQ(
      jinja_render("{% for x in range(6) if x % 2 == 0 %}{{ x }}{{ '' if loop.last else ',' }}{% endfor %}"),
      "0,2,4");
  EXPECT_EQ(jinja_render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(jinja_render(
                "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}"
                "{% endif %}{{ x }}{% endfor %}"),
            "0134");
  EXPECT_EQ(jinja_render("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
  EXPECT_EQ(jinja_render("{% for k, v in {'a': 1, 'b': [1, 'x']} | items %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=[1, 'x'];");
  EXPECT_EQ(jinja_render("{% for m in messages[::-1] %}{{ m.content }}{% endfor %}"), "cba");
  EXPECT_EQ(jinja_render("{% for c in 'hé' %}[{{ c }}]{% endfor %}"), "[h][é]");
}

TEST(ChatTemplateEngine, Scoping) {
  // A set inside a loop is local to the iteration; the outer value is unchanged afterwards.
  EXPECT_EQ(
      jinja_render("{% set x = 1 %}{% for i in range(2) %}{% set x = x + 10 %}{{ x }} {% endfor %}{{ x }}"),
      "11 11 1");
  // A namespace carries state across iterations.
  EXPECT_EQ(
      jinja_render("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}"
                   "{{ ns.n }}"),
      "6");
  // Sets inside if blocks are visible afterwards.
  EXPECT_EQ(jinja_render("{% if true %}{% set y = 'in' %}{% endif %}{{ y }}"), "in");
  EXPECT_EQ(jinja_render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(jinja_render("{% set x %}a{{ 1 + 1 }}b{% endset %}[{{ x }}]"), "[a2b]");
  EXPECT_EQ(jinja_render("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}"
                         "{{ greet('A') }} {{ greet('B', punct='?') }}"),
            "Hello A! Hello B?");
}

TEST(ChatTemplateEngine, Filters) {
  EXPECT_EQ(
      jinja_render("{{ '  hi  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ [1,2,3] | length }}|"
                   "{{ 'héllo' | length }}|{{ [3,1,2] | sort | join(',') }}|{{ x | default('d') }}|"
                   "{{ '' | default('e', true) }}|{{ 'a-b-c' | replace('-', '+') }}|{{ [1,2] | first }}"
                   "{{ [1,2] | last }}|{{ 42 | string }}|{{ '12' | int + 1 }}|{{ 'x' | int }}"),
      "hi|ABC|abc|3|5|1,2,3|d|e|a+b+c|12|42|13|0");
  EXPECT_EQ(
      jinja_render(
          "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(' ') }}|"
          "{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}|"
          "{{ [1, 0, 2] | select | list }}|{{ ['a', 'b'] | map('upper') | join }}"),
      "a c|1|[1, 2]|AB");
  EXPECT_EQ(
      jinja_render("{{ ['b', 'A', 'c'] | sort }}|{{ [1, 2, 1] | unique | list }}|{{ 'ab' | reverse }}|"
                   "{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ 3.7 | int }}|{{ 2.5 | round }}|"
                   "{{ 3.14159 | round(2) }}|{{ 2.1 | round(method='ceil') }}"),
      "['A', 'b', 'c']|[1, 2]|ba|Hello World|Hello|3|2.0|3.14|3.0");
  EXPECT_EQ(jinja_render("{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}"), "a\n  b|  a\n  b");
}

TEST(ChatTemplateEngine, ToJson) {
  EXPECT_EQ(jinja_render("{{ {'a': [1, 2.5, true, none, 'x\"y\\n'], 'b': {}} | tojson }}"),
            "{\"a\": [1, 2.5, true, null, \"x\\\"y\\n\"], \"b\": {}}");
  EXPECT_EQ(jinja_render("{{ {'a': [1, 2], 'b': 'é'} | tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"é\"\n}");
  EXPECT_EQ(jinja_render("{{ 'plain' | tojson }}"), "\"plain\"");
  expect_error("{{ nothing | tojson }}", {"tojson", "undefined"});
}

TEST(ChatTemplateEngine, SubscriptsAndMethods) {
  EXPECT_EQ(jinja_render("{{ [1,2,3,4][1:3] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[:-1] }}|{{ [1,2,3][-1] }}|"
                         "{{ 'abc'[5:] }}|{{ [1,2,3,4,5][::2] }}|{{ 'héllo'[1] }}"),
            "[2, 3]|fedcba|abcde|3||[1, 3, 5]|é");
  EXPECT_EQ(
      jinja_render(
          "{{ 'a,b,,c'.split(',') }}|{{ '  x y  '.split() }}|{{ 'xxhixx'.strip('x') }}|"
          "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('lo', 'x')) }}|{{ '\\nA\\n'.lstrip('\\n') }}|"
          "{{ 'a-b-c'.split('-', 1) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ ', '.join(['x', 'y']) }}"),
      "['a', 'b', '', 'c']|['x', 'y']|hi|TrueTrue|A\n|['a', 'b-c']|ABab|x, y");
  EXPECT_EQ(jinja_render("{% set d = {'a': 1} %}{{ d.a }}{{ d['a'] }}{{ d.get('z', 5) }}{{ 'a' in d }}"
                         "{{ d.b is defined }}{{ d.keys() | list }}{{ d.values() | list }}"),
            "115TrueFalse['a'][1]");
  EXPECT_EQ(jinja_render("{{ messages[0].role }}|{{ messages[1]['content'] }}|{{ messages[7] is defined }}|"
                         "{{ messages | length }}"),
            "user|b|False|3");
}

TEST(ChatTemplateEngine, Tests) {
  EXPECT_EQ(jinja_render(
                "{{ none is none }}{{ 1 is number }}{{ 'a' is string }}{{ x is defined }}{{ x is undefined }}"
                "{{ [1] is iterable }}{{ {} is mapping }}{{ false is false }}{{ 0 is false }}{{ 3 is odd }}"
                "{{ 4 is divisibleby(2) }}{{ 'a' is in ['a'] }}{{ 1 is not none }}{{ 2 is eq 2 }}"),
            "TrueTrueTrueFalseTrueTrueTrueTrueFalseTrueTrueTrueTrueTrue");
  EXPECT_EQ(
      jinja_render("{{ 'y' if 'ell' in 'hello' else 'n' }}{{ 'y' if 3 not in [1, 2] }}{{ 'n' if false }}"),
      "yy");
  EXPECT_EQ(jinja_render("{{ x is defined and x.y }}|{{ not x }}|{{ [] or 'alt' }}|{{ 'first' or 'alt' }}"),
            "False|True|alt|first");
}

TEST(ChatTemplateEngine, Errors) {
  expect_error("{{ x.y }}", {"line 1", "undefined"});
  expect_error("\n\n{{ x['y'] }}", {"line 3"});
  expect_error("{% if %}", {"line 1"});
  expect_error("{{ 'a' + 1 }}", {"unsupported operand"});
  expect_error("{{ x | nosuch }}", {"unknown filter 'nosuch'"});
  expect_error("{{ x is nosuch }}", {"unknown test 'nosuch'"});
  expect_error("{% for x in y %}", {"endfor"});
  expect_error("{% extends 'base.html' %}", {"unsupported", "extends"});
  expect_error("{% break %}", {"outside a for loop"});
  expect_error("{{ raise_exception('boom') }}", {"raise_exception", "undefined"});  // not a global here
  expect_error("{{ 1 // 0 }}", {"by zero"});
  expect_error("{{ 'abc", {"unterminated"});
  expect_error("{{ 1 }", {"unterminated"});
  expect_error("{# open", {"unterminated comment"});
  expect_error("{{ [1, 2] < 'a' }}", {"not supported"});
  expect_error("{% set x = 1 %}{% set x.y = 2 %}", {"namespace"});
  try {
    render("{{ raise_exception('boom: ' ~ messages | length) }}", kNoSystem, opts(false));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("boom: 3"), std::string::npos) << e.what();
  }
}

// --- Bounds on untrusted templates ------------------------------------------------------------------

TEST(ChatTemplateLimits, RunawayLoopsStop) {
  const auto t0 = std::chrono::steady_clock::now();
  expect_error(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}"
      "{% endfor %}{% endfor %}",
      {"steps"});
  expect_error("{% for a in range(100000000) %}{% endfor %}", {"steps"});
  // Termination, not speed: generous bound.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
}

TEST(ChatTemplateLimits, OutputAndStringSize) {
  jinja::Limits small;
  small.max_output_bytes = 1000;
  expect_error("{% for a in range(100) %}{{ 'x' * 20 }}{% endfor %}", {"output exceeds"}, small);
  expect_error("{{ 'x' * 2000 }}", {"too large"}, small);
  // Doubling a string: bounded by the default 16 MB limit long before memory runs out.
  expect_error(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
      {"limit"});
  // Doubling a list: each copy costs steps.
  expect_error(
      "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
      {"steps"});
  EXPECT_EQ(jinja_render("{{ 'x' * 5 }}", small), "xxxxx");
}

TEST(ChatTemplateLimits, DepthAndRecursion) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", {"nested deeper"});
  expect_error("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}", {"nested too deeply"});
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  expect_error(chain + " }}", {"nested too deeply"});
  std::string filters = "{{ 'a'";
  for (int i = 0; i < 10000; ++i) filters += " | trim";
  expect_error(filters + " }}", {"nested too deeply"});
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  expect_error(blocks, {"nested too deeply"});
  // Nested lists built at runtime.
  expect_error(
      "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}",
      {"nested"});
}

TEST(ChatTemplateLimits, SharedAndCyclicValues) {
  // A namespace holding itself: printing fails cleanly (and nothing leaks).
  expect_error("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}", {"nested"});
  expect_error("{% set ns = namespace() %}{% set ns.self = [ns] %}{{ ns | tojson }}", {"nested"});
  // A list sharing its halves 60 times over is small in memory but huge to print or compare.
  const std::string dag =
      "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(60) %}"
      "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}";
  expect_error(dag + "{{ ns.a }}", {"exceeds"});
  expect_error(dag + "{{ ns.a | tojson }}", {"exceeds"});
  expect_error(dag + "{{ ns.a == ns.b }}", {"step"});
  // Substring search stays linear on repetitive text.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(jinja_render("{{ ('a' * 4000000 ~ 'b') in ('a' * 8000000) }}"), "False");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
}

}  // namespace
}  // namespace ariadne
