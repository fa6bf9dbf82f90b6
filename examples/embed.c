// A C program that embeds tierjit: it loads examples/kernel.c, calls
// weighted_sum through the address tierjit gave it until the function
// runs optimized code, and prints the per-call time of the first and last
// rounds of calls. The address never changes; the calls get faster.
//
//   cargo build --release
//   clang-19 examples/embed.c -Iinclude -Ltarget/release -ltierjit \
//     -Wl,-rpath,$PWD/target/release -o embed
//   ./embed examples/kernel.c
//
// Exit status: 0 once weighted_sum was optimized and every call was right.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tierjit.h"

#define N 1000
#define CALLS_PER_ROUND 100
#define EXTRA_ROUNDS 20

typedef long (*weighted_sum_fn)(const long *, long);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int fail(const char *what, char *error) {
  fprintf(stderr, "embed: %s: %s\n", what, error ? error : "(no message)");
  tierjit_string_free(error);
  return 1;
}

/* Whether the stats say weighted_sum runs optimized code. */
static int optimized(tierjit_module *module) {
  char *stats = tierjit_module_stats_json(module);
  int yes = stats && strstr(stats, "\"name\":\"weighted_sum\",\"tier\":\"Optimized\"") != NULL;
  tierjit_string_free(stats);
  return yes;
}

/* Nanoseconds per call over one round; 0 if a result was wrong. */
static double round_ns(weighted_sum_fn f, const long *values, long want) {
  double start = now();
  for (int i = 0; i < CALLS_PER_ROUND; i++)
    if (f(values, N) != want) return 0;
  return (now() - start) * 1e9 / CALLS_PER_ROUND;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "examples/kernel.c";
  char *error = NULL;
  tierjit_engine *engine = tierjit_engine_new("(thresholds: (calls: 200))", &error);
  if (!engine) return fail("engine", error);
  tierjit_module *module = tierjit_module_load(engine, path, &error);
  if (!module) return fail(path, error);
  void *address = tierjit_module_function(module, "weighted_sum", &error);
  if (!address) return fail("weighted_sum", error);
  weighted_sum_fn f = (weighted_sum_fn)address;

  static long values[N];
  long want = 0;
  for (long i = 0; i < N; i++) {
    values[i] = i * 3 - 700;
    want += values[i] * ((i % 7) + 1);
  }

  double first = round_ns(f, values, want), last = first;
  int rounds = 1, extra = 0;
  double deadline = now() + 60;
  while (extra < EXTRA_ROUNDS && now() < deadline) {
    last = round_ns(f, values, want);
    rounds++;
    if (last == 0) return fail("weighted_sum", "a call returned a wrong result");
    if (tierjit_module_function(module, "weighted_sum", NULL) != address)
      return fail("weighted_sum", "its address changed");
    if (extra > 0 || optimized(module)) extra++;
  }
  int ok = optimized(module);
  char *stats = tierjit_module_stats_json(module);
  printf("first round: %.0f ns/call, last round: %.0f ns/call, %d rounds of %d calls, same address %p\n",
         first, last, rounds, CALLS_PER_ROUND, address);
  printf("stats: %s\n", stats ? stats : "(none)");
  tierjit_string_free(stats);
  tierjit_module_free(module);
  tierjit_engine_free(engine);
  if (!ok) return fail("weighted_sum", "was not optimized within 60 s");
  return 0;
}
