// One small function called tens of millions of times, calling a helper
// the optimizer may not inline: measures call overhead through slots in
// optimized code. Usage: hot_call [MILLIONS] (default 150).
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) unsigned scramble(unsigned x) {
  x ^= x >> 16;
  x *= 0x45d9f3bU;
  return x ^ (x >> 16);
}

unsigned step(unsigned state, unsigned i) { return scramble(state + i) ^ (i * 2654435761U); }

int main(int argc, char **argv) {
  long millions = argc > 1 ? atol(argv[1]) : 150;
  unsigned state = 1;
  for (long i = 0; i < millions * 1000000; i++) state = step(state, (unsigned)i);
  printf("%u\n", state);
  return 0;
}
