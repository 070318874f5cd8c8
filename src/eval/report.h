// Summaries of results files (long-context-eval.md §1 "Scoring", §6 "Output"): mean scores per task,
// length and method with 95% confidence intervals, as a markdown table, and a self-contained HTML report
// whose plots are inline SVG written here (no scripts, nothing fetched).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/runner.h"

namespace ariadne::eval {

struct Interval {
  double low = 0;
  double high = 0;
};

// Wilson score interval for k successes in n trials at 95% (z = 1.96); {0, 0} when n == 0.
Interval wilson_interval(int64_t k, int64_t n);
// Percentile bootstrap of the mean at 95% with `resamples` draws from a seeded generator (deterministic).
Interval bootstrap_interval(const std::vector<double>& values, int resamples = 1000, uint64_t seed = 0);

struct SummaryRow {
  std::string task;  // a task id, or "mean (core)" for the length score
  int64_t target_len = 0;
  std::string method;
  int64_t n = 0;
  double score = 0;                // 100 x mean
  Interval ci;                     // in the same scale (Wilson for 0/1 scores, bootstrap otherwise)
  double kv_peak_bytes = 0;        // mean over instances
  double decode_ms_per_token = 0;  // mean over instances that generated tokens
  double prefill_tokens_per_second = 0;
};

// Rows per (task, length, method), in task order of first appearance, then length, then method; followed by
// a "mean (core)" row per (length, method): the unweighted mean of the core tasks' scores present.
std::vector<SummaryRow> summarize(const std::vector<SampleResult>& results);

// Markdown: one row per (task, length), one column per method, cells "score [low, high] (n)".
std::string summary_markdown(const std::vector<SummaryRow>& rows);

// The HTML report: the summary table, accuracy vs length, accuracy vs budget (methods with budgets), KV
// memory vs length, decode time vs length, and a depth x length heatmap of niah_single_corpus where depth
// variants exist. Every plot is an inline <svg>.
std::string html_report(const std::vector<SampleResult>& results, const std::string& title);

}  // namespace ariadne::eval
