// `main` calls `exit` while a timer's signal handler, on the same thread,
// calls `exit` too, every 200 microseconds: the job ends with either
// status, and once tierjit's report has begun no handler cuts it short
// (one that came in the middle of the report ended the process there
// before).
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

static long work(long n) {
  long s = 0;
  for (long i = 0; i < n; i++)
    s += (i * 7) % 13;
  return s;
}

static volatile int exiting;

static void on_alarm(int signal) {
  (void)signal;
  if (exiting)
    exit(42);
}

int main(void) {
  signal(SIGALRM, on_alarm);
  struct itimerval every = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &every, NULL);
  long s = 0;
  for (int k = 0; k < 20000; k++)
    s += work(1000);
  printf("s=%ld\n", s);
  exiting = 1;
  exit(3);
}
