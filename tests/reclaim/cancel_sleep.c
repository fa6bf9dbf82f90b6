// A thread cancelled while asleep in each of the sleeping calls tierjit
// overrides (each is a cancellation point, which pthread_cancel unwinds
// through the override): its cleanup handler runs, and the job goes on.
// Then sigsuspend woken by the job's own signal, and a sleep left by
// siglongjmp from a handler (which must forget the sleep's mark).
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

enum { KINDS = 15 };
static volatile int cleaned[KINDS];
static void cleanup(void *arg) { cleaned[(long)arg] = 1; }

static void *sleeper(void *arg) {
  long kind = (long)arg;
  int fds[2];
  pipe(fds);
  int ep = epoll_create1(0);
  sigset_t none, usr2;
  sigemptyset(&none);
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_cleanup_push(cleanup, arg);
  for (;;) {
    struct timespec t = {100, 0};
    struct pollfd p = {fds[0], POLLIN, 0};
    fd_set s;
    FD_ZERO(&s);
    FD_SET(fds[0], &s);
    struct epoll_event e;
    int sig;
    siginfo_t info;
    switch (kind) {
    case 0: sleep(100); break;
    case 1: usleep(900000); break;
    case 2: nanosleep(&t, 0); break;
    case 3: clock_nanosleep(CLOCK_MONOTONIC, 0, &t, 0); break;
    case 4: poll(&p, 1, -1); break;
    case 5: select(fds[0] + 1, &s, 0, 0, 0); break;
    case 6: epoll_wait(ep, &e, 1, -1); break;
    case 7: pause(); break;
    case 8: ppoll(&p, 1, 0, &none); break;
    case 9: pselect(fds[0] + 1, &s, 0, 0, 0, &none); break;
    case 10: epoll_pwait(ep, &e, 1, -1, &none); break;
    case 11: sigsuspend(&none); break;
    case 12: sigwait(&usr2, &sig); break;
    case 13: sigtimedwait(&usr2, &info, &t); break;
    case 14: thrd_sleep(&t, 0); break;
    }
  }
  pthread_cleanup_pop(0);
  return 0;
}

static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got++; }

static sigjmp_buf back;
static void on_alarm(int s) { (void)s; siglongjmp(back, 1); }

int main(void) {
  // SIGUSR2 is waited for by sigwait: blocked in every thread.
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, 0);
  pthread_t t[KINDS];
  for (long k = 0; k < KINDS; k++) pthread_create(&t[k], 0, sleeper, (void *)k);
  usleep(50000);
  for (int k = 0; k < KINDS; k++) {
    void *status;
    pthread_cancel(t[k]);
    pthread_join(t[k], &status);
    printf("%d: %s, cleanup %s\n", k, status == PTHREAD_CANCELED ? "cancelled" : "returned",
           cleaned[k] ? "ran" : "did not run");
  }
  signal(SIGUSR1, on_usr1);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &old);
  kill(getpid(), SIGUSR1);
  sigsuspend(&old);
  printf("sigsuspend woke by SIGUSR1: %d\n", got);
  signal(SIGALRM, on_alarm);
  int left = 0;
  for (int i = 0; i < 3; i++) {
    if (sigsetjmp(back, 1) == 0) {
      struct itimerspec it = {{0, 0}, {0, 20000000}};
      timer_t timer;
      struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM};
      timer_create(CLOCK_MONOTONIC, &ev, &timer);
      timer_settime(timer, 0, &it, 0);
      sleep(100);
    } else {
      left++;
    }
  }
  printf("sleeps left by siglongjmp: %d\n", left);
  return 0;
}
