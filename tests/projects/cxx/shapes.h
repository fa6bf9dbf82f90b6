#pragma once
#include <string>
#include <vector>

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
  virtual const char *name() const = 0;
};

template <typename T> struct Accumulator {
  T sum = 0;
  long count = 0;
  void add(T x) {
    sum += x;
    count++;
  }
};

void note(const std::string &event);
std::size_t notes();
double accumulate_all(const std::vector<double> &xs);
long coroutine_sum(int rounds);
