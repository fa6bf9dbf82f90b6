// A coroutine (makecontext/swapcontext, on a heap stack) suspended inside
// the hot function while the main context moves that function to other
// phases, so the coroutine's frames sit in a retired version on a stack no
// thread runs on. A reclaimer looking at threads' stacks would free it
// (a hostile test crashed this way): a job that switches stacks is never
// reclaimed. Args: WARM CHURN (calls before and between resumptions).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

static int data[4096];
static ucontext_t main_context, coroutine_context;
static long yields, coroutine_result;

__attribute__((noinline)) static void yield(void) {
  yields++;
  swapcontext(&coroutine_context, &main_context);
}

__attribute__((noinline)) static long kernel(const int *a, long n, int stride, int yield_at) {
  long s = 0;
  for (long i = 0; i < n; i += stride) {
    s += (long)a[i] * (i % 7 + 1);
    if (yield_at && i == yield_at)
      yield();
  }
  return s;
}

static void coroutine(void) {
  long t = 0;
  for (int r = 0; r < 4; r++)
    t += kernel(data, 1024, 4, 512);
  coroutine_result = t;
}

int main(int argc, char **argv) {
  long warm = argc > 1 ? atol(argv[1]) : 200000;
  long churn = argc > 2 ? atol(argv[2]) : 200000;
  for (int i = 0; i < 4096; i++)
    data[i] = (i * 37) % 101 - 50;
  long total = 0;
  for (long k = 0; k < warm; k++)
    total += kernel(data, 1024, 4, 0);
  static char stack[1 << 16];
  getcontext(&coroutine_context);
  coroutine_context.uc_stack.ss_sp = stack;
  coroutine_context.uc_stack.ss_size = sizeof stack;
  coroutine_context.uc_link = &main_context;
  makecontext(&coroutine_context, coroutine, 0);
  for (int r = 0; r < 5; r++) {
    swapcontext(&main_context, &coroutine_context);
    int stride = r % 2 ? 4 : 2;
    for (long k = 0; k < churn; k++)
      total += kernel(data, 1024, stride, 0);
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, 0);
  }
  printf("total %ld coroutine %ld yields %ld\n", total, coroutine_result, yields);
  return 0;
}
