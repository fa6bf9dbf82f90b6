#include "util.h"

static int scale = 31;

int weak_default(void) { return 42; }

unsigned long checksum(const unsigned char *p, unsigned long n) {
  unsigned long s = 0;
  for (unsigned long i = 0; i < n; i++) s = s * (unsigned long)scale + p[i];
  return s;
}
