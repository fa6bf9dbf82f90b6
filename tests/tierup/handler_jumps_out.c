// An interval-timer handler siglongjmps out of whatever the main thread is
// doing (in batch mode and forced OSR: possibly its own compile request).
// Work is idempotent per step so the result does not depend on where jumps
// land. Found by a hostile test: under forced OSR the jump left tierjit's
// lock held and the job hung in every run. Args: STEPS
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
static sigjmp_buf env;
static volatile sig_atomic_t jumps, armed;
static void h(int s) { (void)s; if (armed) { jumps++; siglongjmp(env, 1); } }
#define F(n) __attribute__((noinline)) long f##n(long x) { long s = 0; for (int i = 0; i < 64; i++) s += (x * (i + n)) % (97 + n); return s; }
F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
static long (*const fs[16])(long) = {f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,f13,f14,f15};
int main(int argc, char **argv) {
  int steps = argc > 1 ? atoi(argv[1]) : 3000;
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = h; sigaction(SIGALRM, &sa, 0);
  struct itimerval it = {{0, 150}, {0, 150}}; setitimer(ITIMER_REAL, &it, 0);
  static long res[100000];
  volatile int step = 0;
  sigsetjmp(env, 1);
  while (step < steps) {
    armed = 1;
    long s = 0;
    for (int k = 0; k < 200; k++) s += fs[(step + k) % 16](k + step);
    armed = 0;
    res[step] = s;
    step = step + 1;
  }
  struct itimerval off = {{0, 0}, {0, 0}}; setitimer(ITIMER_REAL, &off, 0);
  long t = 0; for (int i = 0; i < steps; i++) t = (t * 31 + res[i]) % 1000000007;
  printf("%ld jumped=%d\n", t, jumps > 0);
  return 0;
}
