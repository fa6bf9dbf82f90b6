// Threads call `exit` at the same moment, while baseline code is still
// tiering up; an exit handler prints once. Calling `exit` from two threads
// at once raced in the exit handlers before (a double free, or the
// process ending under tierjit's report); now the first `exit` ends the
// process and the others wait, as glibc 2.41 makes them.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_barrier_t ready;

static long work(long n) {
  long s = 0;
  for (long i = 0; i < n; i++)
    s += (i * 7) % 13;
  return s;
}

static void *worker(void *arg) {
  volatile long s = work(1000 + (long)arg);
  (void)s;
  pthread_barrier_wait(&ready);
  exit(7);
}

static void said_once(void) { printf("exit handler ran\n"); }

int main(void) {
  atexit(said_once);
  pthread_barrier_init(&ready, NULL, 5);
  pthread_t threads[4];
  for (long i = 0; i < 4; i++)
    pthread_create(&threads[i], NULL, worker, (void *)i);
  pthread_barrier_wait(&ready);
  exit(7);
}
