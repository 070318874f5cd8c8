#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace ariadne::cli {

ProgressBar::ProgressBar(std::string label, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(1)) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(uint64_t done, uint64_t total) {
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = rate > 0 && total > done ? (total - done) / rate : 0.0;
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * static_cast<double>(done) / total) : 0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '-');
  std::fprintf(stderr, "\r%s [%s] %llu/%llu %s  %.1f %s/s  ETA %.0fs   ", label_.c_str(), bar.c_str(),
               static_cast<unsigned long long>(done), static_cast<unsigned long long>(total), unit_.c_str(),
               rate, unit_.c_str(), eta);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (enabled_ && !finished_) std::fprintf(stderr, "\n");
  finished_ = true;
}

}  // namespace ariadne::cli
