#include <cstdio>
#include <mutex>
#include "shapes.h"

namespace {
struct Registry {
  std::vector<std::string> events;
  Registry() { std::printf("registry constructed\n"); }
  ~Registry() { std::printf("registry destroyed with %zu events\n", events.size()); }
};
Registry registry;
} // namespace

// std::call_once reaches libstdc++'s thread-local `__once_callable`,
// which tierjit finds through the dynamic loader.
std::once_flag first_note;

void note(const std::string &event) {
  std::call_once(first_note, [] { std::printf("first note\n"); });
  registry.events.push_back(event);
}
std::size_t notes() { return registry.events.size(); }

double accumulate_all(const std::vector<double> &xs) {
  Accumulator<double> acc;
  for (double x : xs) acc.add(x);
  return acc.sum / (double)acc.count;
}
