// A thread blocked in read while its frame is inside the hot function's
// first optimized version, which a later phase retires: that version must
// stay until the thread has woken and left it. Workers call kernel with
// block 0 (so its version is specialized for that); the blocker calls it
// with block 1 once kernel runs optimized code, and waits in read until
// main writes, after every phase. It says "blocker entering" on stderr
// before that call and "blocker woke" once it is out of kernel;
// tests/reclaim.rs checks the version is kept in between and freed after.
//
// The blocker enters kernel once its standard input has a byte or ends:
// tests/reclaim.rs writes one when --events reports kernel's tier-up (a
// native run's input is empty). The first phase lasts until it is inside,
// so a slow compile (a loaded machine, an emulator) cannot make it enter
// baseline code. Args: CALLS (per worker and phase, after the first
// phase's wait) PHASES.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int data[4096];
static long calls;
static int phases;
static int fds[2];
static volatile int blocker_inside;
static volatile long sink;
static pthread_barrier_t phase_start;

__attribute__((noinline)) static long kernel(const int *a, long n, int stride, int block) {
  long s = 0;
  for (long i = 0; i < n; i += stride) {
    if (block && i == 0) {
      char byte;
      if (read(fds[0], &byte, 1) != 1)
        s -= 1;
    }
    s += (long)a[i] * (i % 7 + 1);
  }
  return s;
}

static void *worker(void *arg) {
  long id = (long)arg, total = 0;
  for (int p = 0; p < phases; p++) {
    pthread_barrier_wait(&phase_start);
    int stride = p % 2 ? 2 : 4;
    // The first phase's calls until the blocker is inside are not counted:
    // how many there are depends on the compile.
    while (p == 0 && !blocker_inside)
      sink += kernel(data, 1024, stride, 0);
    for (long k = 0; k < calls; k++)
      total += kernel(data, 1024, stride, 0) ^ id;
  }
  return (void *)total;
}

static void *blocker(void *arg) {
  (void)arg;
  char go;
  ssize_t got = read(0, &go, 1); // a byte, or the end: either will do
  (void)got;
  fprintf(stderr, "blocker entering\n");
  blocker_inside = 1;
  long s = kernel(data, 1024, 4, 1);
  fprintf(stderr, "blocker woke\n");
  return (void *)s;
}

int main(int argc, char **argv) {
  calls = argc > 1 ? atol(argv[1]) : 300000;
  phases = argc > 2 ? atoi(argv[2]) : 4;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  if (pipe(fds) != 0)
    return 2;
  pthread_t b, t[2];
  pthread_create(&b, 0, blocker, 0);
  pthread_barrier_init(&phase_start, 0, 2);
  for (long i = 0; i < 2; i++)
    pthread_create(&t[i], 0, worker, (void *)i);
  long sum = 0;
  for (int i = 0; i < 2; i++) {
    void *total;
    pthread_join(t[i], &total);
    sum += (long)total;
  }
  if (write(fds[1], "x", 1) != 1)
    return 3;
  void *held;
  pthread_join(b, &held);
  // Time for a check after the blocker left (checks back off to 64 ms at
  // reclaim.interval_ms=1).
  usleep(300 * 1000);
  printf("workers: %ld\nblocker: %ld\n", sum, (long)held);
  return 0;
}
