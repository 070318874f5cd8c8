#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "eval/rng.h"

namespace ariadne::eval {

Interval wilson_interval(int64_t k, int64_t n) {
  if (n <= 0) return {};
  const double z = 1.96;
  const double p = static_cast<double>(k) / static_cast<double>(n);
  const double nn = static_cast<double>(n);
  const double denom = 1 + z * z / nn;
  const double center = (p + z * z / (2 * nn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / denom;
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

Interval bootstrap_interval(const std::vector<double>& values, int resamples, uint64_t seed) {
  if (values.empty()) return {};
  Rng rng(derive_seed(seed, "bootstrap"));
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double sum = 0;
    for (size_t i = 0; i < values.size(); ++i) sum += values[rng.below(values.size())];
    m = sum / static_cast<double>(values.size());
  }
  std::sort(means.begin(), means.end());
  auto at = [&](double q) {
    const auto i = static_cast<size_t>(
        std::clamp(q * static_cast<double>(resamples - 1), 0.0, static_cast<double>(resamples - 1)));
    return means[i];
  };
  return {at(0.025), at(0.975)};
}

namespace {

bool is_core(const std::string& task) {
  const auto& core = core_task_ids();
  return std::find(core.begin(), core.end(), task) != core.end();
}

template <typename T>
void add_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

std::string length_label(int64_t n) {
  if (n % 1024 == 0) return fmt::format("{}K", n / 1024);
  return std::to_string(n);
}

std::string escape_html(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::vector<SummaryRow> summarize(const std::vector<SampleResult>& results) {
  std::vector<std::string> tasks, methods;
  std::vector<int64_t> lengths;
  struct Acc {
    std::vector<double> scores;
    double kv = 0, ms = 0, tps = 0;
    int64_t n_ms = 0, n_tps = 0;
  };
  std::map<std::tuple<std::string, int64_t, std::string>, Acc> groups;
  for (const SampleResult& r : results) {
    add_unique(tasks, r.task);
    add_unique(methods, r.method);
    add_unique(lengths, r.target_len);
    Acc& a = groups[{r.task, r.target_len, r.method}];
    a.scores.push_back(r.score);
    a.kv += static_cast<double>(r.kv_peak_bytes);
    if (r.n_generated > 0) {
      a.ms += 1000.0 * r.decode_seconds / static_cast<double>(r.n_generated);
      ++a.n_ms;
    }
    if (r.prefill_seconds > 0) {
      a.tps += static_cast<double>(r.n_prompt) / r.prefill_seconds;
      ++a.n_tps;
    }
  }
  std::sort(lengths.begin(), lengths.end());
  std::vector<SummaryRow> rows;
  for (const std::string& t : tasks) {
    for (int64_t len : lengths) {
      for (const std::string& m : methods) {
        auto it = groups.find({t, len, m});
        if (it == groups.end()) continue;
        const Acc& a = it->second;
        SummaryRow row;
        row.task = t;
        row.target_len = len;
        row.method = m;
        row.n = static_cast<int64_t>(a.scores.size());
        double sum = 0;
        int64_t ones = 0;
        bool binary = true;
        for (double s : a.scores) {
          sum += s;
          ones += s == 1.0;
          binary = binary && (s == 0.0 || s == 1.0);
        }
        row.score = 100.0 * sum / static_cast<double>(row.n);
        const Interval ci = binary ? wilson_interval(ones, row.n) : bootstrap_interval(a.scores);
        row.ci = {100.0 * ci.low, 100.0 * ci.high};
        row.kv_peak_bytes = a.kv / static_cast<double>(row.n);
        row.decode_ms_per_token = a.n_ms > 0 ? a.ms / static_cast<double>(a.n_ms) : 0.0;
        row.prefill_tokens_per_second = a.n_tps > 0 ? a.tps / static_cast<double>(a.n_tps) : 0.0;
        rows.push_back(row);
      }
    }
  }
  // Length score: the unweighted mean of the core tasks present (spec §1), with no interval of its own.
  const size_t n_task_rows = rows.size();
  for (int64_t len : lengths) {
    for (const std::string& m : methods) {
      SummaryRow mean;
      mean.task = "mean (core)";
      mean.target_len = len;
      mean.method = m;
      int n_tasks = 0;
      for (size_t i = 0; i < n_task_rows; ++i) {
        const SummaryRow& r = rows[i];
        if (r.target_len != len || r.method != m || !is_core(r.task)) continue;
        mean.score += r.score;
        mean.n += r.n;
        mean.kv_peak_bytes += r.kv_peak_bytes;
        mean.decode_ms_per_token += r.decode_ms_per_token;
        mean.prefill_tokens_per_second += r.prefill_tokens_per_second;
        ++n_tasks;
      }
      if (n_tasks == 0) continue;
      mean.score /= n_tasks;
      mean.kv_peak_bytes /= n_tasks;
      mean.decode_ms_per_token /= n_tasks;
      mean.prefill_tokens_per_second /= n_tasks;
      mean.ci = {mean.score, mean.score};
      rows.push_back(mean);
    }
  }
  return rows;
}

std::string summary_markdown(const std::vector<SummaryRow>& rows) {
  std::vector<std::string> methods;
  std::vector<std::pair<std::string, int64_t>> keys;
  std::map<std::tuple<std::string, int64_t, std::string>, const SummaryRow*> cell;
  for (const SummaryRow& r : rows) {
    add_unique(methods, r.method);
    add_unique(keys, {r.task, r.target_len});
    cell[{r.task, r.target_len, r.method}] = &r;
  }
  std::string out = "| task | length |";
  for (const std::string& m : methods) out += " " + m + " |";
  out += "\n| --- | ---: |";
  for (size_t i = 0; i < methods.size(); ++i) out += " ---: |";
  out += "\n";
  for (const auto& [task, len] : keys) {
    out += fmt::format("| {} | {} |", task, length_label(len));
    for (const std::string& m : methods) {
      auto it = cell.find({task, len, m});
      if (it == cell.end()) {
        out += " |";
      } else if (task == "mean (core)") {
        out += fmt::format(" **{:.1f}** |", it->second->score);
      } else {
        const SummaryRow& r = *it->second;
        out += fmt::format(" {:.1f} [{:.1f}, {:.1f}] (n={}) |", r.score, r.ci.low, r.ci.high, r.n);
      }
    }
    out += "\n";
  }
  return out;
}

// ---- SVG plots ---------------------------------------------------------------------------------------

namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), sorted by x
};

// "Nice" tick step for a range split into about n parts.
double nice_step(double range, int n) {
  if (range <= 0) return 1;
  const double raw = range / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string fmt_num(double v) {
  if (std::fabs(v) >= 100 || v == std::floor(v)) return fmt::format("{:.0f}", v);
  if (std::fabs(v) >= 1) return fmt::format("{:.1f}", v);
  return fmt::format("{:.3g}", v);
}

// A line chart. log2_x: x on a log2 scale (lengths); x ticks at the data's x values with x_label(x).
std::string line_chart(const std::string& title, const std::string& x_title, const std::string& y_title,
                       const std::vector<Series>& series, bool log2_x,
                       std::optional<std::pair<double, double>> y_fixed,
                       const std::function<std::string(double)>& x_label) {
  const double W = 640, H = 360, L = 70, R = 170, T = 40, B = 50;
  const double pw = W - L - R, ph = H - T - B;
  std::set<double> xs;
  double y_lo = 0, y_hi = 0;
  bool any = false;
  for (const Series& s : series)
    for (const auto& [x, y] : s.points) {
      xs.insert(x);
      y_lo = any ? std::min(y_lo, y) : y;
      y_hi = any ? std::max(y_hi, y) : y;
      any = true;
    }
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{3}</text>\n",
      W, H, L, escape_html(title));
  if (!any) return svg + fmt::format("<text x=\"{}\" y=\"{}\">no data</text>\n</svg>\n", L, T + ph / 2);
  if (y_fixed) {
    y_lo = y_fixed->first;
    y_hi = y_fixed->second;
  } else {
    y_lo = std::min(0.0, y_lo);
    if (y_hi <= y_lo) y_hi = y_lo + 1;
    y_hi += (y_hi - y_lo) * 0.05;
  }
  auto fx = [&](double x) { return log2_x ? std::log2(std::max(x, 1e-12)) : x; };
  const double x0 = fx(*xs.begin()), x1 = fx(*xs.rbegin());
  auto px = [&](double x) { return x1 > x0 ? L + (fx(x) - x0) / (x1 - x0) * pw : L + pw / 2; };
  auto py = [&](double y) { return T + ph - (y - y_lo) / (y_hi - y_lo) * ph; };
  // Axes, grid, ticks.
  svg += fmt::format("<g stroke=\"#ccc\">\n");
  const double step = nice_step(y_hi - y_lo, 5);
  std::string labels;
  for (double y = std::ceil(y_lo / step) * step; y <= y_hi + 1e-9; y += step) {
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", L, py(y), L + pw,
                       py(y));
    labels += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", L - 6, py(y) + 4,
                          fmt_num(y));
  }
  for (double x : xs)
    labels += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", px(x),
                          T + ph + 18, escape_html(x_label(x)));
  svg += "</g>\n" + labels;
  svg += fmt::format(
      "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n"
      "<line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\" stroke=\"black\"/>\n",
      L, T, T + ph, L + pw);
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", L + pw / 2, H - 10,
                     escape_html(x_title));
  svg +=
      fmt::format("<text transform=\"translate(16 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                  T + ph / 2, escape_html(y_title));
  // Series with a legend.
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % std::size(kColors)];
    std::string pts;
    for (const auto& [x, y] : series[i].points) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg +=
        fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, pts);
    for (const auto& [x, y] : series[i].points)
      svg += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}: {}</title></circle>\n", px(x),
          py(y), color, escape_html(series[i].name), fmt_num(y));
    const double ly = T + 10 + 18.0 * static_cast<double>(i);
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
        "stroke-width=\"2\"/>"
        "<text x=\"{4:.1f}\" y=\"{5:.1f}\">{6}</text>\n",
        L + pw + 12, ly, L + pw + 32, color, L + pw + 38, ly + 4, escape_html(series[i].name));
  }
  return svg + "</svg>\n";
}

// Depth (rows) x length (columns) heatmap of scores 0-100.
std::string heatmap(const std::string& title, const std::vector<double>& depths,
                    const std::vector<int64_t>& lengths,
                    const std::map<std::pair<double, int64_t>, double>& score) {
  const double cw = 64, ch = 24, L = 80, T = 40;
  // Wide enough for the title too (about 9 px per character at 15 px).
  const double W = std::max(L + cw * static_cast<double>(lengths.size()) + 20,
                            20 + 9.0 * static_cast<double>(title.size()));
  const double H = T + ch * static_cast<double>(depths.size()) + 50;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{2}</text>\n",
      W, H, escape_html(title));
  for (size_t i = 0; i < depths.size(); ++i) {
    const double y = T + ch * static_cast<double>(i);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}%</text>\n", L - 6, y + 16,
                       fmt_num(depths[i]));
    for (size_t j = 0; j < lengths.size(); ++j) {
      const double x = L + cw * static_cast<double>(j);
      auto it = score.find({depths[i], lengths[j]});
      if (it == score.end()) continue;
      // Red (0) through yellow to green (100).
      const double s = std::clamp(it->second / 100.0, 0.0, 1.0);
      const int red = static_cast<int>(s < 0.5 ? 215 : 215 - (s - 0.5) * 2 * 175);
      const int green = static_cast<int>(s < 0.5 ? 60 + s * 2 * 150 : 210 - (s - 0.5) * 2 * 40);
      svg += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},70)\" "
          "stroke=\"white\"/>"
          "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.0f}</text>\n",
          x, y, cw, ch, red, green, x + cw / 2, y + 16, it->second);
    }
  }
  for (size_t j = 0; j < lengths.size(); ++j)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                       L + cw * (static_cast<double>(j) + 0.5),
                       T + ch * static_cast<double>(depths.size()) + 18, length_label(lengths[j]));
  svg += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">length (tokens); rows: needle depth</text>\n",
      L + cw * static_cast<double>(lengths.size()) / 2, H - 8);
  return svg + "</svg>\n";
}

}  // namespace

std::string html_report(const std::vector<SampleResult>& results, const std::string& title) {
  const std::vector<SummaryRow> rows = summarize(results);
  std::vector<std::string> methods;
  for (const SampleResult& r : results) add_unique(methods, r.method);
  auto length_x = [](double x) { return length_label(static_cast<int64_t>(x)); };

  // Per (method, length): the length score (mean of core tasks) or, without core tasks, of all tasks.
  std::map<std::string, Series> acc, kv, speed;
  bool have_core = false;
  for (const SummaryRow& r : rows) have_core = have_core || r.task == "mean (core)";
  std::map<std::pair<std::string, int64_t>, std::vector<const SummaryRow*>> by_ml;
  for (const SummaryRow& r : rows)
    if (have_core ? r.task == "mean (core)" : true) by_ml[{r.method, r.target_len}].push_back(&r);
  std::map<std::pair<std::string, int64_t>, double> length_score;
  for (const auto& [key, list] : by_ml) {
    double s = 0, k = 0, ms = 0;
    for (const SummaryRow* r : list) {
      s += r->score;
      k += r->kv_peak_bytes;
      ms += r->decode_ms_per_token;
    }
    const double n = static_cast<double>(list.size());
    const auto x = static_cast<double>(key.second);
    length_score[key] = s / n;
    acc[key.first].name = key.first;
    acc[key.first].points.emplace_back(x, s / n);
    kv[key.first].name = key.first;
    kv[key.first].points.emplace_back(x, k / n / 1048576.0);
    speed[key.first].name = key.first;
    speed[key.first].points.emplace_back(x, ms / n);
  }
  auto in_order = [&](const std::map<std::string, Series>& m) {
    std::vector<Series> v;
    for (const std::string& name : methods)
      if (m.count(name) != 0) v.push_back(m.at(name));
    return v;
  };

  // Accuracy vs budget: one series per (method name, length) over the budgets given.
  std::map<std::string, Series> budget;
  std::vector<std::string> budget_order;
  for (const auto& [key, score] : length_score) {
    MethodSpec spec;
    try {
      spec = parse_method_spec(key.first);
    } catch (const std::exception&) {
      continue;
    }
    if (!spec.budget_value) continue;
    const std::string name = spec.name + " @ " + length_label(key.second);
    add_unique(budget_order, name);
    budget[name].name = name;
    budget[name].points.emplace_back(*spec.budget_value, score);
  }
  std::vector<Series> budget_series;
  for (const std::string& name : budget_order) {
    Series s = budget[name];
    std::sort(s.points.begin(), s.points.end());
    budget_series.push_back(s);
  }

  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + escape_html(title) +
      "</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1100px}"
      "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;padding:3px 8px;"
      "text-align:right}td:first-child,th:first-child{text-align:left}"
      "figure{display:inline-block;margin:8px}</style></head><body>\n";
  html += "<h1>" + escape_html(title) + "</h1>\n";
  html += fmt::format(
      "<p>{} results, {} methods. Scores are 100 &times; the mean over instances with 95% "
      "confidence intervals (Wilson for 0/1 scores, bootstrap otherwise); "
      "&ldquo;mean (core)&rdquo; is the length score.</p>\n",
      results.size(), methods.size());
  // The summary table, pivoted like the markdown one.
  std::vector<std::pair<std::string, int64_t>> keys;
  std::map<std::tuple<std::string, int64_t, std::string>, const SummaryRow*> cell;
  for (const SummaryRow& r : rows) {
    add_unique(keys, {r.task, r.target_len});
    cell[{r.task, r.target_len, r.method}] = &r;
  }
  html += "<h2>Scores</h2>\n<table id=\"summary\"><tr><th>task</th><th>length</th>";
  for (const std::string& m : methods) html += "<th>" + escape_html(m) + "</th>";
  html += "</tr>\n";
  for (const auto& [task, len] : keys) {
    html += "<tr><td>" + escape_html(task) + "</td><td>" + length_label(len) + "</td>";
    for (const std::string& m : methods) {
      auto it = cell.find({task, len, m});
      if (it == cell.end()) {
        html += "<td></td>";
      } else if (task == "mean (core)") {
        html += fmt::format("<td><b>{:.1f}</b></td>", it->second->score);
      } else {
        const SummaryRow& r = *it->second;
        html += fmt::format("<td>{:.1f} <small>[{:.1f}, {:.1f}] n={}</small></td>", r.score, r.ci.low,
                            r.ci.high, r.n);
      }
    }
    html += "</tr>\n";
  }
  html += "</table>\n<h2>Plots</h2>\n";
  auto figure = [&](const std::string& svg) { html += "<figure>\n" + svg + "</figure>\n"; };
  figure(
      line_chart(have_core ? "Accuracy vs length (mean of core tasks)" : "Accuracy vs length (mean of tasks)",
                 "length (tokens)", "score", in_order(acc), true, std::make_pair(0.0, 100.0), length_x));
  if (!budget_series.empty()) {
    figure(line_chart("Accuracy vs budget", "budget", "score", budget_series, false,
                      std::make_pair(0.0, 100.0), [](double x) { return fmt_num(x); }));
  } else {
    html += "<p>Accuracy vs budget: no method with a budget in these results.</p>\n";
  }
  figure(line_chart("KV memory vs length", "length (tokens)", "peak KV cache (MiB)", in_order(kv), true,
                    std::nullopt, length_x));
  figure(line_chart("Decode time vs length", "length (tokens)", "decode (ms/token)", in_order(speed), true,
                    std::nullopt, length_x));
  // Depth x length heatmaps for niah_single_corpus where instances have depth variants.
  for (const std::string& m : methods) {
    std::map<std::pair<double, int64_t>, std::pair<double, int>> sums;
    for (const SampleResult& r : results) {
      if (r.task != "niah_single_corpus" || r.method != m || !r.variant.starts_with("depth=")) continue;
      auto& [sum, n] = sums[{std::strtod(r.variant.c_str() + 6, nullptr), r.target_len}];
      sum += 100.0 * r.score;
      ++n;
    }
    if (sums.empty()) continue;
    std::vector<double> depths;
    std::vector<int64_t> lengths;
    std::map<std::pair<double, int64_t>, double> mean;
    for (const auto& [key, v] : sums) {
      add_unique(depths, key.first);
      add_unique(lengths, key.second);
      mean[key] = v.first / v.second;
    }
    std::sort(depths.begin(), depths.end());
    std::sort(lengths.begin(), lengths.end());
    figure(heatmap("niah_single_corpus depth x length: " + m, depths, lengths, mean));
  }
  html += "</body></html>\n";
  return html;
}

}  // namespace ariadne::eval
