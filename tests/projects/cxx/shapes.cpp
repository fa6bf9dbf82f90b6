#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include "shapes.h"

extern "C" int visit_all(void (*visit)(int), int n);

static void visit(int i) {
  if (i == 7) throw std::range_error("visited 7");
}

struct Square : Shape {
  double s;
  explicit Square(double s) : s(s) {}
  double area() const override { return s * s; }
  const char *name() const override { return "square"; }
};
struct Circle : Shape {
  double r;
  explicit Circle(double r) : r(r) {}
  double area() const override { return 3.25 * r * r; }
  const char *name() const override { return "circle"; }
};

struct Banner {
  Banner() { std::cout << "banner constructed" << std::endl; }
  ~Banner() { std::cout << "banner destroyed" << std::endl; }
};
static Banner banner;

template <typename T> T sum_areas(const std::vector<std::unique_ptr<Shape>> &shapes, int rounds) {
  T total = 0;
  for (int r = 0; r < rounds; r++)
    for (const auto &s : shapes) total += static_cast<T>(s->area());
  return total;
}

static double checked_sqrt(double x) {
  if (x < 0) throw std::domain_error("negative input " + std::to_string((int)x));
  double g = x / 2 + 1;
  for (int i = 0; i < 30; i++) g = 0.5 * (g + x / g);
  return g;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? std::stoi(argv[1]) : 20000;
  std::vector<std::unique_ptr<Shape>> shapes;
  for (int i = 0; i < 64; i++) {
    if (i % 4 == 0) shapes.push_back(std::make_unique<Circle>(i * 0.5));
    else shapes.push_back(std::make_unique<Square>(i * 0.25));
  }
  double total = sum_areas<double>(shapes, rounds);
  long itotal = sum_areas<long>(shapes, rounds / 10);
  std::cout << "total " << total << " itotal " << itotal << "\n";
  int caught = 0;
  std::vector<double> roots;
  for (int i = -3000; i < 3000; i++) {
    try {
      roots.push_back(checked_sqrt(i));
    } catch (const std::domain_error &e) {
      caught++;
      if (i == -1) {
        note(e.what());
        std::cout << "caught: " << e.what() << "\n";
      }
    }
  }
  std::cout << "caught " << caught << " mean root " << accumulate_all(roots) << "\n";
  std::cout << "coroutine " << coroutine_sum(rounds / 10) << "\n";
  try {
    visit_all(visit, 10);
  } catch (const std::range_error &e) {
    std::cout << "through C: " << e.what() << "\n";
  }
  const Shape &first = *shapes[0];
  std::cout << "rtti " << typeid(first).name() << " "
            << (dynamic_cast<const Circle *>(&first) != nullptr) << " notes " << notes() << "\n";
  return 0;
}
