// Threads blocked in read, sleep and pthread_join while others churn a hot
// function's versions (reclaim.stress): checks of the threads must neither
// wait for the blocked ones forever nor misjudge them, nor wake them (a
// signal would end sleep early). Prints what each blocked thread saw, in
// a fixed order once all have ended.
// Args: CALLS (per worker and phase) PHASES SLEEP_SECONDS [RESUME], where
// RESUME=1 sleeps again for what is left after an interruption (under an
// emulator every thread is checked by a signal, see src/code/quiesce.rs).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int data[4096];
static long calls;
static int phases;
static unsigned sleep_seconds;
static int resume;
static int fds[2];
static long read_bytes, join_result;
static char read_text[16];
static unsigned sleep_left;
static pthread_barrier_t phase_start;

__attribute__((noinline)) static long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride)
    s += (long)a[i] * (i % 7 + 1);
  return s;
}

static void *worker(void *arg) {
  long id = (long)arg, total = 0;
  for (int p = 0; p < phases; p++) {
    pthread_barrier_wait(&phase_start);
    int stride = p % 2 ? 2 : 4;
    for (long k = 0; k < calls; k++)
      total += kernel(data, 1024, stride) ^ id;
  }
  return (void *)total;
}

static void *reader(void *arg) {
  read_bytes = read(fds[0], read_text, sizeof read_text - 1);
  return arg;
}

static void *sleeper(void *arg) {
  unsigned left = sleep(sleep_seconds);
  while (resume && left > 0)
    left = sleep(left);
  sleep_left = left;
  return arg;
}

static void *joiner(void *arg) {
  void *result;
  join_result = pthread_join(*(pthread_t *)arg, &result);
  return 0;
}

int main(int argc, char **argv) {
  calls = argc > 1 ? atol(argv[1]) : 20000;
  phases = argc > 2 ? atoi(argv[2]) : 4;
  sleep_seconds = argc > 3 ? (unsigned)atoi(argv[3]) : 2;
  resume = argc > 4 ? atoi(argv[4]) : 0;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  if (pipe(fds) != 0)
    return 2;
  pthread_t read_thread, sleep_thread, join_thread, t[3];
  pthread_create(&read_thread, 0, reader, 0);
  pthread_create(&sleep_thread, 0, sleeper, 0);
  pthread_create(&join_thread, 0, joiner, &sleep_thread);
  pthread_barrier_init(&phase_start, 0, 3);
  for (long i = 0; i < 3; i++)
    pthread_create(&t[i], 0, worker, (void *)i);
  long sum = 0;
  for (int i = 0; i < 3; i++) {
    void *total;
    pthread_join(t[i], &total);
    sum += (long)total;
  }
  if (write(fds[1], "done", 4) != 4)
    return 3;
  pthread_join(read_thread, 0);
  pthread_join(join_thread, 0);
  printf("workers: %ld\n", sum);
  printf("reader got %ld byte(s): %s\n", read_bytes, read_text);
  printf("sleep returned %u\n", sleep_left);
  printf("join returned %ld\n", join_result);
  return 0;
}
