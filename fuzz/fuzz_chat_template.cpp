// libFuzzer target: chat template rendering over arbitrary template text with a fixed conversation.
// Any input must render within the limits or throw ariadne::Error — never crash, hang, exhaust memory or
// throw anything else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ariadne::ChatMessage> messages = {
      {"system", "You are terse."},
      {"user", "Hi <b>there</b> \xC3\xA9"},
      {"assistant", "<think>\nhmm\n</think>\n\nHello."},
      {"tool", "{\"ok\": true}"},
      {"user", "Bye?"},
  };
  ariadne::ChatTemplateOptions options;
  options.add_generation_prompt = size % 2 == 0;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  options.now = 1726405509;
  options.extra = {{"enable_thinking", false}};
  // Smaller bounds than the defaults keep each run fast; the bounds themselves are what is tested.
  options.limits.max_output_bytes = size_t{1} << 20;
  options.limits.max_steps = 200'000;
  options.limits.max_depth = 100;
  const std::string tmpl(reinterpret_cast<const char*>(data), size);
  try {
    const std::string out = ariadne::render_chat_template(tmpl, messages, options);
    if (out.size() > options.limits.max_output_bytes) std::abort();
  } catch (const ariadne::Error&) {
  } catch (const std::exception&) {
    std::abort();  // only Error may escape (no std::out_of_range, bad_alloc, bad_variant_access ...)
  }
  return 0;
}
