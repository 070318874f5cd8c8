// Which instruction-set path the CPU kernels take. Each vectorised kernel exists once per level, compiled
// in its own translation unit with that level's flags (*_avx2.cpp: x86-64-v3; *_avx512.cpp: x86-64-v4 plus
// VNNI/BF16), and is chosen at run time from what the CPU reports. The scalar path is the portable
// reference every other path is tested against.
//
// Rule for the per-level files: include only <immintrin.h>, <cstdint>, <cstring>, <cmath> and plain
// declarations (no std::vector, fmt, or other header templates). An inline function instantiated in such a
// file is compiled with that level's instructions, and the linker may keep that copy for the whole
// program, which would then crash on an older CPU.
#pragma once

#include <vector>

namespace ariadne::cpu {

enum class Isa {
  Scalar,  // portable C++
  Avx2,    // AVX2 + FMA + F16C
  Avx512,  // AVX-512 F/BW/DQ/VL + VNNI
};

const char* isa_name(Isa isa);

// The best level this build has code for and this CPU can run.
Isa best_isa();

// The level the kernels use now: best_isa(), lowered by the environment variable ARIADNE_ISA
// (scalar|avx2|avx512; a level above best_isa() is refused with an Error) or by ScopedIsa.
Isa active_isa();

// Every level this machine can run, lowest first (always starts with Scalar).
std::vector<Isa> runnable_isas();

// Forces a level for the lifetime of the object (tests compare every path with the scalar one). Not
// thread-safe with respect to kernels running concurrently; levels above best_isa() fail.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa);
  ~ScopedIsa();
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  Isa previous_;
};

}  // namespace ariadne::cpu
