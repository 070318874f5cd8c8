// `ariadne run --xl3m`: answer from the parts of a long input most relevant to its question
// (../shared/specs/xl3m.md), through the public API (ariadne_xl3m_*).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "generation.h"

namespace ariadne::cli {

struct Xl3mFlags {
  bool enabled = false;  // --xl3m
  std::string question;  // --question
  int64_t window = 0;    // --xl3m-window (C; 0: the trained context)
  int64_t segment = 0;   // --xl3m-segment (0: min(512, C/8))
  int64_t overlap = -1;  // --xl3m-overlap (-1: S/8)
  int64_t top_k = 0;     // --xl3m-top-k
  std::string score = "last-entropy";
  std::string separator = "\n";
  bool no_snap = false;
  int64_t max_lead = 2;               // --xl3m-lead
  std::vector<CLI::Option*> options;  // every flag above except --xl3m: they need it
};

void add_xl3m_flags(CLI::App* cmd, Xl3mFlags& flags);

// Fails when an --xl3m-* flag or --question is given without --xl3m, or a value is out of range.
void check_xl3m_flags(const Xl3mFlags& flags);

// Where the input comes from: one of them is set.
struct Xl3mInputSource {
  const std::string* text = nullptr;          // -p
  const std::string* file = nullptr;          // -f: read and encoded block by block
  const std::vector<int32_t>* ids = nullptr;  // --ids / --ids-file
};

int run_xl3m(const GenerationFlags& gen, const CheckedGeneration& checked, const Xl3mFlags& flags,
             const Xl3mInputSource& input);

}  // namespace ariadne::cli
