// Forks once `kernel` runs optimized code (batch mode tiers it up at its
// 100th call): the child calls it again and prints its pid and where in
// `kernel` it called `probe` from, which its own perf map must name.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void *seen;

__attribute__((noinline)) static void probe(void) {
  seen = __builtin_return_address(0);
}

__attribute__((noinline)) long kernel(long n) {
  long s = 0;
  for (long i = 0; i < n; i++)
    s += i * i % 7;
  probe();
  return s;
}

int main(void) {
  long s = 0;
  for (int i = 0; i < 300; i++)
    s += kernel(1000);
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    s += kernel(1000);
    printf("child %d %p\n", (int)getpid(), seen);
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("parent %d %ld\n", (int)getpid(), s);
  return 0;
}
