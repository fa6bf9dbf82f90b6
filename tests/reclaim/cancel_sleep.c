// A thread cancelled while asleep in each of the sleeping calls tierjit
// overrides (each is a cancellation point, which pthread_cancel unwinds
// through the override): its cleanup handler runs, and the job goes on.
// Then sigsuspend, woken by the job's own signal.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static volatile int cleaned[8];
static void cleanup(void *arg) { cleaned[(long)arg] = 1; }

static void *sleeper(void *arg) {
  long kind = (long)arg;
  int fds[2];
  pipe(fds);
  int ep = epoll_create1(0);
  pthread_cleanup_push(cleanup, arg);
  for (;;) {
    switch (kind) {
    case 0: sleep(100); break;
    case 1: usleep(900000); break;
    case 2: { struct timespec t = {100, 0}; nanosleep(&t, 0); break; }
    case 3: { struct timespec t = {100, 0}; clock_nanosleep(CLOCK_MONOTONIC, 0, &t, 0); break; }
    case 4: { struct pollfd p = {fds[0], POLLIN, 0}; poll(&p, 1, -1); break; }
    case 5: { fd_set s; FD_ZERO(&s); FD_SET(fds[0], &s); select(fds[0] + 1, &s, 0, 0, 0); break; }
    case 6: { struct epoll_event e; epoll_wait(ep, &e, 1, -1); break; }
    case 7: pause(); break;
    }
  }
  pthread_cleanup_pop(0);
  return 0;
}

static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got++; }

int main(void) {
  pthread_t t[8];
  for (long k = 0; k < 8; k++) pthread_create(&t[k], 0, sleeper, (void *)k);
  usleep(50000);
  for (int k = 0; k < 8; k++) {
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
  return 0;
}
