// A thread alternates: block every signal and poll for pending ones with
// sigtimedwait (a common "signal thread" pattern), then unblock and run job
// code. Natively it never receives anything. Other threads churn versions,
// so reclamation checks signal every thread; a check's signal sent just
// before the thread blocked used to be taken by its sigtimedwait (found by
// a hostile test: got=2..4 in 11 of 20 runs).
// Args: [PHASES] (default 600)
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef long (*op_fn)(long);
static long cube(long x) { return x * x % 1000003 * x % 1000003; }
static long negate(long x) { return -x; }
static long square(long x) { return x * x % 1000003; }
static op_fn const cyc[] = {cube, negate, square};
static int bias[3];
__attribute__((noinline)) long apply(op_fn f, const int *a, int n, int w) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    if (a[i] < bias[w]) s += f(a[i]) + (s >> 3);
    else s -= a[i] ^ (s & 255);
  }
  return s;
}
static long (*volatile app)(op_fn, const int *, int, int) = apply;
static int data[512];
static volatile int stop;
static long res[2];
static volatile long got, gotsig;
static int phases = 600;
static void *churn(void *arg) {
  int w = (int)(long)arg;
  long t = 0;
  for (int p = 0; p < phases; p++) {
    bias[w] = p % 2 ? 95 : 5;
    for (int r = 0; r < 1500; r++) t = (t + app(cyc[(p / 2) % 3], data, (p % 3) ? 256 : 128, w)) % 1000000007;
  }
  res[w] = t;
  return 0;
}
static void *sigthread(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  struct timespec zero = {0, 0};
  bias[2] = 50;
  while (!stop) {
    pthread_sigmask(SIG_BLOCK, &all, 0);
    for (int k = 0; k < 1; k++) {
      int s = sigtimedwait(&all, 0, &zero);
      if (s > 0) { got++; gotsig = s; }
      volatile long x = app(cyc[k % 3], data, 64, 2);
      (void)x;
    }
    pthread_sigmask(SIG_UNBLOCK, &all, 0);
    for (int k = 0; k < 50; k++) {
      volatile long y = app(cyc[k % 3], data, 64, 2);
      (void)y;
    }
  }
  return 0;
}
int main(int argc, char **argv) {
  if (argc > 1) phases = atoi(argv[1]);
  for (int i = 0; i < 512; i++) data[i] = (i * 37) % 100;
  pthread_t c[2], s;
  pthread_create(&s, 0, sigthread, 0);
  for (long w = 0; w < 2; w++) pthread_create(&c[w], 0, churn, (void *)w);
  for (int w = 0; w < 2; w++) pthread_join(c[w], 0);
  stop = 1;
  pthread_join(s, 0);
  printf("%ld %ld got=%ld\n", res[0], res[1], got);
  if (got) fprintf(stderr, "last signal %ld (SIGRTMAX-3=%d)\n", gotsig, SIGRTMAX - 3);
  return 0;
}
