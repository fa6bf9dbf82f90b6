// Crashes in `leaf`, called from `mid`, which keeps a stack frame of its
// own (an array): a debugger must unwind through optimized frames by the
// objects' call frame information to reach `main` and tierjit.
#include <stdio.h>
#include <stdlib.h>
volatile int *nowhere;
static long calls;
__attribute__((noinline)) int leaf(int *p, int i) {
  if (++calls == 1500000) return *nowhere;
  return p[i & 63];
}
__attribute__((noinline)) long mid(int n) {
  int arr[64];
  for (int i = 0; i < 64; i++) arr[i] = i * n;
  long s = 0;
  for (int i = 0; i < n; i++) s += leaf(arr, i);
  return s;
}
int main(int argc, char **argv) {
  long s = 0;
  for (int k = 0; k < 20000; k++) s += mid(100);
  printf("%ld\n", s);
  return 0;
}
