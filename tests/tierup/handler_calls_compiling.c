// A signal handler (a 200 us interval timer) calls functions that are
// being compiled, sampled and re-specialized. In batch mode
// (compiler.background=false) and forced OSR the job thread waits for its
// own compiles; a handler that interrupted it there and called job code
// asked for a compile again and waited for itself, for good. Found by a
// hostile test. Args: CALLS_PER_PHASE PHASES.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

typedef long (*op_fn)(long);
static long cube(long x) { return x * x % 1000003 * x % 1000003; }
static long negate(long x) { return -x; }
static long square(long x) { return x * x % 1000003; }
static long halve(long x) { return x / 2; }
static op_fn const cycle[] = {cube, negate, square, halve};

static volatile int threshold = 3;

__attribute__((noinline)) long classify(long acc, int v, int th) {
  if (v < th) {
    acc += v * 3 + (acc >> 7);
    if (acc > 1000000007L) acc %= 1000000007L;
  } else {
    acc ^= (long)v * 40503;
    acc -= v >> 2;
  }
  return acc;
}

__attribute__((noinline)) long apply(op_fn f, const int *a, int n, int th) {
  long s = 0;
  for (int i = 0; i < n; i++) s = classify(s, a[i], th) + f(a[i]);
  return s;
}

static int small[16];
static long expect_small[4][2];
static volatile sig_atomic_t bad, handled;

static void handler(int sig) {
  (void)sig;
  int k = handled & 3;
  int t = (handled >> 2) & 1;
  long r = apply(cycle[k], small, 16, t ? 97 : 3);
  if (r != expect_small[k][t]) bad++;
  handled++;
}

int main(int argc, char **argv) {
  int per_phase = argc > 1 ? atoi(argv[1]) : 2000;
  int phases = argc > 2 ? atoi(argv[2]) : 20;
  enum { N = 1024 };
  static int data[N];
  for (int i = 0; i < N; i++) data[i] = (i * 37) % 100;
  for (int i = 0; i < 16; i++) small[i] = (i * 13) % 100;
  for (int k = 0; k < 4; k++)
    for (int t = 0; t < 2; t++) {
      long s = 0;
      for (int i = 0; i < 16; i++) {
        int v = small[i], th = t ? 97 : 3;
        long acc = s;
        if (v < th) { acc += v * 3 + (acc >> 7); if (acc > 1000000007L) acc %= 1000000007L; }
        else { acc ^= (long)v * 40503; acc -= v >> 2; }
        s = acc + cycle[k](v);
      }
      expect_small[k][t] = s;
    }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, 0);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, 0);
  long total = 0;
  for (int p = 0; p < phases; p++) {
    threshold = p % 2 ? 97 : 3;
    for (int r = 0; r < per_phase; r++) {
      total += apply(cycle[(p / 2) % 4], data, N, threshold);
      total %= 1000000000039L;
    }
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, 0);
  printf("%ld bad=%d handled>0=%d\n", total, (int)bad, handled > 0);
  return 0;
}
