// Threads sleeping in non-restartable syscalls (nanosleep, poll, select,
// epoll_wait) while other threads churn versions (retirements => reclaim
// checks that signal threads). Any EINTR or short sleep is visible to the job.
// Found by a hostile test: a few EINTR in every run, on x86-64, before
// threads seen waking from a sleep stopped being signalled.
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

typedef long (*op_fn)(long);
static long cube(long x) { return x * x % 1000003 * x % 1000003; }
static long negate(long x) { return -x; }
static long square(long x) { return x * x % 1000003; }
static op_fn const cyc[] = {cube, negate, square};
static int bias[4];
__attribute__((noinline)) long apply(op_fn f, const int *a, int n, int w) {
  long s = 0;
  for (int i = 0; i < n; i++) {
    if (a[i] < bias[w]) s += f(a[i]) + (s >> 3);
    else s -= a[i] ^ (s & 255);
  }
  return s;
}
static int data[512];
static long (*volatile app)(op_fn, const int *, int, int) = apply;
static volatile int stop;
static int nphase = 60;
static long eintr[8];
static long res[4];

static void *churn(void *arg) {
  int w = (int)(long)arg;
  long t = 0;
  for (int p = 0; p < nphase; p++) {
    bias[w] = p % 2 ? 95 : 5;
    for (int r = 0; r < 1500; r++) t = (t + app(cyc[(p / 2) % 3], data, (p % 3) ? 256 : 128, w)) % 1000000007;
  }
  res[w] = t;
  return 0;
}
static void *sleeper(void *arg) {
  int kind = (int)(long)arg;
  int ep = epoll_create1(0);
  int pfd[2];
  pipe(pfd);
  while (!stop) {
    int r = 0;
    switch (kind) {
    case 0: { struct timespec ts = {0, 20000}; r = nanosleep(&ts, 0); break; }
    case 1: { struct pollfd p = {pfd[0], POLLIN, 0}; r = poll(&p, 1, 1); break; }
    case 2: { fd_set s; FD_ZERO(&s); FD_SET(pfd[0], &s); struct timeval tv = {0, 30}; r = select(pfd[0] + 1, &s, 0, 0, &tv); break; }
    case 3: { struct epoll_event ev; r = epoll_wait(ep, &ev, 1, 1); break; }
    case 4: { r = usleep(15); break; }
    case 5: { struct timespec ts = {0, 10000}; r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, 0); if (r) { errno = r; r = -1; } break; }
    }
    if (r < 0 && errno == EINTR) eintr[kind]++;
    // also spin a bit in job code
    volatile long x = 0;
    for (int i = 0; i < 2000; i++) x += apply(cyc[i % 3], data, 4, 3);
  }
  return 0;
}
int main(int argc, char **argv) {
  if (argc > 1) nphase = atoi(argv[1]);
  for (int i = 0; i < 512; i++) data[i] = (i * 37) % 100;
  bias[3] = 50;
  pthread_t c[2], s[6];
  for (long k = 0; k < 6; k++) pthread_create(&s[k], 0, sleeper, (void *)k);
  for (long w = 0; w < 2; w++) pthread_create(&c[w], 0, churn, (void *)w);
  for (int w = 0; w < 2; w++) pthread_join(c[w], 0);
  stop = 1;
  for (int k = 0; k < 6; k++) pthread_join(s[k], 0);
  printf("%ld %ld\n", res[0], res[1]);
  for (int k = 0; k < 6; k++) printf("eintr[%d]=%ld\n", k, eintr[k]);
  return 0;
}
