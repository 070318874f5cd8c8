#include "kernels/cpu/isa.h"

#include <atomic>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace ariadne::cpu {

namespace {

#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}
#endif

Isa detect() {
#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512vnni");
  if (avx512) return Isa::Avx512;
  if (avx2) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

Isa parse(std::string_view name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  fail("ARIADNE_ISA: unknown instruction set '{}' (expected scalar, avx2 or avx512)", name);
}

void check_runnable(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa()))
    fail("instruction set {} requested, but this CPU/build supports at most {}", isa_name(isa),
         isa_name(best_isa()));
}

Isa initial() {
  const char* env = std::getenv("ARIADNE_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const Isa isa = parse(env);
  check_runnable(isa);
  return isa;
}

std::atomic<int>& current() {
  static std::atomic<int> value{static_cast<int>(initial())};
  return value;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return "scalar";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

Isa best_isa() {
  static const Isa best = detect();
  return best;
}

Isa active_isa() {
  return static_cast<Isa>(current().load(std::memory_order_relaxed));
}

std::vector<Isa> runnable_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(best_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

ScopedIsa::ScopedIsa(Isa isa) : previous_(active_isa()) {
  check_runnable(isa);
  current().store(static_cast<int>(isa), std::memory_order_relaxed);
}

ScopedIsa::~ScopedIsa() {
  current().store(static_cast<int>(previous_), std::memory_order_relaxed);
}

}  // namespace ariadne::cpu
