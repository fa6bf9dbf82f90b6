// Exercises the C API's contract (include/tierjit.h): errors come back as
// messages, never printed or exited on; define_symbol takes precedence over
// the process's symbols; run_main returns main's result and the process
// goes on, unless the job calls exit.
//
// Usage: api DIR MODE [ARG], where DIR holds the modules the test wrote
// and MODE is "contract" (exit 0 when every check passes), "exit" (runs a
// main that calls exit(7)), "exit-compiling" (the same while another
// module's compile is in flight, ARG microseconds after it got hot,
// nothing freed) or "fork" (a child frees what its parent loaded).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tierjit.h"

static int failures;

#define CHECK(cond, ...)                      \
  do {                                        \
    if (!(cond)) {                            \
      failures++;                             \
      fprintf(stderr, "FAILED %s: ", #cond);  \
      fprintf(stderr, __VA_ARGS__);           \
      fputc('\n', stderr);                    \
    }                                         \
  } while (0)

static char path_buf[4096];
static const char *in(const char *dir, const char *name) {
  snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
  return path_buf;
}

/* The host function a module reaches through define_symbol. */
static long host_scale(long x) { return x * 1000; }

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Loads big.c in `engine` and calls its kernel until it gets hot. */
static tierjit_module *hot_big(tierjit_engine *engine, const char *dir) {
  char *error = NULL;
  tierjit_module *big = tierjit_module_load(engine, in(dir, "big.c"), &error);
  if (!big) {
    fprintf(stderr, "big.c: %s\n", error);
    exit(1);
  }
  long (*kernel)(long) = (long (*)(long))tierjit_module_function(big, "kernel", &error);
  for (int i = 0; i < 10; i++) kernel(10);
  return big;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *dir = argv[1];
  char *error = NULL;

  CHECK(tierjit_engine_new("(thresholds: (calls: 0))", &error) == NULL, "out-of-range knob accepted");
  CHECK(error && strstr(error, "calls"), "error names the knob: %s", error ? error : "(none)");
  tierjit_string_free(error);
  error = NULL;
  CHECK(tierjit_engine_new("(no_such_section: ())", &error) == NULL, "unknown key accepted");
  tierjit_string_free(error);
  error = NULL;

  tierjit_engine *engine = tierjit_engine_new(NULL, &error);
  if (!engine) {
    fprintf(stderr, "engine: %s\n", error);
    return 1;
  }

  if (strcmp(argv[2], "exit-compiling") == 0 && argc == 4) {
    tierjit_engine *busy =
        tierjit_engine_new("(thresholds: (calls: 5), compiler: (threads: 2))", &error);
    if (!busy) return 1;
    hot_big(busy, dir);
    usleep(atoi(argv[3]));
    tierjit_module *m = tierjit_module_load(busy, in(dir, "exits.c"), &error);
    if (!m) return 1;
    char *args[] = {"exits", NULL};
    tierjit_module_run_main(m, 1, args);
    return 99; /* not reached */
  }

  if (strcmp(argv[2], "fork") == 0) {
    tierjit_module *big = hot_big(engine, dir);
    usleep(20000);
    pid_t child = fork();
    if (child == 0) {
      /* The child has none of the parent's tierjit threads. */
      double start = now();
      tierjit_module_free(big);
      tierjit_engine_free(engine);
      printf("child freed in %s\n", now() - start < 5 ? "time" : "too long");
      fflush(stdout);
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    tierjit_module_free(big);
    tierjit_engine_free(engine);
    printf("child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
  }

  if (strcmp(argv[2], "exit") == 0) {
    tierjit_module *m = tierjit_module_load(engine, in(dir, "exits.c"), &error);
    if (!m) return 1;
    char *args[] = {"exits", NULL};
    tierjit_module_run_main(m, 1, args);
    return 99; /* not reached: the job's exit ends the process */
  }

  CHECK(tierjit_module_load(engine, in(dir, "missing.c"), &error) == NULL, "missing file loaded");
  CHECK(error && strstr(error, "missing.c"), "error names the file: %s", error ? error : "(none)");
  tierjit_string_free(error);
  error = NULL;
  CHECK(tierjit_module_load(engine, in(dir, "unresolved.c"), &error) == NULL, "unresolved loaded");
  CHECK(error && strstr(error, "host_scale"), "error names the symbol: %s", error ? error : "(none)");
  tierjit_string_free(error);
  error = NULL;
  CHECK(tierjit_module_load(NULL, in(dir, "main.c"), &error) == NULL, "NULL engine accepted");
  tierjit_string_free(error);
  error = NULL;

  CHECK(tierjit_engine_define_symbol(engine, "host_scale", (void *)host_scale, &error) == 0,
        "define_symbol: %s", error ? error : "(none)");
  CHECK(tierjit_engine_define_symbol(engine, "", (void *)host_scale, &error) == -1, "empty name accepted");
  tierjit_string_free(error);
  error = NULL;
  tierjit_module *scaled = tierjit_module_load(engine, in(dir, "unresolved.c"), &error);
  CHECK(scaled != NULL, "with host_scale defined: %s", error ? error : "(none)");
  if (scaled) {
    long (*scaled_plus_one)(long) = (long (*)(long))tierjit_module_function(scaled, "scaled_plus_one", &error);
    CHECK(scaled_plus_one && scaled_plus_one(4) == 4001, "the module calls the host's function");
    CHECK(tierjit_module_run_main(scaled, 0, NULL) == -1, "run_main without main");
    tierjit_module_free(scaled);
  }

  {
    /* Two inputs, one module: unresolved.c's host_scale is now in scale.c. */
    char first[4096], second[4096];
    snprintf(first, sizeof first, "%s/unresolved.c", dir);
    snprintf(second, sizeof second, "%s/scale.c", dir);
    const char *both[] = {first, second};
    tierjit_engine *plain = tierjit_engine_new(NULL, &error);
    tierjit_module *joint = plain ? tierjit_module_load_many(plain, both, 2, &error) : NULL;
    CHECK(joint != NULL, "load_many: %s", error ? error : "(none)");
    if (joint) {
      long (*f)(long) = (long (*)(long))tierjit_module_function(joint, "scaled_plus_one", &error);
      CHECK(f && f(4) == 4 * 7 + 1, "the inputs call each other");
      tierjit_module_free(joint);
    }
    CHECK(plain && tierjit_module_load_many(plain, both, 0, &error) == NULL, "no inputs accepted");
    CHECK(error && strstr(error, "count"), "error says why: %s", error ? error : "(none)");
    tierjit_string_free(error);
    error = NULL;
    const char *dup[] = {first, first};
    CHECK(plain && tierjit_module_load_many(plain, dup, 2, &error) == NULL, "a duplicate accepted");
    CHECK(error && strstr(error, "scaled_plus_one"), "error names it: %s", error ? error : "(none)");
    tierjit_string_free(error);
    error = NULL;
    tierjit_engine_free(plain);
  }

  tierjit_module *m = tierjit_module_load(engine, in(dir, "main.c"), &error);
  CHECK(m != NULL, "main.c: %s", error ? error : "(none)");
  if (m) {
    CHECK(tierjit_module_function(m, "nope", &error) == NULL, "missing function found");
    CHECK(error && strstr(error, "nope"), "error names the function: %s", error ? error : "(none)");
    tierjit_string_free(error);
    error = NULL;
    char *args[] = {"prog", "a", "bb", NULL};
    CHECK(tierjit_module_run_main(m, 3, args) == 3 + 42, "main's result is returned");
    CHECK(tierjit_module_run_main(m, 1, args) == 1 + 42, "run_main can run again");
    char *stats = tierjit_module_stats_json(m);
    CHECK(stats && strstr(stats, "\"name\":\"main\""), "stats: %s", stats ? stats : "(none)");
    tierjit_string_free(stats);
    tierjit_module_free(m);
  }
  CHECK(tierjit_module_stats_json(NULL) == NULL, "stats of NULL");
  tierjit_module_free(NULL);
  tierjit_string_free(NULL);
  tierjit_engine_free(engine);
  printf("still running after run_main; %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
