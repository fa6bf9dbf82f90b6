#include <cstdio>
#include "shapes.h"

namespace {
struct Registry {
  std::vector<std::string> events;
  Registry() { std::printf("registry constructed\n"); }
  ~Registry() { std::printf("registry destroyed with %zu events\n", events.size()); }
};
Registry registry;
} // namespace

void note(const std::string &event) { registry.events.push_back(event); }
std::size_t notes() { return registry.events.size(); }

double accumulate_all(const std::vector<double> &xs) {
  Accumulator<double> acc;
  for (double x : xs) acc.add(x);
  return acc.sum / (double)acc.count;
}
