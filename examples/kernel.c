// The module the embedder examples load: an exported kernel and a static
// helper, no main.
static long weight(long i) { return (i % 7) + 1; }

long weighted_sum(const long *values, long n) {
  long sum = 0;
  for (long i = 0; i < n; i++) sum += values[i] * weight(i);
  return sum;
}
