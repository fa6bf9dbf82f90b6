// A single-threaded job that forks from its main loop and from a 3 ms
// interval-timer handler (fork is async-signal-safe in a single-threaded
// process). Children exit at once. Found by a hostile test: tiered mode
// hung in every run, the handler's fork waiting for the C library's
// atfork lock held by the fork it interrupted (tierjit's threads make the
// process multi-threaded); the job's fork now blocks its signals.
// Args: FORKS [TIMER_US] (default 3000)
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile sig_atomic_t hforks;
static void h(int s) { int e = errno; pid_t p = fork(); if (p == 0) _exit(0); if (p > 0) hforks++; errno = e; }
__attribute__((noinline)) static long hot(long x) { long s = 0; for (int i = 0; i < 50; i++) s += (x * i) % 13; return s; }
int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  long period = argc > 2 ? atol(argv[2]) : 3000;
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = h; sa.sa_flags = SA_RESTART; sigaction(SIGALRM, &sa, 0);
  signal(SIGCHLD, SIG_IGN);
  struct itimerval it = {{period / 1000000, period % 1000000}, {period / 1000000, period % 1000000}}; setitimer(ITIMER_REAL, &it, 0);
  long s = 0;
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    for (long k = 0; k < 200; k++) s += hot(k + i);
  }
  struct itimerval off = {{0, 0}, {0, 0}}; setitimer(ITIMER_REAL, &off, 0);
  printf("%ld handler forked: %d\n", s, hforks > 0);
  return 0;
}
