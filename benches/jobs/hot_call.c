// A small function called tens of millions of times from a loop in a
// function that is itself called often enough to tier up, calling a helper
// the optimizer may not inline: measures calls through slots between
// optimized functions. Usage: hot_call [MILLIONS] (default 150).
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) unsigned scramble(unsigned x) {
  x ^= x >> 16;
  x *= 0x45d9f3bU;
  return x ^ (x >> 16);
}

unsigned step(unsigned state, unsigned i) { return scramble(state + i) ^ (i * 2654435761U); }

unsigned run_block(unsigned state, unsigned first) {
  for (unsigned i = first; i < first + 100000; i++) state = step(state, i);
  return state;
}

int main(int argc, char **argv) {
  long millions = argc > 1 ? atol(argv[1]) : 150;
  unsigned state = 1;
  for (long block = 0; block < millions * 10; block++) state = run_block(state, (unsigned)block * 100000u);
  printf("%u\n", state);
  return 0;
}
