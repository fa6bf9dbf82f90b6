// The sigwait family with a bad signal-set pointer fails with EFAULT, as
// natively (tierjit copies the set to take its own signal out of it; the
// copy crashed the job: found by a hostile test).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  int sig = 0; siginfo_t si; struct timespec t = {0, 1000};
  int r = sigwait((sigset_t *)8, &sig); printf("sigwait=%d\n", r);
  errno = 0; r = sigtimedwait((sigset_t *)8, &si, &t); printf("sigtimedwait=%d %s\n", r, strerror(errno));
  errno = 0; r = sigwaitinfo((sigset_t *)8, &si); printf("sigwaitinfo=%d %s\n", r, strerror(errno));
  return 0;
}
