#ifndef UTIL_H
#define UTIL_H
unsigned long checksum(const unsigned char *p, unsigned long n);
long mix(long a, long b); /* mix.ll */
int weak_default(void);
static inline int square(int x) { return x * x; }
#endif
