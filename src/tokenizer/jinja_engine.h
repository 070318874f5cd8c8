// A Jinja2 subset interpreter, enough for the chat templates that ship with Llama-family models
// (tokenizer.chat_template) and rendered the way Hugging Face transformers renders them: trim_blocks and
// lstrip_blocks on, the loopcontrols extension ({% break %}, {% continue %}), Python semantics for values
// (str(), ==, truthiness, slicing) and HF's tojson (json.dumps with ensure_ascii=False).
//
// Templates are untrusted input (they come from model files). Every render is bounded: output size, total
// work ("steps", which also pay for the bytes of every string built), nesting depth of the template and of
// values, and macro recursion. Exceeding a bound, a syntax error or a runtime error (undefined.attr,
// 'a' + 1, raise_exception(...)) throws ariadne::Error naming the line of the template.
//
// Supported: {{ }}, {% if/elif/else %}, {% for x in xs [if cond] %} with else/loop.*/break/continue,
// {% set %} (names, tuples, namespace attributes, {% set x %}...{% endset %}), {% macro %}, {% raw %},
// {% generation %} (HF's no-op marker), comments, whitespace control (- and +); literals, lists, dicts,
// attribute/subscript/slice access, calls with keyword arguments, filters, tests, the Python string/dict
// methods templates use. Not supported: extends/include/import/block, call blocks, filter blocks,
// recursive loops, printf-style 'fmt' % args.
//
// Known differences from Jinja2 (checked by rendering fuzzer-found templates with both): integers are
// 64-bit (overflow is an Error, not a big int); dict keys are strings; upper/lower map Latin, Greek and
// Cyrillic only, one code point to one; select/map/... return lists where Jinja returns generators;
// some Jinja runtime errors are accepted here and vice versa for nonsensical input.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ariadne::jinja {

struct Limits {
  size_t max_output_bytes = size_t{16} << 20;  // the rendered text, and any single string built on the way
  uint64_t max_steps = 5'000'000;              // evaluation steps; each 32 bytes of string built costs one
  int max_depth = 200;                         // nesting of template syntax, of values and of macro calls
  size_t max_template_bytes = size_t{4} << 20;
};

class Value;
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using NativeFunction = std::function<Value(const CallArgs&)>;

// A Jinja value with Python semantics. Strings, lists and dicts are immutable and shared; a namespace()
// is the one mutable object (its attributes are assigned with {% set ns.x = ... %}).
class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Function };
  struct ListData;
  struct DictData;
  struct FunctionData;

  Value() = default;                         // undefined
  static Value undefined(std::string hint);  // hint names what was missing, for error messages
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value list(std::vector<Value> items);
  static Value tuple(std::vector<Value> items);
  // Keys are strings (non-string keys in template dict literals are converted with str()); order kept.
  static Value dict(std::vector<std::pair<std::string, Value>> items);
  static Value function(std::string name, NativeFunction fn);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_function() const { return kind() == Kind::Function; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  const std::string& as_string() const { return *std::get<StrPtr>(v_); }
  const std::vector<Value>& as_list() const;
  const std::vector<std::pair<std::string, Value>>& as_dict() const;
  const Value* find(std::string_view key) const;  // dict entry or null
  bool is_namespace() const;
  int depth() const;  // nesting depth of lists/dicts (1 for a flat container, 0 for scalars)
  const std::string& undefined_hint() const;  // empty unless undefined with a hint

  const std::shared_ptr<ListData>& list_data() const { return std::get<ListPtr>(v_); }
  const std::shared_ptr<DictData>& dict_data() const { return std::get<DictPtr>(v_); }
  const std::shared_ptr<FunctionData>& function_data() const { return std::get<FnPtr>(v_); }
  static Value from_dict_data(std::shared_ptr<DictData> d);
  static Value from_function_data(std::shared_ptr<FunctionData> f);

 private:
  struct UndefinedTag {
    std::shared_ptr<const std::string> hint;
  };
  struct NoneTag {};
  using StrPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<ListData>;
  using DictPtr = std::shared_ptr<DictData>;
  using FnPtr = std::shared_ptr<FunctionData>;
  // Alternatives in Kind order; 24 bytes, so big lists stay small.
  std::variant<UndefinedTag, NoneTag, bool, int64_t, double, StrPtr, ListPtr, DictPtr, FnPtr> v_;
};

struct Value::ListData {
  std::vector<Value> items;
  int depth = 1;
  bool is_tuple = false;  // prints as (a, b) and is never equal to a list, as in Python
};

struct Value::DictData {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  int depth = 1;
};

struct Stmt;  // a parsed statement (jinja_engine.cpp)

struct Value::FunctionData {
  std::string name;
  NativeFunction native;        // a function provided by the caller or a builtin, or
  const Stmt* macro = nullptr;  // a {% macro %} of the template being rendered
};

// A parsed template: parse once, render many times (renders are independent and may run concurrently).
class Template {
 public:
  // Parses source; throws Error ("chat template: line N: ...") on a syntax error or an unsupported tag.
  explicit Template(std::string_view source, const Limits& limits = {});
  ~Template();
  Template(const Template&);  // copies share the (immutable) parsed tree
  Template& operator=(const Template&);
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given global variables (name -> value).
  std::string render(const std::vector<std::pair<std::string, Value>>& globals,
                     const Limits& limits = {}) const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
};

// Python's str() of a value (what {{ value }} prints) and HF's tojson (json.dumps, ensure_ascii=False).
// Both throw Error past max_bytes of output (values may share sublists, so small values can print big).
std::string to_python_string(const Value& v, size_t max_bytes = size_t{16} << 20);
// indent < 0: one line with ", " / ": " separators; else Python's indented layout.
std::string to_json(const Value& v, int indent = -1, size_t max_bytes = size_t{16} << 20);

}  // namespace ariadne::jinja
