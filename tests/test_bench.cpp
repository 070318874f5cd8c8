// `ariadne bench`: the tests it runs, the numbers and memory fields it reports, and clear refusals of bad
// options. Timing never decides a test: rates are only checked to be positive, finite and consistent
// with the recorded samples.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/model_source.h"
#include "runtime/bench.h"
#include "runtime/session.h"
#include "test_util.h"

namespace ariadne {
namespace {

using test::TempDir;

using BenchRun = test::CliResult;
using test::run_cli;

// The 4-layer `tiny` synthetic model (2 KV heads of 64), written once for the suite.
class BenchCliTest : public test::TinyModelTest {};

TEST_F(BenchCliTest, JsonHasOneRecordPerTestWithRatesAndMemory) {
  const BenchRun info = run_cli("info -m " + model() + " --json");
  ASSERT_EQ(info.exit_code, 0) << info.out;
  const auto expect = nlohmann::json::parse(info.out);

  const BenchRun r = run_cli("bench -m " + model() + " -p 16 -n 4 -d 0,32 -r 2 -t 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  struct Row {
    const char* name;
    int64_t n_prompt, n_gen, n_depth;
  };
  const Row rows[] = {
      {"pp16", 16, 0, 0}, {"tg4", 0, 4, 0}, {"pp16 @ d32", 16, 0, 32}, {"tg4 @ d32", 0, 4, 32}};
  const uint64_t per_token = expect["kv_bytes_per_token_f32"].get<uint64_t>();
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(rows[i].name);
    const auto& t = j[i];
    EXPECT_EQ(t["test"], rows[i].name);
    EXPECT_EQ(t["n_prompt"], rows[i].n_prompt);
    EXPECT_EQ(t["n_gen"], rows[i].n_gen);
    EXPECT_EQ(t["n_depth"], rows[i].n_depth);
    EXPECT_EQ(t["repetitions"], 2);
    EXPECT_EQ(t["n_threads"], 2);
    EXPECT_EQ(t["n_ctx"], 48);  // largest depth 32 + max(16, 4)
    EXPECT_EQ(t["model_n_params"], expect["n_params"]);
    EXPECT_EQ(t["model_size"], expect["weight_bytes"]);
    EXPECT_EQ(t["architecture"], "llama");

    // Rates: positive, finite, and the mean of n_tokens / time of the recorded samples.
    ASSERT_EQ(t["samples_ns"].size(), 2u);
    const double n_tokens = static_cast<double>(rows[i].n_prompt + rows[i].n_gen);
    double sum = 0;
    for (const auto& ns : t["samples_ns"]) {
      ASSERT_GT(ns.get<uint64_t>(), 0u);
      sum += n_tokens * 1e9 / ns.get<double>();
    }
    const double avg = t["avg_ts"].get<double>();
    EXPECT_TRUE(std::isfinite(avg));
    EXPECT_GT(avg, 0.0);
    EXPECT_NEAR(avg, sum / 2, 1e-9 * avg);
    EXPECT_NEAR(t["median_ts"].get<double>(), avg, 1e-9 * avg);  // two samples: median = mean
    EXPECT_TRUE(std::isfinite(t["stddev_ts"].get<double>()));
    EXPECT_GE(t["stddev_ts"].get<double>(), 0.0);

    // KV memory: bench and info agree on the bytes per token; the cache held at least the K/V of every
    // token cached by the end of a run, and no more than the cache of the whole context was predicted to.
    EXPECT_EQ(t["kv_bytes_per_token"].get<uint64_t>(), per_token);
    const uint64_t predicted_kv = t["predicted_bytes"]["kv"].get<uint64_t>();
    EXPECT_GE(predicted_kv, per_token * 48);
    const uint64_t cached = static_cast<uint64_t>(rows[i].n_depth) + static_cast<uint64_t>(n_tokens);
    EXPECT_GE(t["kv_bytes"].get<uint64_t>(), per_token * cached);
    EXPECT_LE(t["kv_bytes"].get<uint64_t>(), predicted_kv);

    const auto& p = t["predicted_bytes"];
    EXPECT_EQ(p["weights"], expect["weight_bytes"]);
    EXPECT_GT(p["activations"].get<uint64_t>(), 0u);
    EXPECT_EQ(p["total"].get<uint64_t>(),
              p["weights"].get<uint64_t>() + predicted_kv + p["activations"].get<uint64_t>());
    EXPECT_GT(t["peak_rss_bytes"].get<uint64_t>(), 0u);
    EXPECT_GE(t["peak_rss_bytes"].get<uint64_t>(), t["baseline_rss_bytes"].get<uint64_t>());
  }
}

TEST_F(BenchCliTest, MarkdownPrintsHeaderAndOneRowPerTest) {
  const BenchRun r = run_cli("bench -m " + model() + " -p 8 -n 2 -r 1 -t 1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> table;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '|') table.push_back(line);
  ASSERT_EQ(table.size(), 4u) << r.out;  // header, separator, pp8, tg2
  for (const char* column : {"model", "size", "params", "threads", "test", "t/s"})
    EXPECT_NE(table[0].find(column), std::string::npos) << column;
  EXPECT_NE(table[1].find("---:"), std::string::npos);
  EXPECT_NE(table[2].find(" pp8 "), std::string::npos);
  EXPECT_NE(table[3].find(" tg2 "), std::string::npos);
  for (const std::string& line : table) EXPECT_EQ(std::count(line.begin(), line.end(), '|'), 7) << line;
  EXPECT_NE(r.out.find("KV cache:"), std::string::npos);
  EXPECT_NE(r.out.find("peak resident"), std::string::npos);
}

TEST_F(BenchCliTest, BadValuesExitWithClearMessages) {
  struct Case {
    std::string args;
    std::string message;
  };
  const std::string m = "-m " + model();
  const Case cases[] = {
      {m + " -p -1", "-p: '-1' is not a token count"},
      {m + " -d x", "-d: 'x' is not a token count"},
      {m + " -n 4,", "-n: '' is not a token count"},
      {m + " -r 0", "-r: '0' is not a valid value"},
      {m + " -t 0", "-t: '0' is not a valid value"},
      {m + " -b 0", "-b: '0' is not a valid value"},
      {m + " -p 0 -n 0", "nothing to benchmark"},
      {"-m " + dir_->file("missing.gguf"), "missing.gguf"},
      {"-p 16", "bench needs -m MODEL"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const BenchRun r = run_cli("bench " + c.args);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("| model"), std::string::npos) << "refused only after starting: " << r.out;
  }
}

TEST_F(BenchCliTest, RefusesAContextThatCannotFitBeforeAnyWork) {
  if (available_memory_bytes() == 0) GTEST_SKIP() << "MemAvailable is unknown here, so nothing is refused";
  // 2e9 tokens of 4 KiB of KV each: terabytes, more than any machine has.
  const BenchRun r = run_cli("bench -m " + model() + " -d 2000000000 -p 16 -n 0 -r 1");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("lower -d, -p or -n"), std::string::npos) << r.out;
}

TEST_F(BenchCliTest, LibraryRunsThePlanAndLeavesTheSessionEmpty) {
  BenchOptions o;
  o.n_prompt = {8};
  o.n_gen = {0, 3};
  o.n_depth = {5};
  o.repetitions = 2;
  o.n_batch = 2;  // depth 5 filled in chunks 2, 2, 1
  SessionOptions so;
  so.n_ctx = bench_context(o);
  ASSERT_EQ(so.n_ctx, 13);
  Session session(open_model(model()), so);
  std::vector<std::string> seen;
  int depth_reports = 0;
  bool warmup = false;
  const auto results = run_bench(
      session, o, [&](const BenchResult& r) { seen.push_back(r.test.name()); },
      [&](const BenchProgress& p) {
        depth_reports += p.phase == BenchProgress::Phase::Depth;
        warmup |= p.phase == BenchProgress::Phase::Warmup;
      });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(seen, (std::vector<std::string>{"pp8 @ d5", "tg3 @ d5"}));
  // Filled once (3 chunks); every later run, and the second test at the same depth, truncates back to it.
  EXPECT_EQ(depth_reports, 3);
  EXPECT_TRUE(warmup);
  for (const BenchResult& r : results) {
    EXPECT_EQ(r.samples_ns.size(), 2u);
    EXPECT_GT(r.rate.mean, 0.0);
    EXPECT_GT(r.kv_bytes, 0u);
  }
  EXPECT_EQ(session.n_past(), 0);

  // A session smaller than the plan needs is refused, not overrun.
  so.n_ctx = 12;
  Session small(open_model(model()), so);
  EXPECT_THROW(run_bench(small, o), Error);
}

// A deeper test goes on from the depth held instead of filling again from the start: -d 4,10 with -b 2
// fills 2 + 2 chunks, then 3 more (4 -> 10), not 2 + 5.
TEST_F(BenchCliTest, DeeperTestsContinueFromTheDepthHeld) {
  BenchOptions o;
  o.n_prompt = {0};
  o.n_gen = {2};
  o.n_depth = {4, 10};
  o.repetitions = 2;
  o.n_batch = 2;
  o.warmup = false;
  SessionOptions so;
  so.n_ctx = bench_context(o);
  Session session(open_model(model()), so);
  std::vector<int64_t> depth_starts;
  const auto results = run_bench(session, o, nullptr, [&](const BenchProgress& p) {
    if (p.phase == BenchProgress::Phase::Depth) depth_starts.push_back(p.tokens_done);
  });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(depth_starts, (std::vector<int64_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(session.n_past(), 0);
}

// Variants (bench's --attn dense,hata) share each filled depth: the session is switched before the first
// test of each variant, and the depth is filled once per depth, not once per variant.
TEST_F(BenchCliTest, VariantsShareTheFilledDepth) {
  BenchOptions o;
  o.n_prompt = {0};
  o.n_gen = {2};
  o.n_depth = {4, 10};
  o.repetitions = 2;
  o.n_batch = 2;
  o.warmup = false;
  o.n_variants = 2;
  SessionOptions so;
  so.n_ctx = bench_context(o);
  Session session(open_model(model()), so);
  std::vector<int64_t> depth_starts;
  std::vector<int> switches;
  std::vector<std::pair<int64_t, int>> order;
  const auto results = run_bench(
      session, o, [&](const BenchResult& r) { order.emplace_back(r.test.n_depth, r.test.variant); },
      [&](const BenchProgress& p) {
        if (p.phase == BenchProgress::Phase::Depth) depth_starts.push_back(p.tokens_done);
      },
      [&](int v) { switches.push_back(v); });
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(order, (std::vector<std::pair<int64_t, int>>{{4, 0}, {4, 1}, {10, 0}, {10, 1}}));
  EXPECT_EQ(switches, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(depth_starts, (std::vector<int64_t>{0, 2, 4, 6, 8}));  // as with one variant
  // More than one variant needs a way to switch.
  EXPECT_THROW(run_bench(session, o), Error);
}

TEST_F(BenchCliTest, AttentionMethodsTimedSideBySide) {
  const BenchRun r = run_cli("bench -m " + model() +
                             " -p 0 -n 3 -d 40 -r 1 -t 2 --attn dense,hash-random --topk 1/4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["attn"], "dense");
  EXPECT_FALSE(j[0].contains("attention"));
  EXPECT_EQ(j[1]["attn"], "hash-random");
  ASSERT_TRUE(j[1].contains("attention"));
  // The tiny model's layers 2 and 3 are hashed: each step reads a quarter of their entries.
  EXPECT_GT(j[1]["attention"]["sparse_heads"].get<int64_t>(), 0);
  EXPECT_LT(j[1]["attention"]["entries_read"].get<int64_t>(),
            j[1]["attention"]["entries_held"].get<int64_t>());
  for (const auto& t : j) EXPECT_EQ(t["test"], "tg3 @ d40");

  const BenchRun table =
      run_cli("bench -m " + model() + " -p 0 -n 2 -d 8 -r 1 --attn dense,quest --topk 1/2");
  ASSERT_EQ(table.exit_code, 0) << table.out;
  EXPECT_NE(table.out.find("tg2 @ d8 [dense]"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("tg2 @ d8 [quest]"), std::string::npos) << table.out;

  // One fill, the random hash at two code lengths.
  const BenchRun bits = run_cli("bench -m " + model() +
                                " -p 0 -n 2 -d 40 -r 1 --attn hash-random,hash-random@64 --topk 1/4 --json");
  ASSERT_EQ(bits.exit_code, 0) << bits.out;
  const auto jb = nlohmann::json::parse(bits.out);
  ASSERT_EQ(jb.size(), 2u);
  EXPECT_EQ(jb[1]["attn"], "hash-random@64");
  EXPECT_GT(jb[1]["attention"]["sparse_heads"].get<int64_t>(), 0);

  for (const char* bad : {"dense,dense", "dense,", "dense,nope", "dense,quest@64", "hash-random@6x",
                          "hash-random@96", "hash-random@"}) {
    const BenchRun b = run_cli("bench -m " + model() + " -p 0 -n 2 -r 1 --attn " + bad);
    EXPECT_EQ(b.exit_code, 1) << bad << ": " << b.out;
    EXPECT_NE(b.out.find("--attn"), std::string::npos) << b.out;
  }
}

TEST(BenchCliStats, MeanSampleStddevAndMedian) {
  const std::vector<double> four{4, 1, 3, 2};
  const SampleStats s = sample_stats(four);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(5.0 / 3.0));  // squared deviations 2.25+0.25+0.25+2.25 over n-1
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  const std::vector<double> three{10, 30, 11};
  EXPECT_DOUBLE_EQ(sample_stats(three).median, 11);
  const std::vector<double> one{7};
  EXPECT_DOUBLE_EQ(sample_stats(one).stddev, 0);

  const std::vector<uint64_t> ns{1000000000, 500000000, 0};
  const std::vector<double> rates = tokens_per_second(ns, 10);
  EXPECT_DOUBLE_EQ(rates[0], 10);
  EXPECT_DOUBLE_EQ(rates[1], 20);
  EXPECT_TRUE(std::isfinite(rates[2]));  // a 0 ns sample counts as 1 ns
}

TEST(BenchCliPlan, LlamaBenchNamesOrderAndContext) {
  BenchOptions o;
  o.n_prompt = {512, 0};
  o.n_gen = {128};
  o.n_depth = {0, 4096};
  std::vector<std::string> names;
  for (const BenchTest& t : bench_plan(o)) names.push_back(t.name());
  EXPECT_EQ(names, (std::vector<std::string>{"pp512", "tg128", "pp512 @ d4096", "tg128 @ d4096"}));
  EXPECT_EQ(bench_context(o), 4096 + 512);
  o.n_depth = {-1};
  EXPECT_THROW(validate_bench_options(o), Error);
}

}  // namespace
}  // namespace ariadne
