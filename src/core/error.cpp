#include "core/error.h"

namespace ariadne {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(fmt::format("internal error at {}:{}: check '{}' failed: {}", file, line, cond, msg));
}

}  // namespace ariadne
