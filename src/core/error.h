// Error handling for the whole library.
//
// Two kinds of failure (STYLE.md "Errors"):
//  - user / resource errors (bad file, unsupported model, out-of-range value): throw ariadne::Error with a
//    message that names the file, the field and what was expected. The CLI turns it into a message and a
//    non-zero exit.
//  - programmer bugs: ARIADNE_CHECK(cond, msg) — also throws (never aborts the host process), but the
//    message carries the source file and line so it can be told apart from a user error.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ariadne {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace ariadne

#define ARIADNE_CHECK(cond, msg)                                            \
  do {                                                                      \
    if (!(cond)) ::ariadne::check_failed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
